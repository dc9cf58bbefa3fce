"""Suite validation, grid expansion and run identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.config import DataSpec, DecodeConfig, RunSpec, TrainConfig
from bench.errors import BenchError, ConfigError
from bench.suite import expand, load_suite

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "suites").rglob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


BASE = """
model: tiny-gpt2
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 20, n_dev_mrs: 5, n_test_mrs: 5}
methods:
  - label: finetune
    method: full
"""


@pytest.mark.parametrize("path", SUITES, ids=[p.name for p in SUITES])
def test_every_suite_in_the_repo_validates(path: Path) -> None:
    suite = load_suite(path)
    specs = expand(suite)
    assert specs, f"{path} expands to no run"
    # Two rows may share a run only when they are the same run under two labels (e.g. the
    # Table 5 prefix row is also the length-10 point of the Figure 4 sweep).
    by_key: dict[str, RunSpec] = {}
    for s in specs:
        first = by_key.setdefault(s.train_key, s)
        assert dataclasses.replace(first, method_label=s.method_label) == s, f"{s.method_label} and {first.method_label} differ but share a key"


def test_all_problems_reported_at_once_with_did_you_mean(tmp_path: Path) -> None:
    p = write(tmp_path, """
model: tiny-gpt2
trian: {lr: 1}
train: {lr: "fast", batch_sise: 4}
datasets:
  - name: synthetic_e2 
methods:
  - method: prefx
  - method: full
    config: {k: 2}
""")
    with pytest.raises(ConfigError) as e:
        load_suite(p)
    text = str(e.value)
    assert "unknown key 'trian' (did you mean \"train\"?)" in text
    assert "train.lr: expected float" in text
    assert "batch_sise" in text and '"batch_size"' in text
    assert "synthetic_e2" in text and '"synthetic_e2e"' in text
    assert "'prefx'" in text
    assert "unknown key 'k'" in text
    assert all(line.startswith(str(p)) for line in e.value.problems)
    assert len(e.value.problems) >= 6


def test_bad_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    p = write(tmp_path, "model: [unclosed\n")
    with pytest.raises(BenchError, match="not valid YAML"):
        load_suite(p)
    with pytest.raises(BenchError, match="not found"):
        load_suite(tmp_path / "missing.yaml")


def test_grid_expansion_order_and_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, BASE.replace("methods:", """    train_sizes: [5, 10]
    subsets: 2
seeds: [0, 1]
train: {lr: 1.0e-3, max_steps: 3}
methods:
  - label: prefix
    method: adapter
    config: {bottleneck: 2}
    sweep: {bottleneck: [2, 4]}""") + """
overrides:
  - match: {method: finetune}
    train: {lr: 5.0e-5}
""")
    specs = expand(load_suite(p))
    # 2 sizes x 2 subsets x (2 sweep variants + 1) x 2 seeds
    assert len(specs) == 2 * 2 * 3 * 2
    assert [s.data.train_size for s in specs[:12]] == [5] * 12
    assert specs[0].method_label == "prefix[bottleneck=2]" and specs[0].method_config["bottleneck"] == 2
    ft = [s for s in specs if s.method_label == "finetune"]
    assert all(s.train.lr == 5e-5 for s in ft)
    assert all(s.train.lr == 1e-3 for s in specs if s.method_label != "finetune")
    assert expand(load_suite(p)) == specs  # stable


def _spec(**train: object) -> RunSpec:
    return RunSpec(
        suite="x", model="tiny-gpt2", model_fingerprint="tiny-gpt2:seed=0", method="full",
        method_label="finetune", method_version="1", method_config={},
        data=DataSpec(name="synthetic_e2e", version="1", options={"seed": 0}),
        seed=0, train=dataclasses.replace(TrainConfig(), **train), decode=DecodeConfig(),
        metric_versions={"e2e_bleu": "1"},
    )


def test_run_key_is_stable_and_sensitive() -> None:
    base = _spec()
    # Golden: a change of this value means every cached result is orphaned; bump deliberately.
    # The key bench gave this spec before keys were built from values (epochs as the integer
    # 10) stays reachable as its legacy variant (tests/test_run_keys.py).
    assert base.train_key == "0c7b07c440de85fa"
    assert base.legacy_variant().train_key == "66422db0d9ad529f"
    assert _spec(lr=1e-4).train_key != base.train_key
    assert _spec(lr=5e-5).train_key == base.train_key  # 5e-5 == 0.00005
    # Settings that do not change the numbers do not change the key.
    assert _spec(checkpoint_every=10).train_key == base.train_key
    d = dataclasses.replace(base, decode=DecodeConfig(beam_size=3))
    assert d.train_key == base.train_key and d.decode_key != base.decode_key
    d = dataclasses.replace(base, decode=DecodeConfig(batch_size=3))
    assert d.decode_key == base.decode_key
    m = dataclasses.replace(base, metric_versions={"e2e_bleu": "2"})
    assert m.decode_key == base.decode_key and m.score_key != base.score_key
    # Labels are display names, not identity.
    assert dataclasses.replace(base, method_label="ft").train_key == base.train_key
