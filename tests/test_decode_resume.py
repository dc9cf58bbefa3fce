"""Decoding resumes (issue 11): every finished batch is published under the run's
decode_parts/<decode_key>/<split>/, so `kill -9` in the middle of decoding and a rerun decode
only the batches that are missing, and the predictions equal an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import store
from bench.commands.run import run_suite
from bench.config import DecodeConfig
from bench.decode import decode
from bench.interfaces import EvalItem
from bench.models import load_model
from bench.registry import METHODS

REPO = Path(__file__).resolve().parents[1]


def bench_run(suite: Path, results: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    """`bench run` in a subprocess (one thread, as the in-process reference), dying at ``fault``."""
    env = {k: v for k, v in os.environ.items() if k != "BENCH_FAULT"}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    if fault:
        env["BENCH_FAULT"] = fault
    cmd = [sys.executable, "-m", "bench.cli", "run", str(suite), "--results", str(results), "--quiet"]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


def _attempts(results: Path) -> list[dict]:
    (folder,) = store.runs_dir(results).iterdir()
    return store.read_meta(folder)["attempts"]

SUITE = """
name: decode_resume
model: tiny-gpt2
seeds: [2]
train: {max_steps: 4, lr: 3.0e-3, batch_size: 4, max_target_tokens: 48}
decode: {beam_size: 2, max_new_tokens: 12, batch_size: 4}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 16, n_dev_mrs: 4, n_test_mrs: 30}
    metrics: {bleu: e2e_bleu}
methods:
  - {label: prefix, method: prefix, config: {length: 3, mlp_width: 16}}
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "decode_resume.yaml"
    path.write_text(SUITE)
    return path


def _predictions(results: Path) -> pd.DataFrame:
    (folder,) = store.runs_dir(results).iterdir()
    return store.read_predictions(folder).sort_values(["split", "source_id"]).reset_index(drop=True)


def test_kill_mid_decode_then_rerun_decodes_only_the_missing_batches(suite, tmp_path):
    reference = tmp_path / "reference"
    assert [o.status for o in run_suite(suite=suite, results=reference, quiet=True)] == ["done"]

    results = tmp_path / "results"
    for fault in ("decode_batch:3", "decode_batch:6"):  # 30 sources in 8 batches of 4
        proc = bench_run(suite, results, fault)
        assert proc.returncode == -signal.SIGKILL, f"{fault} not reached:\n{proc.stderr[-2000:]}"
    (folder,) = store.runs_dir(results).iterdir()
    parts = sorted(p.name for p in folder.glob("decode_parts/*/test/batch-*.parquet"))
    assert parts == [f"batch-{i:06d}.parquet" for i in range(6)]
    assert not (folder / "predictions.parquet").exists()

    proc = bench_run(suite, results)
    assert proc.returncode == 0, proc.stderr[-2000:]
    attempts = _attempts(results)
    assert [a["status"] for a in attempts] == ["killed", "killed", "done"]
    assert attempts[-1]["decode_resumed_batches"] == 6  # only batches 6 and 7 were decoded
    assert attempts[-1]["decode_time_complete"] and store.read_meta(folder)["cost"]["decode_time_s"] > 0
    assert not (folder / "decode_parts").exists()
    pd.testing.assert_frame_equal(_predictions(reference), _predictions(results))


def _tiny_decoder():
    """decode() of a tiny GPT-2 on 6 sources in 2 batches of 3, greedy: keyword arguments go to decode."""
    torch.manual_seed(0)
    lm = load_model("tiny-gpt2")
    m = METHODS.get("full")()
    tuned = m.apply(lm.model, lm.tokenizer, m.Config())
    items = [EvalItem(f"s{i}", f"name : Place {i}", ("x",)) for i in range(6)]
    cfg = DecodeConfig(beam_size=1, max_new_tokens=6, batch_size=3)

    def run(**kw):
        return decode(tuned, lm.tokenizer, items, cfg=cfg, is_encoder_decoder=False, max_source_tokens=32,
                      progress=False, **kw)

    return run


def test_parts_made_for_other_sources_are_not_used(tmp_path):
    run_decode = _tiny_decoder()
    ref, _ = run_decode()
    parts = tmp_path / "parts"
    stats: dict = {}
    first, _ = run_decode(parts=parts, stats=stats)
    assert first == ref and (stats["batches"], stats["resumed_batches"]) == (2, 0)
    # a stored batch is taken as it is (this proves the rerun reads it, not decodes again) ...
    part = parts / "batch-000000.parquet"
    df = store.read_parquet(part)
    store.write_parquet(part, df.assign(prediction="STORED"))
    again, _ = run_decode(parts=parts, stats=stats)
    assert stats["resumed_batches"] == 2 and again.count("STORED") == 3
    # ... but not when it was made for other sources
    store.write_parquet(part, df.assign(source_id=["a", "b", "c"], prediction="STORED"))
    third, _ = run_decode(parts=parts, stats=stats)
    assert stats["resumed_batches"] == 1 and third == ref


def test_a_resumed_decode_reports_the_whole_decode_time(tmp_path):
    """The seconds of a resumed decode include the stored batches' times (they were measured
    when those batches were decoded); a batch stored without its time makes the total unknown."""
    run_decode = _tiny_decoder()
    parts = tmp_path / "parts"
    stats: dict = {}
    run_decode(parts=parts, stats=stats)
    assert stats["time_complete"]
    part = parts / "batch-000000.parquet"
    df = store.read_parquet(part)
    assert (df["batch_seconds"] > 0).all()
    store.write_parquet(part, df.assign(batch_seconds=100.0))  # as if that batch had taken 100 s
    (parts / "batch-000001.parquet").unlink()
    _, seconds = run_decode(parts=parts, stats=stats)
    assert stats["resumed_batches"] == 1 and stats["time_complete"]
    assert 100.0 < seconds < 150.0
    store.write_parquet(part, df.drop(columns="batch_seconds"))  # stored by an older version
    _, seconds = run_decode(parts=parts, stats=stats)
    assert stats["resumed_batches"] == 2 and not stats["time_complete"] and seconds < 50.0


def test_runs_whose_resumed_decode_time_is_unknown_show_none():
    """Results written before batch times were stored: a decode that resumed stored batches
    recorded only its own part of the time; load_runs shows that decode time as unknown."""
    from bench.store import _decode_time_complete

    fresh = {"attempts": [{"n": 1, "decode_resumed_batches": 0}]}
    old_resumed = {"attempts": [{"n": 1}, {"n": 2, "decode_resumed_batches": 36}, {"n": 3}]}
    new_resumed = {"attempts": [{"n": 1}, {"n": 2, "decode_resumed_batches": 36, "decode_time_complete": True}]}
    assert _decode_time_complete(fresh) and _decode_time_complete({"attempts": []})
    assert not _decode_time_complete(old_resumed)
    assert _decode_time_complete(new_resumed)
