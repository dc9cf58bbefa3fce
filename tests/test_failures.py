"""Runs that fail are recorded with their stage and reason; the rest of the suite goes on.

Out of memory, a NaN loss, a decoding error, a full disk (at a write, or found before
training), a missing model file: each becomes a ``failed`` meta.json; `bench ls --failed`
lists them; `bench run --retry-failed` retries them from the stage that failed (a run that
failed after training is not trained again). An unwritable results directory stops the
command before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import store
from bench.cli import main
from bench.commands.ls import list_runs
from bench.commands.run import run_suite
from bench.errors import BenchError
from bench.runner import run_one
from bench.suite import expand, load_suite

SUITE = """
name: failures
model: {model}
seeds: [0]
train: {{max_steps: 3, lr: 3.0e-3, batch_size: 4, max_target_tokens: 48}}
decode: {{beam_size: 1, max_new_tokens: 12}}
datasets:
  - name: synthetic_e2e
    options: {{n_train_mrs: 12, n_dev_mrs: 2, n_test_mrs: 4}}
    max_eval_sources: 3
    metrics: {{bleu: e2e_bleu}}
methods:
{methods}
"""
METHODS = """\
  - {label: finetune, method: full}
  - {label: top1, method: top_k, config: {k: 1}}
  - {label: adapter, method: adapter, config: {bottleneck: 2}}
  - {label: lora, method: lora, config: {r: 2}}
  - {label: prefix, method: prefix, config: {length: 2, mlp_width: 8}}
"""


def write_suite(folder: Path, model: str = "tiny-gpt2", methods: str = METHODS) -> Path:
    path = folder / "suite.yaml"
    path.write_text(SUITE.format(model=model, methods=methods))
    return path


def by_label(results: Path) -> dict[str, dict]:
    runs = list_runs(results=results)
    return {r.method_label: {**r._asdict(), "meta": store.read_meta(Path(r.path))} for r in runs.itertuples()}


def test_failures_are_recorded_listed_and_retried(tmp_path, monkeypatch, capsys):
    suite, results = write_suite(tmp_path), tmp_path / "results"
    monkeypatch.setenv("BENCH_FAULT", "nan@train_step:1#finetune,oom@train_step:1#adapter,error@decode#lora,"
                                      "enospc@replace:predictions.parquet#top1")
    outcomes = {o.label: o for o in run_suite(suite=suite, results=results, quiet=True)}
    assert {k: o.status for k, o in outcomes.items()} == {
        "finetune": "failed", "top1": "failed", "adapter": "failed", "lora": "failed", "prefix": "done"}

    runs = by_label(results)
    expected = {
        "finetune": ("train", "non-finite loss (nan) at step 1"),
        "adapter": ("train", ("out of memory (CUDA out of memory (injected fault at train_step:1)); lower "
                             "train.batch_size (now 4)")),
        "lora": ("decode", "RuntimeError: injected fault at decode"),
        "top1": ("decode", ("disk full ([Errno 28] No space left on device (injected fault at "
                           "replace:predictions.parquet))")),
    }
    for label, (stage, reason) in expected.items():
        r = runs[label]
        assert (r["status"], r["stage"]) == ("failed", stage), label
        assert r["error"].startswith(reason), (label, r["error"])
        assert "Traceback" in r["meta"]["traceback"]
    # The failed write left no partial file behind; the run's other files are intact.
    top1 = Path(runs["top1"]["path"])
    assert not [p for p in top1.iterdir() if p.name.startswith(".")]
    assert (top1 / "trainable.safetensors").exists() and not (top1 / "predictions.parquet").exists()
    assert runs["prefix"]["status"] == "done"

    capsys.readouterr()
    assert main(["ls", "--failed", "--results", str(results)]) == 0
    listing = capsys.readouterr().out
    assert "prefix" not in listing
    for label, (stage, _) in expected.items():
        line = next(ln for ln in listing.splitlines() if f" {label} " in ln)
        assert "failed" in line and f" {stage} " in line, line

    # Without --retry-failed they stay failed and are not attempted again.
    monkeypatch.delenv("BENCH_FAULT")
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 1
    assert {k: len(v["meta"]["attempts"]) for k, v in by_label(results).items()} == {
        "finetune": 1, "top1": 1, "adapter": 1, "lora": 1, "prefix": 1}

    assert main(["run", str(suite), "--results", str(results), "--quiet", "--retry-failed"]) == 0
    runs = by_label(results)
    assert {k: v["status"] for k, v in runs.items()} == dict.fromkeys(runs, "done")
    for label in ("lora", "top1"):  # failed after training: resumed at decode, not retrained
        attempts = runs[label]["meta"]["attempts"]
        assert [(a["from"], a["train_started"]) for a in attempts] == [("new", True), ("trained", False)]
    for label in ("finetune", "adapter"):
        attempts = runs[label]["meta"]["attempts"]
        assert [a["status"] for a in attempts] == ["failed", "done"] and attempts[1]["trained"]


def test_missing_model_file_fails_its_runs_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    broken = tmp_path / "my-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4}')
    # weights present but unreadable: `bench validate` reads no weights, so only loading finds out
    # (a folder without any weights file is refused before any run: tests/test_malformed.py)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    suite = write_suite(tmp_path, model=f"[tiny-gpt2, {broken}]", methods="  - {label: adapter, method: adapter}\n")
    outcomes = run_suite(suite=suite, results=tmp_path / "results", quiet=True)
    assert sorted(o.status for o in outcomes) == ["done", "failed"]
    (failed,) = list_runs(results=tmp_path / "results", failed=True).itertuples()
    assert failed.model == str(broken) and failed.stage == "load"
    assert f"model '{broken}' cannot be loaded" in failed.error


def test_disk_full_before_training(tmp_path, monkeypatch):
    (spec,) = [s for s in expand(load_suite(write_suite(tmp_path))) if s.method_label == "adapter"]
    results = tmp_path / "results"
    monkeypatch.setattr(store, "free_mb", lambda path: 1.0)
    with pytest.raises(BenchError, match="has only 1 MiB free"):
        run_suite(suite=tmp_path / "suite.yaml", results=results, quiet=True)
    assert list(store.runs_dir(results).iterdir()) == []
    # Past the suite-level check, a run needing more than is free fails before training.
    monkeypatch.setattr(store, "free_mb", lambda path: 16.0)
    out = run_one(spec, results=results, progress=False)
    assert out.status == "failed" and out.error.startswith("preflight: disk full: 16 MiB free")
    meta = store.read_meta(store.run_dir(results, spec.train_key))
    assert meta["stage"] == "preflight" and not meta["attempts"][0]["train_started"]
    assert not (store.run_dir(results, spec.train_key) / "trainable.safetensors").exists()


def test_unwritable_results_directory_stops_before_any_run(tmp_path, capsys):
    suite = write_suite(tmp_path)
    not_a_dir = tmp_path / "results"
    not_a_dir.write_text("a file where the results directory should be")
    assert main(["run", str(suite), "--results", str(not_a_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"bench: error: results directory {not_a_dir} is not writable" in err
