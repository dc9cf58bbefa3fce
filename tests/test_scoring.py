"""score_predictions: one stats pass per metric, groups, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.errors import BenchError
from bench.interfaces import EvalItem
from bench.metrics.bootstrap import bootstrap_ci
from bench.registry import METRICS
from bench.scoring import score_predictions

ITEMS = [
    EvalItem("s1", "name : A", ("The Vaults is a pub near the river.", "A pub by the river."), {"cat": "pub"}),
    EvalItem("s2", "name : B", ("Blue Spice is a cheap cafe.",), {"cat": "cafe"}),
    EvalItem("s3", "name : C", ("The Eagle serves French food.", "French food at The Eagle."), {"cat": "pub"}),
    EvalItem("s4", "name : D", ("Cotto is in the city centre.",), {"cat": "cafe"}),
]
HYPS = ["The Vaults is a pub by the river.", "Blue Spice is a cafe.", "The Eagle is French.", "Cotto."]
METRICS_MAP = {"bleu": "e2e_bleu", "rouge_l": "e2e_rouge_l", "cider": "e2e_cider"}
GROUPS = {"all": {}, "pubs": {"cat": ["pub"]}, "none": {"cat": ["bar"]}}


def test_rows_per_group_and_metric() -> None:
    rows = score_predictions(hypotheses=HYPS, items=ITEMS, metrics=METRICS_MAP, groups=GROUPS, n_boot=200)
    assert len(rows) == len(METRICS_MAP) * len(GROUPS)
    keys = {"group", "metric", "metric_id", "value", "ci_low", "ci_high", "n", "signature",
            "metric_version", "higher_is_better"}
    assert all(set(r) == keys for r in rows)
    by = {(r["group"], r["metric"]): r for r in rows}
    refs = [list(it.references) for it in ITEMS]
    for column, metric_id in METRICS_MAP.items():
        metric = METRICS.get(metric_id)()
        stats = metric.stats(HYPS, refs)
        assert by[("all", column)]["value"] == pytest.approx(metric.aggregate(stats))
        # Subsets aggregate the rows of the full-corpus statistics.
        assert by[("pubs", column)]["value"] == pytest.approx(metric.aggregate(stats[[0, 2]]))
        assert by[("pubs", column)]["n"] == 2
        row = by[("all", column)]
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_ci(metric, stats, n_boot=200, seed=0))
        assert row["signature"] == metric.signature() and row["metric_version"] == metric.VERSION
        empty = by[("none", column)]
        assert empty["n"] == 0 and math.isnan(empty["value"]) and math.isnan(empty["ci_low"])


def test_seed_reproducible_and_changes_intervals() -> None:
    kw = {"hypotheses": HYPS, "items": ITEMS, "metrics": {"bleu": "e2e_bleu"}, "groups": {"all": {}}, "n_boot": 200}
    a = score_predictions(**kw, seed=1)[0]
    b = score_predictions(**kw, seed=1)[0]
    c = score_predictions(**kw, seed=2)[0]
    assert a == b
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])
    assert a["value"] == c["value"]


def test_stats_are_computed_once_per_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    metric_cls = METRICS.get("e2e_rouge_l")
    calls = []
    original = metric_cls.stats

    def counting(self, hyps, refs):
        calls.append(len(hyps))
        return original(self, hyps, refs)

    monkeypatch.setattr(metric_cls, "stats", counting)
    score_predictions(hypotheses=HYPS, items=ITEMS, metrics={"r": "e2e_rouge_l"}, groups=GROUPS, n_boot=50)
    assert calls == [len(ITEMS)]


def test_user_mistakes_are_one_line_errors() -> None:
    with pytest.raises(BenchError, match="3 predictions for 4 items"):
        score_predictions(hypotheses=HYPS[:3], items=ITEMS, metrics=METRICS_MAP, groups=GROUPS)
    with pytest.raises(BenchError, match='field .catt.*did you mean "cat"'):
        score_predictions(hypotheses=HYPS, items=ITEMS, metrics=METRICS_MAP, groups={"x": {"catt": ["pub"]}})
    with pytest.raises(BenchError, match="unknown metric"):
        score_predictions(hypotheses=HYPS, items=ITEMS, metrics={"b": "e2e_bleuu"}, groups=GROUPS)
    with pytest.raises(BenchError, match="list of values"):
        score_predictions(hypotheses=HYPS, items=ITEMS, metrics=METRICS_MAP, groups={"x": {"cat": "pub"}})


def test_no_bootstrap_gives_nan_intervals() -> None:
    rows = score_predictions(hypotheses=HYPS, items=ITEMS, metrics={"b": "e2e_bleu"}, groups={"all": {}}, n_boot=0)
    assert np.isnan(rows[0]["ci_low"]) and np.isfinite(rows[0]["value"])
