"""Smaller findings of the code review (issue 13): resources released when a run fails."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bench.commands.run import run_suite

SUITE = """
name: nan
model: tiny-gpt2
train: {max_steps: 3, batch_size: 2, max_target_tokens: 32}
decode: {beam_size: 1, max_new_tokens: 4}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 6, n_dev_mrs: 2, n_test_mrs: 2}
    metrics: {bleu: e2e_bleu}
methods:
  - label: finetune
    method: full
"""


def _samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bench-memory-peak" and t.is_alive()]


def test_memory_sampler_stops_when_training_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    assert not _samplers()
    monkeypatch.setenv("BENCH_FAULT", "nan@train_step:1")
    (outcome,) = run_suite(suite=suite, results=tmp_path / "r", quiet=True)
    assert outcome.status == "failed" and "non-finite loss" in (outcome.error or "")
    assert not _samplers(), "the memory sampler thread of the failed run is still running"
    monkeypatch.delenv("BENCH_FAULT")
    (outcome,) = run_suite(suite=suite, results=tmp_path / "r", quiet=True, retry_failed=True)
    assert outcome.status == "done" and not _samplers()


def test_a_run_process_imports_all_its_code_when_it_starts() -> None:
    """A run's stages must not import modules lazily hours later, after the files changed on disk
    (a mix of old and new modules): importing the pipeline loads the decoder, scoring and every
    registered component."""
    import subprocess
    import sys

    code = ("import sys, bench.pipeline; "
            "print(all(m in sys.modules for m in ('bench.decode', 'bench.beam', 'bench.scoring', "
            "'bench.methods.prefix', 'bench.metrics', 'bench.datasets.e2e')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr
