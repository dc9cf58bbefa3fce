"""Run locks: one owner at a time, stale locks of dead owners reclaimed, two runners share a suite.

- Processes racing for one run's lock (free, or held by a dead process): exactly one wins.
- Stale: a dead pid, a zombie, a reused pid (other start time), another host's lock whose
  lease ran out, a damaged lock file past its grace period. Live: a running pid, another host
  still heartbeating, a lock being written.
- The owner's heartbeat keeps its lease fresh and notices a takeover.
- Runs in parallel on a multi-GPU machine claim distinct GPUs.
- Two `bench run` processes started together on one suite (one of them with `--jobs 2`):
  every run is trained once (the attempts log in meta.json), both finish, and both did part
  of the work.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import store
from bench.execute import claim_gpu

REPO = Path(__file__).resolve().parents[1]


def _record(**changes) -> dict:
    return {**store._owner_record("f" * 32), **changes}


def _plant(folder: Path, record: dict | str, age_s: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lock"
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _contend(folder: str, barrier, results) -> None:
    barrier.wait()
    try:
        handle = store.acquire(Path(folder))
    except store.LockBusy:
        results.put("busy")
        return
    results.put("won")
    time.sleep(0.5)  # hold it while the others try
    store.release(handle)


@pytest.mark.parametrize("stale_first", [False, True], ids=["free", "stale-dead-owner"])
def test_exactly_one_process_wins(tmp_path, stale_first):
    folder = tmp_path / "run"
    if stale_first:
        _plant(folder, _record(pid=_dead_pid(), start="1"))
    ctx = mp.get_context("fork")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(folder), barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    outcomes = sorted(results.get(timeout=5) for _ in range(n))
    assert outcomes == ["busy"] * (n - 1) + ["won"]
    assert not (folder / "lock").exists()  # released by its owner
    assert not list(folder.glob(".lock.*"))


def test_stale_and_live_locks(tmp_path):
    folder = tmp_path / "run"
    # A live process on this machine: busy, whatever its age.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        start = store._proc_stat(sleeper.pid)[1]
        _plant(folder, _record(pid=sleeper.pid, start=start), age_s=10 * store.LOCK_LEASE_S)
        with pytest.raises(store.LockBusy, match=f"pid {sleeper.pid}"):
            store.acquire(folder)
        assert store.is_locked(folder)
        # The same pid with another start time is a new process that reused the number.
        _plant(folder, _record(pid=sleeper.pid, start=str(int(start) + 1)))
        store.release(store.acquire(folder))
        # Killed but not reaped: a zombie holds no lock.
        _plant(folder, _record(pid=sleeper.pid, start=start))
        sleeper.send_signal(signal.SIGKILL)
        time.sleep(0.2)
        assert store._proc_stat(sleeper.pid)[0] == "Z"
        store.release(store.acquire(folder))
    finally:
        sleeper.kill()
        sleeper.wait()
    # Gone entirely.
    _plant(folder, _record(pid=_dead_pid()))
    store.release(store.acquire(folder))
    # Another host (or container): only the lease says whether it is alive.
    _plant(folder, _record(host="node-17", boot="other-boot", pid=1))
    with pytest.raises(store.LockBusy, match="on node-17"):
        store.acquire(folder)
    _plant(folder, _record(host="node-17", boot="other-boot", pid=1), age_s=store.LOCK_LEASE_S + 5)
    assert not store.is_locked(folder)
    store.release(store.acquire(folder))
    # A lock file with no readable record: being written (busy) until its grace period ends.
    _plant(folder, "")
    with pytest.raises(store.LockBusy):
        store.acquire(folder)
    _plant(folder, "{garbage", age_s=store.RECLAIM_MUTEX_STALE_S + 5)
    store.release(store.acquire(folder))
    # A reclaimer that died holding the reclaim mutex does not block reclaiming for ever.
    _plant(folder, _record(pid=_dead_pid()))
    (folder / "lock.reclaim").mkdir()
    t = time.time() - store.RECLAIM_MUTEX_STALE_S - 5
    os.utime(folder / "lock.reclaim", (t, t))
    store.release(store.acquire(folder))
    assert not (folder / "lock").exists() and not (folder / "lock.reclaim").exists()


def test_heartbeat_refreshes_lease_and_detects_takeover(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "HEARTBEAT_S", 0.05)
    folder = tmp_path / "run"
    handle = store.acquire(folder)
    old = time.time() - 1000
    os.utime(handle.path, (old, old))
    time.sleep(0.3)
    assert handle.path.stat().st_mtime > old + 900 and not handle.lost.is_set()
    # Someone decided our lease had run out and took the run over.
    handle.path.write_text(json.dumps(_record(token="someone-else")))
    deadline = time.monotonic() + 5
    while not handle.lost.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert handle.lost.is_set()
    store.release(handle)
    assert json.loads(handle.path.read_text())["token"] == "someone-else"  # not ours to delete


def test_each_run_claims_its_own_gpu(tmp_path):
    ids = ["GPU-aaaa", "GPU-bbbb"]
    with claim_gpu(ids, lock_dir=tmp_path) as first, claim_gpu(ids, lock_dir=tmp_path) as second:
        assert {first, second} == {0, 1}
    with claim_gpu(ids, lock_dir=tmp_path) as again:
        assert again == 0  # released when the runs ended
    with claim_gpu(["GPU-only"], lock_dir=tmp_path) as only, claim_gpu([], lock_dir=tmp_path) as none:
        assert (only, none) == (0, None)


SUITE = """
name: concurrent
model: tiny-gpt2
seeds: [0, 1]
train: {max_steps: 2, lr: 3.0e-3, batch_size: 4, max_target_tokens: 48}
decode: {beam_size: 1, max_new_tokens: 10}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 10, n_dev_mrs: 2, n_test_mrs: 3}
    max_eval_sources: 3
    metrics: {bleu: e2e_bleu}
methods:
  - {label: adapter, method: adapter, config: {bottleneck: 2}}
  - {label: lora, method: lora, config: {r: 2}}
"""


def test_two_runners_share_a_suite(tmp_path):
    suite, results = tmp_path / "suite.yaml", tmp_path / "results"
    suite.write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "BENCH_FAULT"}
    # Every run holds its lock for 3 s, so the four take the sequential runner over 12 s: longer
    # than the other runner needs to start its worker processes (which import torch and every
    # component) even on a loaded machine, so the two certainly overlap.
    env.update({"OMP_NUM_THREADS": "1", "BENCH_FAULT": "slow@train_step:0", "BENCH_FAULT_SLOW_S": "3"})
    cmd = [sys.executable, "-m", "bench.cli", "run", str(suite), "--results", str(results), "--quiet"]
    # One runner with two loky worker processes (--jobs 2), one sequential.
    procs = [subprocess.Popen(c, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
             for c in (cmd + ["--jobs", "2"], cmd)]
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        errs.append(err)
    done = []
    for err in errs:
        m = re.search(r"4 runs: (\d+) done, (\d+) cached, 0 failed", err)
        assert m, err[-2000:]
        done.append(int(m.group(1)))
        assert int(m.group(1)) + int(m.group(2)) == 4
    assert sum(done) == 4 and min(done) >= 1, done  # the work was shared, each run done once
    folders = list(store.runs_dir(results).iterdir())
    assert len(folders) == 4
    for folder in folders:
        meta = store.read_meta(folder)
        assert meta["status"] == "done"
        assert [a["train_started"] for a in meta["attempts"]] == [True], meta["attempts"]
        assert not (folder / "lock").exists()
