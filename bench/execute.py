"""Where runs execute: in this process, in local worker processes, or on a cluster.

``jobs == 1``: one after the other here. ``jobs > 1``: joblib's loky processes, each with
its share of the CPU threads. ``backend == "dask"``: joblib's Dask backend on the scheduler
given (``tcp://host:port``; dask-jobqueue clusters for SLURM/PBS expose one). Workers write
their run folders to the shared results directory themselves; locks keep two workers (or two
``bench run`` processes) off the same run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import store
from bench.config import RunSpec
from bench.errors import BenchError
from bench.runner import RunOutcome, run_one

BUSY_POLL_S = 2.0


def _worker(spec: RunSpec, results: str, data_dir: str | None, force: bool, progress: bool, threads: int | None) -> RunOutcome:
    if threads:
        import torch

        torch.set_num_threads(threads)
    return run_one(spec, results=Path(results), data_dir=data_dir, force=force, progress=progress)


def execute(
    specs: Sequence[RunSpec],
    *,
    results: Path,
    data_dir: str | None = None,
    jobs: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Run every spec; runs held by another live process are waited for, then re-checked."""
    on_outcome = on_outcome or (lambda o: None)
    outcomes: dict[str, RunOutcome] = {}
    if backend == "local" and jobs == 1:
        for spec in specs:
            o = run_one(spec, results=results, data_dir=data_dir, force=force, progress=progress)
            outcomes[spec.train_key] = o
            on_outcome(o)
    else:
        for o in _parallel(specs, results=results, data_dir=data_dir, jobs=jobs, backend=backend,
                           scheduler=scheduler, force=force):
            outcomes[o.train_key] = o
            on_outcome(o)
    # Runs another process was doing: wait for its lock to go, then take what it left
    # (cached if it finished; redone here if it died).
    for spec in specs:
        while outcomes[spec.train_key].status == "busy":
            folder = store.run_dir(results, spec.train_key)
            while store.is_locked(folder):
                time.sleep(BUSY_POLL_S)
            o = run_one(spec, results=results, data_dir=data_dir, force=False, progress=progress)
            outcomes[spec.train_key] = o
            if o.status != "busy":
                on_outcome(o)
    return [outcomes[s.train_key] for s in specs]


def _parallel(specs: Sequence[RunSpec], *, results: Path, data_dir: str | None, jobs: int, backend: str,
              scheduler: str | None, force: bool) -> list[RunOutcome]:
    import joblib

    args = [(s, str(results), data_dir, force, False) for s in specs]
    if backend == "dask":
        if not scheduler:
            raise BenchError("--backend dask needs --scheduler tcp://HOST:PORT (the Dask scheduler's address)")
        try:
            from dask.distributed import Client
        except ImportError:
            raise BenchError("--backend dask needs dask.distributed: pip install 'prefix-bench[dask]'") from None
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise BenchError(f"cannot reach the Dask scheduler at {scheduler} ({e})") from None
        try:
            with joblib.parallel_backend("dask"):
                return list(joblib.Parallel(n_jobs=-1)(joblib.delayed(_worker)(*a, None) for a in args))
        finally:
            client.close()
    if backend != "local":
        raise BenchError(f"unknown backend {backend!r} (valid: local, dask)")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    print(f"bench: {len(specs)} runs in {jobs} worker processes, {threads} threads each", file=sys.stderr)
    return list(joblib.Parallel(n_jobs=jobs, backend="loky")(joblib.delayed(_worker)(*a, threads) for a in args))
