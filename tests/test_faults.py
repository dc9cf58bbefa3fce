"""Kill -9 at any moment of `bench run`, run it again: the suite completes as if never killed.

A `bench run` subprocess SIGKILLs itself at named points (``BENCH_FAULT``, bench/faults.py)
and, separately, is SIGKILLed from outside at random moments. After the final rerun every run
is done, its parameters, predictions and metrics equal those of an uninterrupted run, no row
is duplicated, no temporary file, checkpoint or lock is left, and each run finished training
exactly once (the attempts log in meta.json), resuming from its checkpoints in between.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from bench import faults, store
from bench.commands.run import run_suite

REPO = Path(__file__).resolve().parents[1]

SUITE = """
name: faults
model: tiny-gpt2
seeds: [1]
train: {max_steps: 6, lr: 3.0e-3, batch_size: 4, max_target_tokens: 64, checkpoint_every: 2}
decode: {beam_size: 2, max_new_tokens: 16}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 24, n_dev_mrs: 4, n_test_mrs: 6}
    max_eval_sources: 5
    metrics: {bleu: e2e_bleu, rouge_l: e2e_rouge_l}
methods:
  - {label: finetune, method: full}
  - {label: lora, method: lora, config: {r: 2}}
"""


def _env(fault: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_FAULT"}
    # One thread, as the in-process reference (tests/conftest.py): identical float sums.
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    if fault:
        env["BENCH_FAULT"] = fault
    return env


def _cmd(suite: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", str(suite), "--results", str(results), "--quiet"]


def bench_run(suite: Path, results: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(suite, results), env=_env(fault), cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=300)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "faults.yaml"
    path.write_text(SUITE)
    return path


@pytest.fixture(scope="module")
def reference(suite, tmp_path_factory) -> Path:
    """The same suite, uninterrupted (in this process)."""
    results = tmp_path_factory.mktemp("reference")
    outcomes = run_suite(suite=suite, results=results, quiet=True)
    assert [o.status for o in outcomes] == ["done", "done"]
    return results


def _attempts(results: Path, label: str) -> list[dict]:
    for folder in store.runs_dir(results).iterdir():
        if store.read_json(folder / "spec.json")["spec"]["method_label"] == label:
            return store.read_meta(folder)["attempts"]
    raise AssertionError(f"no run labelled {label}")


def assert_same_results(reference: Path, results: Path) -> None:
    """Every run done, nothing left over, nothing duplicated, every number as in ``reference``."""
    ref_keys = sorted(p.name for p in store.runs_dir(reference).iterdir())
    assert sorted(p.name for p in store.runs_dir(results).iterdir()) == ref_keys
    for key in ref_keys:
        a, b = store.run_dir(reference, key), store.run_dir(results, key)
        leftovers = sorted(p.name for p in b.iterdir() if p.name.startswith(".") or p.name in ("lock", "checkpoint.pt"))
        assert leftovers == [], leftovers
        meta = store.read_meta(b)
        assert meta["status"] == "done", meta
        # The training summary survives a kill between publishing the parameters and the meta.
        ref_train = store.read_meta(a)["train"]
        assert {k: meta["train"][k] for k in ("steps", "final_loss")} == {k: ref_train[k] for k in ("steps", "final_loss")}
        assert sum(x["trained"] for x in meta["attempts"]) == 1, meta["attempts"]  # trained to completion once
        assert not any(x["status"] == "running" for x in meta["attempts"][:-1])
        ta, tb = load_file(str(a / "trainable.safetensors")), load_file(str(b / "trainable.safetensors"))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), key

        pa, pb = store.read_predictions(a), store.read_predictions(b)
        assert not pb.duplicated(["decode_key", "split", "source_id"]).any()
        sort = ["decode_key", "split", "source_id"]
        pd.testing.assert_frame_equal(pa.sort_values(sort).reset_index(drop=True),
                                      pb.sort_values(sort).reset_index(drop=True))
        cols = ["score_key", "split", "group", "metric", "value", "ci_low", "ci_high", "n", "signature"]
        ma, mb = store.read_metrics(a)[cols], store.read_metrics(b)[cols]
        assert not mb.duplicated(["score_key", "split", "group", "metric"]).any()
        order = ["score_key", "split", "group", "metric"]
        pd.testing.assert_frame_equal(ma.sort_values(order).reset_index(drop=True),
                                      mb.sort_values(order).reset_index(drop=True))


# Each process dies at the first point it reaches; the next one picks up from the files.
CHAIN = [
    "train_step:3#finetune",  # mid-training, after the step-2 checkpoint
    "write_trainable#finetune",  # resumed from step 2, trained to the end, killed before publishing
    "replace:predictions.parquet#finetune",  # resumed from step 4; predictions' temp file complete
    "meta_done#finetune",  # metrics published, meta.json not yet 'done'
    "trained#lora",  # finetune finished; lora's parameters published, its meta.json not updated
]


def test_kill_at_named_points_then_rerun(suite, reference, tmp_path):
    results = tmp_path / "results"
    for fault in CHAIN:
        proc = bench_run(suite, results, fault)
        assert proc.returncode == -signal.SIGKILL, f"{fault} was not reached:\n{proc.stderr[-2000:]}"
        if fault.startswith("replace:predictions"):
            # The killed writer's temporary file is there; the rerun must sweep it.
            assert list(results.glob("runs/*/.predictions.parquet.*.tmp"))
    proc = bench_run(suite, results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 done, 1 cached, 0 failed" in proc.stderr

    assert_same_results(reference, results)
    ft = _attempts(results, "finetune")
    assert [a["status"] for a in ft] == ["killed", "killed", "killed", "killed", "done"]
    assert [a.get("resumed_from") for a in ft[:3]] == [None, 2, 4]  # training resumed, never restarted
    assert [a["trained"] for a in ft] == [False, False, True, False, False]
    assert [a["from"] for a in ft] == ["new", "new", "new", "trained", "decoded"]
    lora = _attempts(results, "lora")
    assert [(a["status"], a["trained"], a["from"]) for a in lora] == [("killed", True, "new"), ("done", False, "trained")]


def test_kill_after_done_before_unlock_then_rerun(suite, reference, tmp_path):
    """A run killed after writing 'done' is skipped as cached by the rerun, which still removes
    the dead process's lock file."""
    results = tmp_path / "results"
    proc = bench_run(suite, results, "done_unreleased#lora")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert list(results.glob("runs/*/lock"))
    proc = bench_run(suite, results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0 done, 2 cached, 0 failed" in proc.stderr
    assert_same_results(reference, results)


def test_kill_at_random_moments_then_rerun(suite, reference, tmp_path):
    results = tmp_path / "results"
    rng = random.Random(20240611)
    kills = 0
    for _ in range(2):
        proc = subprocess.Popen(_cmd(suite, results), env=_env(None), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        # Kill once it is inside the suite (a meta.json exists), at a random moment after that.
        deadline = time.monotonic() + 120
        while proc.poll() is None and not list(results.glob("runs/*/meta.json")) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 1
    proc = bench_run(suite, results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_same_results(reference, results)


def test_fault_spec_parsing():
    assert faults.parse("train_step:3") == [faults.Fault("kill", "train_step:3", None)]
    assert faults.parse("oom@train_step:1#adapter, error@decode") == [
        faults.Fault("oom", "train_step:1", "adapter"), faults.Fault("error", "decode", None)]
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        faults.parse("explode@decode")


def test_fault_fires_only_in_its_run(monkeypatch):
    monkeypatch.setenv("BENCH_FAULT", "error@decode#lora")
    faults.checkpoint("decode")  # no run context: not this entry's run
    with faults.context("finetune"):
        faults.checkpoint("decode")
    with faults.context("lora"), pytest.raises(RuntimeError, match="injected fault at decode"):
        faults.checkpoint("decode")
