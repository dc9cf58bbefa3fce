"""Parameter budgets: the paper's counts on GPT-2 medium (built from its configuration,
random weights, no download), adapter budget solving, and `bench params`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.errors import BenchError, ConfigError
from bench.methods.adapter import AdapterConfig, adapter_count, solve_bottleneck
from bench.params import param_table

GPT2_MEDIUM_TOTAL = 354_823_168  # the paper's Table 1 denominator


class Entry:
    """Stands in for bench.suite.MethodEntry (label, method, config)."""

    def __init__(self, label: str, method: str, config: dict[str, Any]):
        self.label, self.method, self.config = label, method, config


@pytest.fixture(scope="module")
def medium() -> pd.DataFrame:
    # One build of GPT-2 medium for the module; each entry gets its own copy.
    entries = [
        Entry("finetune", "full", {}),
        Entry("ft_top2", "top_k", {"k": 2}),
        Entry("ft_top2_emb", "top_k", {"k": 2, "train_embeddings": True}),
        Entry("adapter_b6", "adapter", {"bottleneck": 6}),
        Entry("adapter_b224", "adapter", {"bottleneck": 224}),
        Entry("adapter_0.1pct", "adapter", {"budget": "0.1%"}),
        Entry("adapter_3pct", "adapter", {"budget": "3%"}),
    ]
    return param_table(model="gpt2-medium", entries=entries, from_config=True).set_index("label")


def test_gpt2_medium_base_total(medium: pd.DataFrame) -> None:
    assert (medium["base_total"] == GPT2_MEDIUM_TOTAL).all()
    assert medium.loc["finetune", "trained"] == GPT2_MEDIUM_TOTAL
    assert medium.loc["finetune", "stored"] == GPT2_MEDIUM_TOTAL


def test_top2_matches_paper(medium: pd.DataFrame) -> None:
    assert medium.loc["ft_top2", "trained"] == 25_194_496
    assert medium.loc["ft_top2", "stored"] == 25_194_496
    # the word embeddings (50257 x 1024) only when asked for
    assert medium.loc["ft_top2_emb", "trained"] == 25_194_496 + 50_257 * 1024


def test_adapter_counts_match_paper(medium: pd.DataFrame) -> None:
    assert medium.loc["adapter_b6", "trained"] == 368_784
    assert medium.loc["adapter_b224", "trained"] == 11_089_152
    assert medium.loc["adapter_b224", "stored"] == 11_089_152
    assert medium.loc["adapter_b6", "trained_pct"] == pytest.approx(0.10394, abs=1e-5)


def test_budget_solves_to_paper_bottleneck(medium: pd.DataFrame) -> None:
    # "0.1%" -> b=6 (nearest), as the paper's row; "3%" -> b=215, not the paper's 224
    assert medium.loc["adapter_0.1pct", "trained"] == 368_784
    assert "bottleneck=6 " in medium.loc["adapter_0.1pct", "detail"]
    assert medium.loc["adapter_3pct", "trained"] == 24 * (2049 * 215 + 3072)


def test_adapter_count_is_the_paper_formula() -> None:
    for b in (1, 6, 224, 500):
        assert adapter_count(design="lin", hidden=1024, n_blocks=24, bottleneck=b) == 24 * (
            2049 * b + 3072
        )
        assert adapter_count(design="houlsby", hidden=1024, n_blocks=24, bottleneck=b) == 48 * (
            2049 * b + 1024
        )


@pytest.mark.parametrize(
    "budget,design,expected",
    [
        ("0.1%", "lin", 6),  # 5 -> 319,608 (35,215 under); 6 -> 368,784 (13,961 over)
        ("3%", "lin", 215),
        ("0.0001%", "lin", 1),  # below one unit: the smallest adapter
        ("0.1%", "houlsby", 3),  # 48 x (2049 b + 1024): b=3 -> 344,208, b=4 -> 442,560
    ],
)
def test_solve_bottleneck(budget: str, design: str, expected: int) -> None:
    b = solve_bottleneck(
        design=design, hidden=1024, n_blocks=24, base_total=GPT2_MEDIUM_TOTAL, budget=budget
    )
    assert b == expected


def test_solve_bottleneck_tie_goes_to_smaller() -> None:
    # lin, d=1, one block: count = 3 b + 3; budget 7.5 lies halfway between b=1 (6) and b=2 (9)
    assert solve_bottleneck(design="lin", hidden=1, n_blocks=1, base_total=750, budget="1%") == 1


def test_adapter_config_rules() -> None:
    assert AdapterConfig().budget == "0.1%"
    assert AdapterConfig(bottleneck=8).budget is None
    with pytest.raises(BenchError, match="not both"):
        AdapterConfig(bottleneck=8, budget="1%")
    with pytest.raises(BenchError, match='did you mean "houlsby"'):
        AdapterConfig(design="houlsbi")
    for bad in ("0.1", "abc%", "0%", "150%"):
        with pytest.raises(BenchError, match="budget must be a percentage"):
            AdapterConfig(budget=bad)
    with pytest.raises(BenchError, match="bottleneck must be a positive integer"):
        AdapterConfig(bottleneck=0)


def test_param_table_unknown_config_key() -> None:
    with pytest.raises(ConfigError, match='bottlenek.*did you mean "bottleneck"'):
        param_table(model="tiny-gpt2", entries=[Entry("a", "adapter", {"bottlenek": 4})])


def test_param_table_unknown_method() -> None:
    with pytest.raises(BenchError, match='did you mean "adapter"'):
        param_table(model="tiny-gpt2", entries=[Entry("a", "adaptor", {})])


def test_bench_params_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("bench.suite")
    from bench.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: counts\nmodel: tiny-gpt2\ndatasets:\n  - {name: e2e, metrics: {}}\n"
        "methods:\n"
        "  - {label: ft, method: full}\n"
        "  - {label: top1, method: top_k, config: {k: 1}}\n"
        "  - {label: ad, method: adapter, config: {bottleneck: 2}}\n",
        encoding="utf-8",
    )
    assert main(["params", str(suite)]) == 0
    out = capsys.readouterr().out
    # tiny-gpt2: d=32, 2 blocks of 12 d^2 + 13 d = 12,704; V=259, 512 positions
    total = 259 * 32 + 512 * 32 + 2 * 12_704 + 64
    assert f"tiny-gpt2: {total:,} parameters" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert lines["ft"][2] == f"{total:,}"
    assert lines["top1"][2] == f"{12_704 + 64:,}"
    assert lines["ad"][2] == f"{2 * (2 * 32 + 2 * 32 * 2 + 2 + 32):,}"
