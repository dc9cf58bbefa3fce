"""Experiment trackers: watch a run's training where the field already looks (``--log-to``).

Each tracker is one file here, registered in ``bench.registry.TRACKERS``. It gets, per run: the
resolved spec at the start, the training loss and learning rate at every optimizer step, the
dev loss at every evaluation (step 0: before training), and the final metrics and cost. All
of them work offline: TensorBoard event files, a local MLflow store, W&B's offline mode.

Trackers only read. They are not part of any run key, their output lies outside the run
folders, and a tracker that fails mid-run is dropped with one warning: the run, its numbers
and its files are the same with or without them. Their libraries are optional extras,
imported when a run starts (``bench`` itself starts without them); a tracker whose library
is missing is refused before any run, with the extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec


class Tracker(Protocol):
    """One experiment tracker; one instance per run (``start`` once, ``finish`` or ``abort`` once)."""

    name: str
    module: str  # the library it imports (checked for before any run)
    extra: str  # the pip extra of prefix-bench that installs it

    def start(self, spec: RunSpec, run_dir: Path) -> None: ...
    def log_step(self, step: int, loss: float, lr: float) -> None: ...
    def log_dev(self, step: int, dev_loss: float) -> None: ...
    def finish(self, metrics: pd.DataFrame, cost: Mapping[str, Any]) -> None: ...
    def abort(self, reason: str) -> None: ...


# ----------------------------------------------------------------------------- names


def parse_log_to(values: Iterable[str] | None) -> tuple[str, ...]:
    """``--log-to`` values (repeatable, comma-separated) as an ordered tuple without repeats."""
    out: list[str] = []
    for value in values or ():
        for name in str(value).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return tuple(out)


def unknown_trackers(names: Iterable[str]) -> list[str]:
    """One problem line per name that is not a registered tracker (with a did-you-mean)."""
    from bench.registry import TRACKERS

    valid = TRACKERS.names()
    return [f"unknown tracker {n!r}{did_you_mean(n, valid)}" for n in names if n not in valid]


def check_trackers(names: Sequence[str], where: str = "--log-to") -> None:
    """Refuse, before any run starts, a tracker that is unknown or whose library is missing."""
    from bench.registry import TRACKERS

    problems = [f"{where}: {p}" for p in unknown_trackers(names)]
    if problems:
        raise BenchError("\n".join(problems))
    for n in names:
        cls = TRACKERS.get(n)
        # find_spec, not import: the libraries are heavy, and a cached rerun must stay fast
        if importlib.util.find_spec(cls.module) is None:
            raise BenchError(f"{where} {n}: the {cls.module!r} package is not installed; "
                             f"pip install 'prefix-bench[{cls.extra}]'")


# ----------------------------------------------------------------------------- what is logged


def results_root(run_dir: Path) -> Path:
    """The results directory of a run folder (``<results>/runs/<train_key>``)."""
    return Path(run_dir).resolve().parent.parent


def run_name(spec: RunSpec) -> str:
    """A readable, unique name: label, dataset, size, subset, seed and the key's start."""
    d = spec.data
    size = f"n{d.train_size}-subset{d.subset}" if d.train_size is not None else "full"
    return f"{spec.method_label} {d.name} {size} seed{spec.seed} {spec.train_key[:10]}"


def safe_path_part(text: str) -> str:
    """``text`` as one file-name component (labels may hold brackets, commas, spaces)."""
    return re.sub(r"[^\w.=+-]+", "_", text).strip("_") or "_"


def flat_spec(spec: RunSpec) -> dict[str, str]:
    """The spec as flat ``a.b.c -> text`` parameters (what trackers show as a run's settings)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value if isinstance(value, str) else json.dumps(value, default=str)

    walk("", spec.to_json())
    return out


def flat_metrics(metrics: pd.DataFrame) -> dict[str, float]:
    """``split/metric`` (``split/group/metric`` for groups other than 'all') -> value."""
    out: dict[str, float] = {}
    for r in metrics.to_dict("records"):
        value = r.get("value")
        if value is None or math.isnan(value):  # a metric that could not be computed
            continue
        group = r.get("group") or "all"
        name = f"{r['split']}/{r['metric']}" if group == "all" else f"{r['split']}/{group}/{r['metric']}"
        out[name] = float(value)
    return out


def flat_cost(cost: Mapping[str, Any]) -> dict[str, float]:
    """The numeric cost entries (times, memory, parameter counts) as ``cost/<name>``."""
    return {f"cost/{k}": float(v) for k, v in cost.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ----------------------------------------------------------------------------- one run's trackers


class RunTrackers:
    """The trackers of one run. Each call goes to every tracker; a tracker that raises is
    dropped with one warning line, so a tracker can never fail or change a run."""

    def __init__(self, names: Sequence[str]):
        from bench.registry import TRACKERS

        self.active: list[Tracker] = [TRACKERS.get(n)() for n in names]
        self.seconds = 0.0  # time spent in the trackers (recorded in the attempt's log)

    def _each(self, what: str, *args: Any) -> None:
        t0 = time.perf_counter()
        for tracker in list(self.active):
            try:
                getattr(tracker, what)(*args)
            except Exception as e:  # noqa: BLE001 - a tracker must never fail the run
                self.active.remove(tracker)
                first = (str(e).strip().splitlines() or [""])[0][:200]
                print(f"bench: warning: tracker {tracker.name} stopped logging this run ({what}: "
                      f"{type(e).__name__}: {first}); the run goes on", file=sys.stderr)
        self.seconds += time.perf_counter() - t0

    def start(self, spec: RunSpec, run_dir: Path) -> None:
        self._each("start", spec, run_dir)

    def on_log(self, step: int, values: Mapping[str, float]) -> None:
        """The training loop's ``on_log`` callback."""
        if "loss" in values:
            self._each("log_step", step, values["loss"], values.get("lr", float("nan")))
        if "dev_loss" in values:
            self._each("log_dev", step, values["dev_loss"])

    def finish(self, metrics: pd.DataFrame, cost: Mapping[str, Any]) -> None:
        self._each("finish", metrics, cost)

    def abort(self, reason: str) -> None:
        self._each("abort", reason)


# Explicit, one import per tracker file (each registers itself; none imports its library here).
from bench.trackers import mlflow, tensorboard, wandb  # noqa: F401
