"""A real Dask cluster on loopback runs a suite; its results equal the local ones.

The test starts `dask scheduler` and two `dask worker` processes (one thread each, working
directory elsewhere than the repo) on 127.0.0.1, runs the suite through
``--backend dask --scheduler tcp://127.0.0.1:PORT``, and tears the cluster down. The workers
write the run folders themselves; parameters, predictions and metrics must equal those of the
same suite run in this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import store
from bench.commands.run import run_suite
from bench.errors import BenchError

pytest.importorskip("distributed")

from test_faults import assert_same_results  # tests/ is on sys.path under pytest

REPO = Path(__file__).resolve().parents[1]

SUITE = """
name: dask
model: tiny-gpt2
seeds: [0]
train: {max_steps: 3, lr: 3.0e-3, batch_size: 4, max_target_tokens: 48, checkpoint_every: 2}
decode: {beam_size: 2, max_new_tokens: 12}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 10, n_dev_mrs: 2, n_test_mrs: 3}
    max_eval_sources: 3
    metrics: {bleu: e2e_bleu, rouge_l: e2e_rouge_l}
methods:
  - {label: finetune, method: full}
  - {label: adapter, method: adapter, config: {bottleneck: 2}}
  - {label: lora, method: lora, config: {r: 2}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a Dask process exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"Dask scheduler not listening on {port} after {timeout} s")


@pytest.fixture
def cluster(tmp_path) -> Iterator[str]:
    dask = Path(sys.executable).with_name("dask")
    if not dask.exists() and shutil.which("dask") is None:
        pytest.skip("the `dask` command line is not installed")
    dask_cmd = str(dask) if dask.exists() else "dask"
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    elsewhere = tmp_path / "workers"  # not the repo: paths must travel absolute
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BENCH_FAULT"}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    log = (tmp_path / "dask.log").open("w")
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        p = subprocess.Popen([dask_cmd, *args], cwd=elsewhere, env=env, stdout=log, stderr=log,
                             start_new_session=True)
        procs.append(p)
        return p

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        _wait_for_port(port, procs, timeout=60)
        for i in range(2):
            start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--memory-limit", "0",
                  "--name", f"w{i}", "--local-directory", str(elsewhere / f"w{i}"))
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=15)
        log.close()


def test_dask_cluster_results_equal_local(cluster, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    local = run_suite(suite=suite, results=tmp_path / "local", quiet=True)
    assert [o.status for o in local] == ["done"] * 3
    remote = run_suite(suite=suite, results=tmp_path / "dask", backend="dask", scheduler=cluster, quiet=True)
    assert [o.status for o in remote] == ["done"] * 3, [o.error for o in remote]
    assert_same_results(tmp_path / "local", tmp_path / "dask")
    # The workers, not this process, trained and wrote the runs.
    pids = {store.read_meta(f)["attempts"][0]["pid"] for f in store.runs_dir(tmp_path / "dask").iterdir()}
    assert os.getpid() not in pids
    # A second pass finds everything cached.
    again = run_suite(suite=suite, results=tmp_path / "dask", backend="dask", scheduler=cluster, quiet=True)
    assert [o.status for o in again] == ["cached"] * 3


def test_dask_backend_needs_a_reachable_scheduler(tmp_path, monkeypatch):
    from bench import execute

    monkeypatch.setattr(execute, "DASK_CONNECT_TIMEOUT_S", 2.0)
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    with pytest.raises(BenchError, match="--backend dask needs --scheduler"):
        run_suite(suite=suite, results=tmp_path / "r", backend="dask", quiet=True)
    with pytest.raises(BenchError, match=r"--scheduler tcp://127\.0\.0\.1:\d+: cannot reach the Dask scheduler"):
        run_suite(suite=suite, results=tmp_path / "r", backend="dask", scheduler=f"tcp://127.0.0.1:{_free_port()}",
                  quiet=True)
