"""Score one run's predictions: every metric of the dataset, every score group, with 95% CIs.

Statistics are computed ONCE per metric over all items (one call into the metric, one METEOR
batch), then aggregated per group subset and per bootstrap resample. Corpus-level weights
that a metric derives from its input (NIST information, CIDEr IDF) therefore come from all
items of the split, also for a group subset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.errors import BenchError, did_you_mean
from bench.interfaces import EvalItem
from bench.metrics.bootstrap import bootstrap_ci
from bench.registry import METRICS


def group_mask(items: Sequence[EvalItem], group: str, spec: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Boolean mask of the items a group filter keeps ({} keeps all)."""
    known = {k for it in items for k in it.fields}
    mask = np.ones(len(items), dtype=bool)
    for field, allowed in spec.items():
        if field not in known and items:
            raise BenchError(
                f"score group {group!r} filters on field {field!r}, which no item has"
                f"{did_you_mean(field, known)}"
            )
        if isinstance(allowed, str):
            raise BenchError(
                f"score group {group!r}: field {field!r} needs a list of values, got the string {allowed!r}"
            )
        allowed_set = set(allowed)
        mask &= np.array([it.fields.get(field) in allowed_set for it in items], dtype=bool)
    return mask


def score_predictions(
    *,
    hypotheses: list[str],
    items: list[EvalItem],
    metrics: Mapping[str, str],
    groups: Mapping[str, Mapping[str, Sequence[str]]],
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (group, metric column): value, 95% bootstrap CI, n, signature, version.

    ``metrics`` maps a column name (``bleu``) to a registered metric id (``e2e_bleu``);
    ``groups`` maps a group name to a field filter. A group with no item gets NaN values
    and n = 0 rather than an error, so a split without, say, unseen categories still stores
    its other groups.
    """
    if len(hypotheses) != len(items):
        raise BenchError(f"{len(hypotheses)} predictions for {len(items)} items: they must pair up")
    if not groups:
        raise BenchError("no score group given (use {'all': {}} to score every item)")
    masks = {name: group_mask(items, name, spec) for name, spec in groups.items()}
    references = [list(it.references) for it in items]
    instances = {column: METRICS.get(metric_id)() for column, metric_id in metrics.items()}
    # Statistics of all metrics at once: METEOR waits on its Java process (no GIL held)
    # while the Python metrics compute. Results do not depend on the order.
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(instances)))) as pool:
        futures = {c: pool.submit(m.stats, hypotheses, references) for c, m in instances.items()}
        all_stats = {c: f.result() for c, f in futures.items()}
    rows: list[dict[str, Any]] = []
    for column, metric_id in metrics.items():
        metric = instances[column]
        stats = np.asarray(all_stats[column], dtype=np.float64)
        if stats.ndim != 2 or stats.shape[0] != len(items):
            raise BenchError(
                f"metric {metric_id!r} returned statistics of shape {stats.shape}, "
                f"expected ({len(items)}, k)"
            )
        for group, mask in masks.items():
            sub = stats[mask]
            n = int(mask.sum())
            if n == 0:
                value = lo = hi = math.nan
            else:
                value = float(metric.aggregate(sub))
                lo, hi = bootstrap_ci(metric, sub, n_boot=n_boot, seed=seed) if n_boot > 0 else (math.nan, math.nan)
            rows.append(
                {
                    "group": group,
                    "metric": column,
                    "metric_id": metric_id,
                    "value": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "signature": metric.signature(),
                    "metric_version": str(metric.VERSION),
                    "higher_is_better": bool(metric.higher_is_better),
                }
            )
    return rows
