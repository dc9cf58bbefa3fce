"""Run keys depend on values, not spellings, and every key bench gave before still finds its run.

tests/golden/run_keys.json holds the keys of three suites computed before keys were built from
values (git 1dd7d08). results/replication_cpu/ (CPU-hours of real runs) and
results/baselines/ci.parquet (the CI baseline) are stored under those keys.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from bench import store
from bench.config import DecodeConfig, TrainConfig
from bench.runner import cache_state
from bench.suite import expand, load_suite

REPO = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((REPO / "tests" / "golden" / "run_keys.json").read_text())["suites"]
# How many runs of each suite only the pre-value (legacy) key reproduces: runs whose default
# TrainConfig was never merged with a setting had ``epochs`` hashed as the integer 10.
LEGACY_COUNT = {"suites/smoke.yaml": 5, "suites/quickstart.yaml": 1, "suites/replication_cpu.yaml": 0}

ADDED_CELLS = {"suites/replication_cpu.yaml": {
    ("emb_10_lr3e-3", "e2e", 500, 0, 0),  # issue #10's tuned variant
    # issue #22's Table 2 rows (WebNLG on the full test set, E2E at 500/subset 0)
    *{(label, ds, 500, 0, 0) for label in ("prefix_0.1pct", "ft_top2", "adapter_3pct", "adapter_0.1pct")
      for ds in ("e2e", "webnlg")},
    ("finetune", "webnlg", 500, 0, 0),
    # issue #22's Figure 4 (prefix length) and Figure 5 (initialization) rows
    *{(f"prefix_{n}", "e2e", 500, 0, 0) for n in (1, 5, 20, 40)},
    *{("prefix_random", "e2e", 100, s, 0) for s in range(3)},
    ("prefix_summarize", "e2e", 100, 0, 0), ("prefix_elephant", "e2e", 100, 0, 0),
}}
# Cells of the golden suites taken out before they ever ran: issue #22 replaced the WebNLG
# seen-to-unseen pair (scored on U only) by Table 2 runs scored on S, U and A.
REMOVED_CELLS = {"suites/replication_cpu.yaml": {("prefix", "webnlg", 500, 0, 0), ("finetune", "webnlg", 500, 0, 0)}}


def _keys(spec) -> tuple[str, str, str]:
    return spec.train_key, spec.decode_key, spec.score_key


@pytest.mark.parametrize("suite", sorted(GOLDEN))
def test_every_golden_key_is_reproduced(suite: str) -> None:
    # cells added to a suite after the golden keys were taken (they have no legacy key), named
    # here so that any other new or lost cell still fails
    added = ADDED_CELLS.get(suite, set())
    specs = [s for s in expand(load_suite(REPO / suite))
             if (s.method_label, s.data.name, s.data.train_size, s.data.subset, s.seed) not in added]
    removed = REMOVED_CELLS.get(suite, set())
    golden = [g for g in GOLDEN[suite]
              if (g["label"], g["dataset"], g["train_size"], g["subset"], g["seed"]) not in removed]
    assert [(s.method_label, s.data.name, s.data.train_size, s.data.subset, s.seed) for s in specs] == [
        (g["label"], g["dataset"], g["train_size"], g["subset"], g["seed"]) for g in golden
    ]
    legacy = 0
    for spec, g in zip(specs, golden):
        want = (g["train_key"], g["decode_key"], g["score_key"])
        if _keys(spec) == want:
            continue
        old = spec.legacy_variant()
        assert old is not None and _keys(old) == want, f"{suite} {g['label']}: key {spec.train_key} lost {want[0]}"
        legacy += 1
    assert legacy == LEGACY_COUNT[suite]


def _suite(tmp_path: Path, train: str, name: str = "s") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
name: keys
model: tiny-gpt2
{train}
datasets:
  - name: synthetic_e2e
    options: {{n_train_mrs: 20, n_dev_mrs: 5, n_test_mrs: 5}}
methods:
  - label: finetune
    method: full
  - label: lora
    method: lora
    train: {{lr: 1.0e-3}}
""")
    return p


@pytest.mark.parametrize("spelling", [
    ("", "train: {epochs: 10}"),
    ("", "train: {epochs: 10.0}"),
    ("", "train: {max_grad_norm: 1}"),
    ("train: {max_grad_norm: 1.0}", "train: {max_grad_norm: 1}"),
    ("train: {weight_decay: 0.0, lr: 5.0e-5}", "train: {weight_decay: 0, lr: 0.00005}"),
    ("decode: {length_penalty: 1}", "decode: {length_penalty: 1.0}"),
], ids=["epochs-10-vs-default", "epochs-10.0-vs-default", "max_grad_norm-1-vs-default", "max_grad_norm-1-vs-1.0",
        "weight_decay-0-and-lr-spellings", "length_penalty-1-vs-1.0"])
def test_equal_values_give_equal_keys(tmp_path: Path, spelling: tuple[str, str]) -> None:
    a = expand(load_suite(_suite(tmp_path, spelling[0], "a")))
    b = expand(load_suite(_suite(tmp_path, spelling[1], "b")))
    assert [_keys(x) for x in a] == [_keys(x) for x in b]


def test_direct_construction_hashes_by_value() -> None:
    spec = expand(load_suite(REPO / "suites" / "smoke.yaml"))[0]
    ints = dataclasses.replace(spec, train=TrainConfig(epochs=10, max_steps=120, lr=1e-2, batch_size=4,
                                                         max_target_tokens=96, max_grad_norm=1),
                               decode=DecodeConfig(beam_size=2, max_new_tokens=24, length_penalty=1))
    assert _keys(ints) == _keys(spec)
    # A different value is a different key (the normalisation does not swallow real changes).
    assert dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=11.0)).train_key != spec.train_key
    assert dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_grad_norm=None)).train_key != spec.train_key


@pytest.mark.parametrize("suite", ["replication_cpu", "peft_baselines"])
def test_committed_real_data_runs_are_cached(suite: str) -> None:
    """Every committed run of suites/<suite>.yaml (results/<suite>/) is found cached and scored
    under the suite's current keys: `bench report` reads them, `bench run` redoes nothing."""
    results = REPO / "results" / suite
    # Finished runs only: a run the background replication is working on is not committed.
    stored = {p.name for p in store.runs_dir(results).iterdir()
              if p.is_dir() and (store.read_meta(p) or {}).get("status") == "done"}
    assert stored, f"results/{suite} holds no runs"
    specs = store.adopt_stored_keys(expand(load_suite(REPO / "suites" / f"{suite}.yaml")), results)
    found = {s.train_key: cache_state(s, results) for s in specs if s.train_key in stored}
    assert set(found) == stored
    assert set(found.values()) == {"scored"}


def test_legacy_folder_is_adopted_and_ci_baseline_matches_by_key(tmp_path: Path) -> None:
    """A run stored under its pre-value key is found (cached) and the CI baseline's keys are
    the smoke suite's legacy keys, matched by key rather than by identity."""
    specs = expand(load_suite(REPO / "suites" / "smoke.yaml"))
    base = pd.read_parquet(REPO / "results" / "baselines" / "ci.parquet")
    legacy = {s.legacy_variant().train_key for s in specs}
    assert set(base["train_key"]) == legacy
    # A folder under the legacy key is what adoption looks for.
    old = specs[0].legacy_variant()
    store.run_dir(tmp_path, old.train_key).mkdir(parents=True)
    adopted = store.adopt_stored_keys(specs, tmp_path)
    assert adopted[0].train_key == old.train_key and adopted[0].score_key == old.score_key
    assert [s.train_key for s in adopted[1:]] == [s.train_key for s in specs[1:]]
    # Both folders present: the value-based key wins.
    store.run_dir(tmp_path, specs[0].train_key).mkdir(parents=True)
    assert store.adopt_stored_keys(specs, tmp_path)[0].train_key == specs[0].train_key


def test_regress_matches_baseline_rows_by_legacy_key() -> None:
    from bench.regress import compare, read_baseline

    base = read_baseline(REPO / "results" / "baselines" / "ci.parquet")
    specs = expand(load_suite(REPO / "suites" / "smoke.yaml"))
    aliases = {s.legacy_variant().train_key: s.train_key for s in specs}
    current = base.assign(train_key=base["train_key"].map(aliases), tolerances=[{}] * len(base))
    # Identity columns changed too: only the key alias can match these rows.
    current["seed"] = 99
    result = compare(base, current, pd.DataFrame(), key_aliases=aliases)
    assert result.passed and result.counts()["same"] == len(base)
    without = compare(base, current, pd.DataFrame())
    assert not without.passed
