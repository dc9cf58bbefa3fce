"""Bootstrap confidence intervals and paired bootstrap tests from per-example statistics.

Source: Efron & Tibshirani (1993) for the percentile interval; Koehn (2004), "Statistical
Significance Tests for Machine Translation Evaluation", for the paired test. Both work on a
metric's sufficient statistics (``Metric.stats``): resample example indices with
replacement, aggregate each resample with the metric's own ``aggregate``.

Metrics whose aggregate is a function of the column sums (BLEU, NIST, METEOR, means such as
ROUGE-L and CIDEr) may expose ``aggregate_sums(sums [B, k], n) -> [B]``; the resamples are
then drawn as count vectors and summed with one matrix product, which is exact (summing a
resample's rows equals weighting every row by how often it was drawn) and fast. Other
metrics are aggregated one resample at a time.

Corpus-level weights that ``stats`` derived from the whole corpus (NIST information, CIDEr
IDF) stay fixed across resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_BLOCK = 200  # resamples per count-matrix block: bounds memory at _BLOCK x n floats


def _index_blocks(n: int, n_boot: int, seed: int):
    """Yield [b, n] index arrays; the same seed gives the same resamples everywhere."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(_BLOCK, n_boot - done)
        yield rng.integers(0, n, size=(b, n))
        done += b


def _scores_for(metric: Any, stats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    n = stats.shape[0]
    agg_sums: Callable | None = getattr(metric, "aggregate_sums", None)
    if agg_sums is not None:
        b = idx.shape[0]
        flat = (np.arange(b)[:, None] * n + idx).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        return np.asarray(agg_sums(counts @ stats, n), dtype=np.float64)
    return np.array([metric.aggregate(stats[i]) for i in idx], dtype=np.float64)


def resample_scores(metric: Any, stats: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """The metric's score on ``n_boot`` bootstrap resamples of the rows of ``stats``."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] == 0:
        raise ValueError(f"bootstrap needs a non-empty [n, k] statistics array, got shape {stats.shape}")
    return np.concatenate([_scores_for(metric, stats, idx) for idx in _index_blocks(len(stats), n_boot, seed)])


def bootstrap_ci(
    metric: Any, stats: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval (default 95%) of the metric over the rows of ``stats``."""
    scores = resample_scores(metric, stats, n_boot=n_boot, seed=seed)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(scores, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedResult:
    """Paired bootstrap of system B against system A on the same examples."""

    score_a: float
    score_b: float
    delta: float  # B - A, in the metric's units
    delta_ci: tuple[float, float]  # 95% percentile interval of B - A
    p_value: float  # probability that B is not better than A (one-sided)
    n_boot: int


def paired_bootstrap(
    metric: Any,
    stats_a: np.ndarray,
    stats_b: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> PairedResult:
    """Koehn's paired bootstrap: both systems scored on the same resamples.

    ``p_value`` is (1 + #resamples where B is not better than A) / (1 + n_boot), "better"
    following ``metric.higher_is_better``; the +1 keeps it above zero, since 1000 resamples
    cannot show a probability below 1/1001.
    """
    return pooled_paired_bootstrap(metric, [(stats_a, stats_b)], n_boot=n_boot, seed=seed)


def pooled_paired_bootstrap(
    metric: Any,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> PairedResult:
    """The paired bootstrap of the mean difference over several (A, B) pairs on one test set.

    Each pair is two systems trained on the same data (one sampled subset and seed, say) and
    scored on the same examples in the same order; every resample of the examples is applied
    to all pairs at once, and B - A is averaged over the pairs. With one pair this is Koehn's
    test. The interval covers the test-set sampling only, not the spread over subsets.
    """
    if not pairs:
        raise ValueError("paired bootstrap needs at least one pair of runs")
    arrays = [(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)) for a, b in pairs]
    n = arrays[0][0].shape[0]
    for a, b in arrays:
        if a.shape[0] != b.shape[0] or a.shape[0] != n:
            raise ValueError(f"paired bootstrap needs the same examples: {a.shape[0]} vs {b.shape[0]} rows")
    diffs, sums_a, sums_b = [], 0.0, 0.0
    for idx in _index_blocks(n, n_boot, seed):
        d = np.zeros(idx.shape[0])
        for a, b in arrays:
            d += _scores_for(metric, b, idx) - _scores_for(metric, a, idx)
        diffs.append(d / len(arrays))
    for a, b in arrays:
        sums_a += float(metric.aggregate(a))
        sums_b += float(metric.aggregate(b))
    diff = np.concatenate(diffs)
    not_better = diff <= 0 if metric.higher_is_better else diff >= 0
    lo, hi = np.percentile(diff, [2.5, 97.5])
    score_a, score_b = sums_a / len(arrays), sums_b / len(arrays)
    return PairedResult(
        score_a=score_a,
        score_b=score_b,
        delta=score_b - score_a,
        delta_ci=(float(lo), float(hi)),
        p_value=float((1 + not_better.sum()) / (1 + n_boot)),
        n_boot=n_boot,
    )
