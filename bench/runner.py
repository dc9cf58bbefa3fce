"""The life cycle of one run: skip what is cached, lock, log attempts, record failures, survive kills.

The stages themselves (load data -> build -> train -> decode -> score) are ``bench.pipeline``.

A run is cached at three levels, so the least possible work is redone:
- trained: ``trainable.safetensors`` exists for the train_key (retraining never happens for a
  new decoding config or metric; a kill after it was written never retrains);
- decoded: predictions for the decode_key exist (a new metric only rescores);
- scored: metric rows for the score_key exist and meta.json says ``done`` (the run is done).

Every file is published atomically (``bench.store``) and the run folder is locked while a
process works on it, so a run killed at any moment is picked up where its files end by the
next ``bench run``: training resumes from its last checkpoint, decoding and scoring are
redone. Each attempt is logged in meta.json (start, pid, host, stage reached, whether it
started and finished training, where it resumed from).

A failing run (out of memory, NaN loss, a decoding error, a missing model, a full disk)
becomes a ``failed`` meta.json with its stage and reason; the suite goes on.
"""

from __future__ import annotations

import errno
import gc
import os
import shutil
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import faults, store
from bench.config import RunSpec
from bench.errors import BenchError

if TYPE_CHECKING:
    import pandas as pd

# torch, transformers and the pipeline are imported by the functions that train: a rerun
# whose runs are all cached (cache_state, RunOutcome) never loads them.


@dataclass(frozen=True)
class RunOutcome:
    train_key: str
    label: str
    status: str  # done | cached | failed | busy
    seconds: float = 0.0
    error: str | None = None
    summary: str = ""


class LockLost(Exception):
    """This process's lock on the run was taken over (its lease ran out): stop, write nothing."""


# ----------------------------------------------------------------------------- state


def stored_level(spec: RunSpec, folder: Path) -> str:
    """How far the stored files of ``spec`` go: 'scored' | 'decoded' | 'trained' | 'weightless' | 'new'."""
    if not folder.exists():
        return "new"
    # A damaged file counts as absent: its stage is redone (bench.store, "damage"). Damaged
    # weights are retrained (deterministic), so the folder holds what a clean run leaves.
    damaged = store.damaged_files(folder)
    if "trainable.safetensors" in damaged:
        return "new"
    meta = {} if "meta.json" in damaged else store.read_meta(folder) or {}
    # meta.json lists its score keys (store.scored_keys): the cache check opens no parquet data.
    keys = set() if "metrics.parquet" in damaged else store.scored_keys(folder, meta)
    if meta.get("status") == "done" and spec.score_key in keys and not damaged:
        return "scored"
    if ("predictions.parquet" not in damaged and (folder / "predictions.parquet").exists()
            and store.read_predictions(folder, spec.decode_key).shape[0] > 0):
        return "decoded"
    if "trainable.safetensors" not in damaged and (folder / "trainable.safetensors").exists():
        return "trained"
    if meta.get("trained"):
        # Trained once, but its parameters are not here (a results set committed without
        # weights): only retraining (--force) or the weights file can produce new predictions.
        return "weightless"
    return "new"


WEIGHTLESS = ("trained, but its weights are not in this results set (committed without weights): "
              "new predictions need trainable.safetensors put back in the run folder, or --force to retrain")


def cache_state(spec: RunSpec, results: Path) -> str:
    """'scored' | 'failed' | 'decoded' | 'trained' | 'weightless' | 'new' for this spec in ``results``."""
    folder = store.run_dir(results, spec.train_key)
    level = stored_level(spec, folder)
    if level != "scored":
        meta = store.read_or(None, store.read_meta, folder) if folder.exists() else None
        if meta and meta.get("status") == "failed":
            return "failed"
    return level


# ----------------------------------------------------------------------------- one run

# torch's random generators and thread count are per process: two runs in threads of one
# process (a Dask worker with several threads) would draw from each other's streams and stop
# being reproducible, so a process does one run at a time (on a GPU worker: one per GPU).
_ONE_RUN_PER_PROCESS = threading.Lock()


def run_one(spec: RunSpec, *, results: Path, data_dir: str | Path | None = None, force: bool = False,
            retry_failed: bool = False, progress: bool = True, log_to: Sequence[str] = ()) -> RunOutcome:
    """Bring one run to 'scored', doing only the missing stages. Never raises for a run failure.

    ``busy``: another live process holds the run. ``failed`` runs stay failed unless
    ``retry_failed`` (or ``force``, which redoes everything). ``log_to``: experiment trackers
    (``bench.trackers``) that watch this attempt; not part of the run's identity.
    """
    from bench.pipeline import _data_dir

    folder = store.run_dir(results, spec.train_key)
    t0 = time.perf_counter()
    with _ONE_RUN_PER_PROCESS, faults.context(spec.method_label):
        try:
            with store.lock(folder) as handle:
                outcome = _run_locked(spec, folder, handle, _data_dir(data_dir), force=force,
                                      retry_failed=retry_failed, progress=progress, t0=t0, log_to=log_to)
        except store.LockBusy as e:
            return RunOutcome(spec.train_key, spec.method_label, "busy", error=f"another process is running it ({e})")
        if outcome.status == "failed":
            _free_memory()  # an out-of-memory run must not starve the next one
        return outcome


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    store.write_json(folder / "meta.json", meta)


RUN_FILES = ("trainable.safetensors", "predictions.parquet", "metrics.parquet", "checkpoint.pt", "meta.json",
             "train_ids.json")


def _run_locked(spec: RunSpec, folder: Path, handle: store.LockHandle, data_dir: Path | None, *, force: bool,
                retry_failed: bool, progress: bool, t0: float, log_to: Sequence[str] = ()) -> RunOutcome:
    from bench.pipeline import NATIVE_FOLDER, run_stages, seeds_used

    faults.checkpoint("lock_acquired")
    store.sweep_tmp(folder)  # leftovers of a writer killed mid-write: we own the folder now
    damaged = store.damaged_files(folder)
    level = stored_level(spec, folder)  # with the damaged files counted as absent
    for name in damaged:
        (folder / name).unlink(missing_ok=True)  # redone by the stage that writes it; the rest is kept
    if force:
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
        shutil.rmtree(folder / NATIVE_FOLDER, ignore_errors=True)
    meta: dict[str, Any] = store.read_meta(folder) or {}
    if force or not damaged:
        level = stored_level(spec, folder)
    if level == "scored":
        return RunOutcome(spec.train_key, spec.method_label, "cached")
    if meta.get("status") == "failed" and not retry_failed:
        return RunOutcome(spec.train_key, spec.method_label, "failed",
                          error=f"failed earlier at {meta.get('stage')}: {meta.get('error')} (--retry-failed retries)")
    if level == "weightless":
        return RunOutcome(spec.train_key, spec.method_label, "weightless", error=WEIGHTLESS)
    if not (folder / "spec.json").exists():
        store.write_json(folder / "spec.json", {"spec": spec.to_json()})

    attempts: list[dict[str, Any]] = meta.setdefault("attempts", [])
    for previous in attempts:
        if previous.get("status") == "running":
            previous["status"] = "killed"  # it held the lock we just took: its process is gone
    attempt: dict[str, Any] = {
        "n": len(attempts) + 1, "started": time.time(), "pid": os.getpid(), "host": socket.gethostname(),
        "from": level, "stage": "load", "status": "running", "train_started": False, "trained": False,
    }
    if damaged:
        attempt["damaged"] = sorted(damaged)
    attempts.append(attempt)
    meta.update({"status": "running", "stage": "load", "error": None, "traceback": None, "started": attempt["started"],
                 "pid": os.getpid(), "seeds": seeds_used(spec)})

    def enter(stage: str) -> None:
        if handle.lost.is_set():
            raise LockLost(stage)
        attempt["stage"] = meta["stage"] = stage
        _write_meta(folder, meta)

    def guard() -> None:
        if handle.lost.is_set():
            raise LockLost(meta["stage"])

    trackers = None
    if log_to:
        from bench.trackers import RunTrackers

        trackers = RunTrackers(log_to)
        trackers.start(spec, folder)
    try:
        metrics = run_stages(spec, folder, level, meta, attempt, attempts, enter=enter, guard=guard,
                             data_dir=data_dir, progress=progress, trackers=trackers)
        if trackers is not None:
            trackers.finish(metrics, {**meta.get("cost", {}),
                                      **{f"params_{k}": v for k, v in (meta.get("params") or {}).items()}})
            attempt["trackers"] = {"names": list(log_to), "seconds": round(trackers.seconds, 3)}
        faults.checkpoint("meta_done")
        attempt.update({"status": "done", "finished": time.time()})
        meta.update({"status": "done", "stage": "done", "finished": time.time(),
                     "score_keys": sorted(store.scored_keys(folder))})  # a cached rerun reads only meta.json
        attempt["stage"] = "done"
        _write_meta(folder, meta)
        faults.checkpoint("done_unreleased")  # 'done' on disk, the lock not yet released
        summary = _headline(metrics)
        stalled = learning_stalled(meta.get("train") or {})
        if stalled:
            summary += f" [warning: {stalled}; lr {spec.train.lr:g}: too low for this method?]"
        return RunOutcome(spec.train_key, spec.method_label, "done", time.perf_counter() - t0, summary=summary)
    except LockLost:
        # Another process reclaimed the run (our lease ran out while we were stalled): the
        # folder is its now, so nothing more is written here.
        if trackers is not None:
            trackers.abort("lock taken over by another process")
        return RunOutcome(spec.train_key, spec.method_label, "busy", error="lock taken over by another process")
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, the suite goes on
        stage = getattr(e, "stage", None) or meta.get("stage") or "load"
        reason = failure_reason(e, spec)
        if trackers is not None:
            trackers.abort(f"{stage}: {reason}")
        attempt.update({"status": "failed", "finished": time.time(), "stage": stage})
        meta.update({"status": "failed", "stage": stage, "error": reason,
                     "traceback": traceback.format_exc()[-4000:], "finished": time.time()})
        try:
            if not handle.lost.is_set():
                _write_meta(folder, meta)
        except OSError:
            pass  # a full disk: the outcome below still reports the failure
        return RunOutcome(spec.train_key, spec.method_label, "failed", time.perf_counter() - t0,
                          error=f"{stage}: {reason[:300]}")


def failure_reason(e: BaseException, spec: RunSpec) -> str:
    """One line saying why a run failed, with the usual fix where there is one."""
    import torch

    from bench.train import RunFailure

    first = (str(e).strip().splitlines() or [""])[0][:400]
    if isinstance(e, torch.OutOfMemoryError):
        return (f"out of memory ({first}); lower train.batch_size (now {spec.train.batch_size}) and raise "
                f"train.grad_accum, or decode.batch_size (now {spec.decode.batch_size})")
    if isinstance(e, MemoryError):
        return f"out of host memory ({type(e).__name__}: {first})"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({first}); free space in the results directory and run again"
    if isinstance(e, RunFailure):
        return e.reason
    if isinstance(e, BenchError):
        return first
    return f"{type(e).__name__}: {first}"


def dev_loss_moved(train: dict[str, Any]) -> tuple[float, float, int | None] | None:
    """(reference, best, step) from a run's stored training summary: the reference is the dev
    loss before training, or for runs stored without it the first evaluation (``step`` then
    names that evaluation's step; None otherwise); None without dev losses."""
    dev = train.get("dev_losses") or []
    if not dev:
        return None
    before = train.get("dev_loss_before")
    best = min(float(v) for _, v in dev)
    if before is not None:
        return float(before), best, None
    return float(dev[0][1]), best, int(dev[0][0])


STALLED_FRACTION = 0.10


def learning_stalled(train: dict[str, Any]) -> str | None:
    """Why a training barely learned (best dev loss less than 10% below the untrained one), or
    None. A run that does not learn still scores (the paper-rate embedding-only row of the
    replication: dev loss 90.0 -> 86.4, BLEU 4); this says so beside its numbers. Runs stored
    before the untrained dev loss was recorded compare with the first evaluation (which
    understates what training did: a fast learner can plateau before it)."""
    moved = dev_loss_moved(train)
    if moved is None:
        return None
    first, best, first_step = moved
    # without the untrained loss (first_step names the evaluation used instead), one
    # evaluation shows no trend
    if first_step is not None and len(train["dev_losses"]) < 2:
        return None
    if first <= 0 or (first - best) / first >= STALLED_FRACTION:
        return None
    return f"dev loss moved only {(best - first) / first:+.0%} ({first:.3g} -> {best:.3g}) in {train.get('steps')} steps"


def _headline(metrics: pd.DataFrame) -> str:
    first = metrics[metrics["group"] == metrics["group"].iloc[0]]
    return " ".join(f"{r.metric}={r.value:.4g}" for r in first.drop_duplicates("metric").itertuples())


def check_results_writable(results: Path, need_mb: float = 50.0) -> None:
    """Fail before any training when results/ cannot take files (a full disk, a read-only mount)."""
    runs = store.runs_dir(results)
    try:
        runs.mkdir(parents=True, exist_ok=True)
        probe = runs / f".probe.{os.getpid()}{store.TMP_SUFFIX}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BenchError(f"results directory {results} is not writable ({e.strerror or e})") from None
    free = store.free_mb(runs)
    if free < need_mb:
        raise BenchError(f"results directory {results} has only {free:.0f} MiB free; need at least {need_mb:.0f} MiB")
