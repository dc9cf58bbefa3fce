"""Bootstrap intervals and paired tests on per-example statistics."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from bench.metrics.bootstrap import bootstrap_ci, paired_bootstrap, resample_scores
from bench.registry import METRICS


class MeanMetric:
    """Mean of column 0, with the fast summed path."""

    name: ClassVar[str] = "mean"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True

    def aggregate(self, stats: np.ndarray) -> float:
        return float(np.mean(stats[:, 0]))

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        return sums[:, 0] / n


class SlowMeanMetric:
    """Same metric without ``aggregate_sums``: exercises the per-resample path."""

    higher_is_better: ClassVar[bool] = True

    def aggregate(self, stats: np.ndarray) -> float:
        return float(np.mean(stats[:, 0]))


class ErrorRate(MeanMetric):
    higher_is_better: ClassVar[bool] = False


def test_fast_and_slow_paths_draw_the_same_resamples() -> None:
    stats = np.random.default_rng(0).normal(size=(50, 1))
    fast = resample_scores(MeanMetric(), stats, n_boot=300, seed=7)
    slow = resample_scores(SlowMeanMetric(), stats, n_boot=300, seed=7)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert not np.allclose(fast, resample_scores(MeanMetric(), stats, n_boot=300, seed=8))


def test_ci_covers_the_estimate_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=(40, 1)), rng.normal(size=(4000, 1))
    lo_s, hi_s = bootstrap_ci(MeanMetric(), small, n_boot=1000, seed=0)
    lo_l, hi_l = bootstrap_ci(MeanMetric(), large, n_boot=1000, seed=0)
    assert lo_s < small.mean() < hi_s
    assert lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # ~ 1/sqrt(100) of the width
    # The normal-theory interval for a mean of N(0,1) draws: 1.96 / sqrt(n).
    assert (hi_l - lo_l) / 2 == pytest.approx(1.96 / np.sqrt(4000), rel=0.15)


def test_bleu_bootstrap_uses_corpus_aggregation() -> None:
    bleu = METRICS.get("e2e_bleu")()
    hyps = ["the pub is near the river", "a cheap cafe", "blue spice is a coffee shop", "x"]
    refs = [["the pub is near the river"], ["a cheap cafe in town"], ["blue spice is a shop"], ["y"]]
    stats = bleu.stats(hyps, refs)
    scores = resample_scores(bleu, stats, n_boot=200, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(stats), size=(200, len(stats)))
    expected = [bleu.aggregate(stats[i]) for i in idx]  # corpus BLEU of each resample
    assert scores == pytest.approx(expected, abs=1e-12)


def test_paired_bootstrap_detects_a_real_difference() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 1))
    better = paired_bootstrap(MeanMetric(), a, a + 0.3 + 0.1 * rng.normal(size=(300, 1)), n_boot=1000)
    assert better.p_value < 0.01
    assert better.delta_ci[0] > 0
    same = paired_bootstrap(MeanMetric(), a, a, n_boot=1000)
    assert same.p_value == 1.0  # B is never better than itself
    worse = paired_bootstrap(MeanMetric(), a, a - 0.3, n_boot=1000)
    assert worse.p_value > 0.99


def test_paired_bootstrap_respects_lower_is_better() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 1))
    result = paired_bootstrap(ErrorRate(), a, a - 0.5, n_boot=500)
    assert result.p_value < 0.01
    assert result.delta < 0


def test_paired_bootstrap_rejects_unpaired_inputs() -> None:
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap(MeanMetric(), np.zeros((3, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="non-empty"):
        resample_scores(MeanMetric(), np.zeros((0, 1)))
