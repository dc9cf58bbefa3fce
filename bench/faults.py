"""Named failure points for fault-injection tests (inert unless ``BENCH_FAULT`` is set).

``BENCH_FAULT`` holds comma-separated entries ``[ACTION@]POINT[#LABEL]``:

- ``POINT`` names a place in the pipeline (below); ``train_step:3`` is the start of the
  fourth optimizer step, ``replace:metrics.parquet`` the rename that publishes that file;
- ``ACTION`` is what happens there: ``kill`` (the default: SIGKILL to this process, as a
  preempted job dies), ``oom`` (raise ``torch.OutOfMemoryError``), ``error`` (raise
  ``RuntimeError``), ``enospc`` (raise ``OSError(ENOSPC)``, a full disk), ``nan`` (only at
  ``train_step:N``: that step's loss becomes NaN), ``slow`` (sleep ``BENCH_FAULT_SLOW_S``
  seconds, default 2: a long run, for tests of concurrent runners);
- ``#LABEL`` restricts the entry to the run whose method label is LABEL.

Points: ``lock_acquired``, ``load``, ``train_step:N``, ``checkpoint_saved:N``,
``write_trainable``, ``trained`` (parameters published, meta.json not yet updated), ``decode``,
``decode_batch:N`` (before the N-th batch, from 0, of a split is decoded), ``write_predictions``, ``score``, ``write_metrics``,
``meta_done`` (metrics written, meta not yet ``done``), ``done_unreleased`` (meta ``done``, lock not yet
released), ``replace:<file name>`` (a store
write, temporary file complete, not yet renamed).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

ACTIONS = ("kill", "oom", "error", "enospc", "nan", "slow")

_context = threading.local()  # the method label of the run this thread is doing


@dataclass(frozen=True)
class Fault:
    action: str
    point: str
    label: str | None


def parse(text: str) -> list[Fault]:
    """The entries of a ``BENCH_FAULT`` value; an unknown action is a ValueError."""
    faults = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        action, sep, rest = entry.partition("@")
        if not sep:
            action, rest = "kill", entry
        if action not in ACTIONS:
            raise ValueError(f"BENCH_FAULT entry {entry!r}: unknown action {action!r} (valid: {', '.join(ACTIONS)})")
        point, _, label = rest.partition("#")
        faults.append(Fault(action, point, label or None))
    return faults


def _active(point: str) -> list[Fault]:
    text = os.environ.get("BENCH_FAULT")
    if not text:
        return []
    label = getattr(_context, "label", None)
    return [f for f in parse(text) if f.point == point and (f.label is None or f.label == label)]


@contextlib.contextmanager
def context(label: str) -> Iterator[None]:
    """Faults with ``#LABEL`` fire only inside the run labelled ``label``."""
    previous = getattr(_context, "label", None)
    _context.label = label
    try:
        yield
    finally:
        _context.label = previous


def checkpoint(point: str) -> None:
    """Die or raise here when ``BENCH_FAULT`` names this point."""
    for f in _active(point):
        if f.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if f.action == "oom":
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (injected fault at {point})")
        if f.action == "error":
            raise RuntimeError(f"injected fault at {point}")
        if f.action == "enospc":
            raise OSError(errno.ENOSPC, f"No space left on device (injected fault at {point})")
        if f.action == "slow":
            time.sleep(float(os.environ.get("BENCH_FAULT_SLOW_S", "2")))


def poisoned(point: str) -> bool:
    """Whether a ``nan@POINT`` entry asks the caller to corrupt its value here."""
    return any(f.action == "nan" for f in _active(point))
