"""Evaluation without training: ``method: none`` (the bare model) and ``method: peft`` (an
existing PEFT adapter). Both record 0 steps, cache like any run, and the adapter's files are
part of the run key. Round trip: a trained prefix, exported with ``bench export --format
peft``, evaluated with ``method: peft``, gives the original run's predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError, ConfigError
from bench.store import load_runs, read_json, read_predictions
from bench.suite import expand, load_suite

SUITE = """
name: {name}
model: {model}
seeds: [0]
train: {{max_steps: 30, lr: 1.0e-2, batch_size: 4, max_target_tokens: 48}}
decode: {{beam_size: 2, max_new_tokens: 16}}
datasets:
  - name: synthetic_e2e
    options: {{n_train_mrs: 30, n_dev_mrs: 4, n_test_mrs: 8}}
    eval_splits: [test]
    max_eval_sources: 6
methods:
{methods}
"""


def write_suite(tmp_path: Path, name: str, methods: str, model: str = "tiny-gpt2") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, model=model, methods=methods))
    return path


def predictions(results: Path, key: str) -> list[str]:
    folder = results / "runs" / key
    spec = read_json(folder / "spec.json")["spec"]
    preds = read_predictions(folder, spec["decode_key"]).sort_values("source_id")
    return list(preds["prediction"])


# (model, prefix config): settings under which 30 steps make the tiny model's outputs vary
ROUND_TRIP = [("tiny-gpt2", "{length: 4, mlp_width: 16}"), ("tiny-llama", "{length: 4, mlp_width: null}")]


@pytest.mark.parametrize("model,config", ROUND_TRIP)
def test_round_trip_prefix_export_then_peft_same_predictions(model: str, config: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    trained = write_suite(tmp_path, "trained", "  - label: prefix\n    method: prefix\n"
                                               f"    config: {config}", model)
    assert main(["run", str(trained), "--results", str(results), "--quiet"]) == 0
    (run,) = load_runs(results).itertuples()
    meta = read_json(results / "runs" / run.train_key / "meta.json")
    assert meta["train"]["steps"] == 30 and len(meta["train"]["losses"]) == 30  # per-step losses recorded
    adapter = tmp_path / "adapter"
    assert main(["export", run.train_key[:8], str(adapter), "--results", str(results)]) == 0
    again = write_suite(tmp_path, "again", f"  - label: exported\n    method: peft\n    config: {{path: {adapter}}}",
                        model)
    capsys.readouterr()
    assert main(["run", str(again), "--results", str(results), "--quiet"]) == 0
    runs = load_runs(results).set_index("method")
    key = runs.loc["peft", "train_key"]
    meta = read_json(results / "runs" / key / "meta.json")
    assert meta["status"] == "done" and meta["train"]["steps"] == 0 and meta["train"]["losses"] == []
    assert meta["params"]["trained"] == 0 and meta["params"]["stored"] == meta_params(results, run.train_key)
    original = predictions(results, run.train_key)
    assert len(set(original)) > 1  # the trained prefix says different things for different inputs
    assert predictions(results, key) == original
    # cached like any run
    capsys.readouterr()
    assert main(["run", str(again), "--results", str(results), "--quiet"]) == 0
    assert "1 runs: 0 done, 1 cached, 0 failed" in capsys.readouterr().err


def meta_params(results: Path, key: str) -> int:
    return read_json(results / "runs" / key / "meta.json")["params"]["stored"]


def test_none_scores_the_bare_model_without_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    suite = write_suite(tmp_path, "bare", "  - label: zero_shot\n    method: none")
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    (run,) = load_runs(results).itertuples()
    meta = read_json(results / "runs" / run.train_key / "meta.json")
    assert run.status == "done" and meta["train"]["steps"] == 0 and meta["params"]["trained"] == 0
    assert meta["params"]["stored"] == 0 and meta["train"]["n_train_examples"] == 0
    assert len(predictions(results, run.train_key)) == 6
    metrics = pd.read_parquet(results / "runs" / run.train_key / "metrics.parquet")
    assert {"bleu", "rouge_l"} <= set(metrics["metric"])
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    assert "0 done, 1 cached" in capsys.readouterr().err
    assert main(["report", str(suite), "--results", str(results), "--out", str(tmp_path / "rep")]) == 0
    assert "zero_shot" in (tmp_path / "rep" / "bare.md").read_text()
    base = tmp_path / "baseline.parquet"
    assert main(["regress", "--baseline", str(base), "--results", str(results), "--suite", str(suite), "--update"]) == 0
    assert main(["regress", "--baseline", str(base), "--results", str(results), "--suite", str(suite)]) == 0


def test_changed_adapter_is_a_new_run(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from bench.models import load_model

    adapter = tmp_path / "lora"
    lm = load_model("tiny-llama", seed=0)
    get_peft_model(lm.model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(adapter))
    suite = write_suite(tmp_path, "ad", f"  - label: ext\n    method: peft\n    config: {{path: {adapter}}}",
                        "tiny-llama")
    (before,) = expand(load_suite(suite))
    assert before.method_config["fingerprint"].startswith("sha256:")
    (same,) = expand(load_suite(suite))
    assert same.train_key == before.train_key
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["lora_alpha"] = 16
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (after,) = expand(load_suite(suite))
    assert after.train_key != before.train_key
    # a run planned before the change refuses the changed files (one line, names both)
    from bench.pipeline import build_tuned

    with pytest.raises(BenchError, match="changed since this run was planned"):
        build_tuned(before, load_model("tiny-llama", seed=0))


def test_bad_adapter_paths_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for path, needle in [(tmp_path / "empty", "no adapter_config.json"), ("./nope/x/y", "neither an adapter folder"),
                         ("", "config.path is required")]:
        suite = write_suite(tmp_path, "bad", f"  - label: ext\n    method: peft\n    config: {{path: '{path}'}}")
        with pytest.raises(ConfigError, match=needle):
            load_suite(suite)


def test_evaluate_only_methods_leave_existing_keys_alone() -> None:
    """Registering none / peft changes no key: the committed CI baseline's runs are the smoke suite's."""
    repo = Path(__file__).resolve().parents[1]
    baseline = pd.read_parquet(repo / "results" / "baselines" / "ci.parquet")
    # A run is found under its key or, for runs keyed before keys were built from values (the
    # baseline's), under its legacy key (tests/test_run_keys.py).
    specs = expand(load_suite(repo / "suites" / "smoke.yaml"))
    found = {s.train_key if s.train_key in set(baseline["train_key"]) else (s.legacy_variant() or s).train_key
             for s in specs}
    assert specs and found <= set(baseline["train_key"])
