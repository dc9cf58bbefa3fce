"""Where runs execute: in this process, in local worker processes, or on a Dask cluster.

``jobs == 1``: one after the other here. ``jobs > 1``: joblib's loky processes, each with its
share of the CPU threads. ``backend == "dask"``: joblib's Dask backend on the scheduler given
(``tcp://host:port``; a dask-jobqueue cluster on SLURM/PBS exposes one). Workers write their
run folders to the shared results directory themselves; run locks keep two workers (or two
``bench run`` processes) off the same run. Runs another live process holds come back
``busy``; they are waited for and dispatched again (then cached if that process finished
them, resumed if it died), on the same backend.

GPUs: where a process sees several GPUs, each run claims one for its duration (a per-GPU
lock file keyed by the GPU's UUID, shared by every process on the machine), so ``--jobs N``
on an N-GPU node, or Dask workers that all see every GPU, put one run on each GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import store
from bench.config import RunSpec
from bench.errors import BenchError
from bench.runner import RunOutcome, run_one

BUSY_POLL_S = 2.0
DASK_CONNECT_TIMEOUT_S = 20.0
DASK_WORKERS_TIMEOUT_S = 120.0


# ----------------------------------------------------------------------------- GPUs


def gpu_ids() -> list[str]:
    """Machine-wide identities of the GPUs this process sees (UUIDs; indices where unknown)."""
    import torch

    if not torch.cuda.is_available():
        return []
    ids = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        ids.append(str(uuid) if uuid is not None else f"index{i}")
    return ids


@contextlib.contextmanager
def claim_gpu(ids: Sequence[str], lock_dir: Path | None = None, poll_s: float = 1.0) -> Iterator[int | None]:
    """Hold one of the GPUs ``ids`` (waiting for a free one); yields its index, None without GPUs.

    The claim is an flock on ``<lock_dir>/bench-gpu-<id>.lock`` (``lock_dir``: env
    ``BENCH_GPU_LOCK_DIR``, else the temporary directory): the kernel drops it when the process
    dies, so a killed run never keeps its GPU claimed.
    """
    if len(ids) <= 1:
        yield 0 if ids else None
        return
    lock_dir = Path(lock_dir or os.environ.get("BENCH_GPU_LOCK_DIR") or tempfile.gettempdir())
    while True:
        for index, gid in enumerate(ids):
            fd = os.open(lock_dir / f"bench-gpu-{gid.replace('/', '_')}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield index
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(poll_s)


def _worker(spec: RunSpec, results: str, data_dir: str | None, force: bool, retry_failed: bool,
            threads: int | None, log_to: tuple[str, ...] = ()) -> RunOutcome:
    """One run inside a worker process (loky or Dask): its threads, its GPU, then run_one."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    with claim_gpu(gpu_ids()) as gpu:
        if gpu is not None:
            torch.cuda.set_device(gpu)
        return run_one(spec, results=Path(results), data_dir=data_dir, force=force, retry_failed=retry_failed,
                       progress=False, log_to=log_to)


# ----------------------------------------------------------------------------- backends

Dispatch = Callable[[Sequence[RunSpec], bool], Iterator[RunOutcome]]


@contextlib.contextmanager
def _backend(backend: str, jobs: int, scheduler: str | None, *, results: Path, data_dir: str | None,
             retry_failed: bool, progress: bool, log_to: tuple[str, ...] = ()) -> Iterator[Dispatch]:
    """A function running a batch of specs on the chosen backend, yielding outcomes as they end."""
    if backend not in ("local", "dask"):
        raise BenchError(f"unknown backend {backend!r} (valid: local, dask)")
    if jobs < 1:
        raise BenchError(f"--jobs must be >= 1, got {jobs}")
    if backend == "local" and jobs == 1:

        def sequential(specs: Sequence[RunSpec], force: bool) -> Iterator[RunOutcome]:
            for s in specs:
                with claim_gpu(gpu_ids()) as gpu:
                    if gpu is not None:
                        import torch

                        torch.cuda.set_device(gpu)
                    yield run_one(s, results=results, data_dir=data_dir, force=force, retry_failed=retry_failed,
                                  progress=progress, log_to=log_to)

        yield sequential
        return

    import joblib

    # Workers may run elsewhere (another cwd, another host): paths travel absolute.
    results_abs = str(Path(results).resolve())
    data_abs = str(Path(data_dir).resolve()) if data_dir else None
    if data_abs is None:
        from bench.pipeline import _data_dir

        found = _data_dir(None)  # BENCH_DATA_DIR of this process, which workers may not have
        data_abs = str(found.resolve()) if found else None

    if backend == "local":
        threads = max(1, (os.cpu_count() or 1) // jobs)
        print(f"bench: runs in {jobs} worker processes, {threads} threads each", file=sys.stderr)

        def loky(specs: Sequence[RunSpec], force: bool) -> Iterator[RunOutcome]:
            par = joblib.Parallel(n_jobs=jobs, backend="loky", batch_size=1, return_as="generator_unordered")
            yield from par(joblib.delayed(_worker)(s, results_abs, data_abs, force, retry_failed, threads, log_to)
                           for s in specs)

        yield loky
        return

    client = _dask_client(scheduler)
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        print(f"bench: runs on the Dask cluster at {scheduler} ({n_workers} workers)", file=sys.stderr)

        def dask(specs: Sequence[RunSpec], force: bool) -> Iterator[RunOutcome]:
            with joblib.parallel_backend("dask", client=client):
                par = joblib.Parallel(n_jobs=-1, batch_size=1, return_as="generator_unordered")
                yield from par(joblib.delayed(_worker)(s, results_abs, data_abs, force, retry_failed, None,
                                                       log_to) for s in specs)

        yield dask
    finally:
        client.close()


def _dask_client(scheduler: str | None) -> Any:
    if not scheduler:
        raise BenchError("--backend dask needs --scheduler tcp://HOST:PORT (the Dask scheduler's address)")
    try:
        from dask.distributed import Client
    except ImportError:
        raise BenchError("--backend dask needs dask.distributed: pip install 'prefix-bench[dask]'") from None
    try:
        client = Client(scheduler, timeout=f"{DASK_CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as e:
        raise BenchError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
    try:
        client.wait_for_workers(1, timeout=DASK_WORKERS_TIMEOUT_S)
    except TimeoutError:
        client.close()
        raise BenchError(f"--scheduler {scheduler}: no Dask worker joined within {DASK_WORKERS_TIMEOUT_S:.0f} s "
                         "(start some with `dask worker " + scheduler + "`)") from None
    return client


# ----------------------------------------------------------------------------- execute


def execute(
    specs: Sequence[RunSpec],
    *,
    results: Path,
    data_dir: str | None = None,
    jobs: int = 1,
    backend: str = "local",
    scheduler: str | None = None,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    log_to: tuple[str, ...] = (),
) -> list[RunOutcome]:
    """Run every spec; runs held by another live process are waited for, then dispatched again.
    ``log_to``: experiment trackers every run reports to (``bench.trackers``)."""
    on_outcome = on_outcome or (lambda o: None)
    outcomes: dict[str, RunOutcome] = {}
    pending = list(specs)
    with _backend(backend, jobs, scheduler, results=results, data_dir=data_dir, retry_failed=retry_failed,
                  progress=progress, log_to=log_to) as dispatch:
        first = True
        while pending:
            for o in dispatch(pending, force and first):
                outcomes[o.train_key] = o
                if o.status != "busy":
                    on_outcome(o)
            # ``--force`` redoes a run once; a run another process finished meanwhile is not
            # redone again.
            pending = [s for s in pending if outcomes[s.train_key].status == "busy"]
            if pending:
                _wait_for_any(pending, results, first)
            first = False
    return [outcomes[s.train_key] for s in specs]


def _wait_for_any(specs: Sequence[RunSpec], results: Path, announce: bool) -> None:
    """Block until at least one of ``specs`` is no longer held by a live process."""
    folders = [store.run_dir(results, s.train_key) for s in specs]
    if announce:
        owners = {str(o.get("host")) + ":" + str(o.get("pid")) for f in folders if (o := store.lock_owner(f))}
        print(f"bench: waiting for {len(specs)} runs held by other processes ({', '.join(sorted(owners))})",
              file=sys.stderr)
    while all(store.is_locked(f) for f in folders):
        time.sleep(BUSY_POLL_S)
