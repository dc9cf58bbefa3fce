"""Paired comparison of two stored runs on the same examples (``bench compare``).

Koehn (2004), "Statistical Significance Tests for Machine Translation Evaluation": both
runs' outputs are rescored from their stored predictions with the same metric, and the
same bootstrap resamples of the examples score both (``bench.metrics.bootstrap``), giving
the 95% interval of the difference B - A and the probability that B is not better than A.

Runs are named by train key, a unique key prefix, the run folder's path, or a method label
that names one stored run. Two runs are
compared only when they hold predictions for the same examples (same split, same source
ids, same references); the order of the rows does not matter. The metric set is the one the
runs were scored with (``spec.data.metrics``), which must agree between them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError, did_you_mean
from bench.interfaces import EvalItem
from bench.registry import DATASETS, METRICS

COLUMNS = [
    "split", "group", "metric", "metric_id", "n", "score_a", "score_b", "delta",
    "delta_ci_low", "delta_ci_high", "p_value", "higher_is_better",
]  # fmt: skip


def resolve_run(ref: str, results: Path) -> Path:
    """The run folder named by a train key, a unique key prefix, a path, or a method label
    that names exactly one stored run."""
    from bench.store import read_json, runs_dir

    path = Path(ref)
    if path.is_dir() and (path / "spec.json").is_file():
        return path
    root = runs_dir(results)
    if not root.is_dir():
        raise BenchError(f"run {ref!r}: no runs folder {root} (--results names the results directory)")
    keys = sorted(d.name for d in root.iterdir() if (d / "spec.json").is_file())
    if ref in keys:
        return root / ref
    matches = [k for k in keys if k.startswith(ref)]
    if len(matches) == 1:
        return root / matches[0]
    if matches:
        shown = ", ".join(matches[:4]) + (", ..." if len(matches) > 4 else "")
        raise BenchError(f"run {ref!r} is ambiguous in {root}: {len(matches)} keys start with it ({shown})")
    # a method label (the suite's `label:`), when it names exactly one stored run
    labels = {k: str(read_json(root / k / "spec.json")["spec"].get("method_label")) for k in keys}
    named = [k for k, label in labels.items() if label == ref]
    if len(named) == 1:
        return root / named[0]
    if named:
        shown = ", ".join(named[:4]) + (", ..." if len(named) > 4 else "")
        raise BenchError(f"label {ref!r} names {len(named)} runs in {root} ({shown}); give a key or key prefix")
    raise BenchError(f"no run {ref!r} in {root}{did_you_mean(ref, keys + sorted(set(labels.values())))}")


def _load(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    from bench.store import damaged_files, read_json, read_predictions

    damage = damaged_files(folder).get("predictions.parquet")
    if damage:
        raise BenchError(f"run {folder.name} is damaged: {damage} (`bench run` redoes it)")
    spec = read_json(folder / "spec.json").get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("data"), dict) or "name" not in spec["data"]:
        raise BenchError(f"run {folder.name} is damaged: {folder / 'spec.json'} has no spec with data.name "
                         "(`bench run` redoes it)")
    preds = read_predictions(folder, decode_key=spec.get("decode_key"))
    if preds.empty:
        raise BenchError(f"run {folder.name} ({folder}) has no stored predictions")
    return spec, preds


def _items(preds: pd.DataFrame) -> dict[str, tuple[EvalItem, str]]:
    """source_id -> (item, prediction), refusing a run that holds a source twice."""
    out: dict[str, tuple[EvalItem, str]] = {}
    for row in preds.itertuples(index=False):
        sid = str(row.source_id)
        if sid in out:
            raise BenchError(f"source {sid!r} appears twice in one run's {row.split} predictions")
        fields = json.loads(row.fields) if isinstance(row.fields, str) and row.fields else {}
        item = EvalItem(sid, str(row.source), tuple(str(r) for r in row.references), fields)
        out[sid] = (item, "" if row.prediction is None else str(row.prediction))
    return out


def _same_examples(split: str, a: Mapping[str, tuple], b: Mapping[str, tuple], names: tuple[str, str]) -> None:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        first = (only_a or only_b)[0]
        raise BenchError(
            f"runs {names[0]} and {names[1]} score different examples on split {split!r}: "
            f"{len(only_a)} sources only in the first, {len(only_b)} only in the second "
            f"(e.g. {first!r})"
        )
    for sid, (item, _) in a.items():
        if b[sid][0].references != item.references:
            raise BenchError(
                f"runs {names[0]} and {names[1]} have different references for source "
                f"{sid!r} on split {split!r}"
            )


def compare_runs(
    *,
    run_a: str,
    run_b: str,
    results: Path = Path("results"),
    split: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (split, score group, metric): both scores, B - A, its 95% CI, p-value.

    ``p_value`` is the paired bootstrap's probability that B is not better than A (one
    sided, "better" following the metric's direction; TER: lower).
    """
    from bench.metrics.bootstrap import paired_bootstrap
    from bench.scoring import group_mask

    folder_a, folder_b = resolve_run(run_a, results), resolve_run(run_b, results)
    names = (folder_a.name, folder_b.name)
    spec_a, preds_a = _load(folder_a)
    spec_b, preds_b = _load(folder_b)
    data_a, data_b = spec_a["data"], spec_b["data"]
    if data_a["name"] != data_b["name"]:
        raise BenchError(
            f"runs {names[0]} and {names[1]} are on different datasets "
            f"({data_a['name']} vs {data_b['name']})"
        )
    metrics: dict[str, str] = dict(data_a.get("metrics") or DATASETS.get(data_a["name"])().metrics)
    metrics_b = dict(data_b.get("metrics") or DATASETS.get(data_b["name"])().metrics)
    if metrics != metrics_b:
        raise BenchError(
            f"runs {names[0]} and {names[1]} were scored with different metric sets "
            f"({metrics} vs {metrics_b})"
        )
    splits_a, splits_b = set(preds_a["split"]), set(preds_b["split"])
    if split is not None:
        if split not in splits_a or split not in splits_b:
            raise BenchError(
                f"split {split!r} is not in both runs (first: {sorted(splits_a)}, "
                f"second: {sorted(splits_b)})"
            )
        splits = [split]
    else:
        splits = sorted(splits_a & splits_b)
        if not splits:
            raise BenchError(
                f"runs {names[0]} and {names[1]} share no split "
                f"(first: {sorted(splits_a)}, second: {sorted(splits_b)})"
            )
    groups = DATASETS.get(data_a["name"])().score_groups
    rows = []
    for sp in splits:
        a = _items(preds_a[preds_a["split"] == sp])
        b = _items(preds_b[preds_b["split"] == sp])
        _same_examples(sp, a, b, names)
        order = list(a)  # the first run's order; the second is aligned by source id
        items = [a[s][0] for s in order]
        hyp_a, hyp_b = [a[s][1] for s in order], [b[s][1] for s in order]
        refs = [list(it.references) for it in items]
        masks = {g: group_mask(items, g, spec) for g, spec in groups.items()}
        for column, metric_id in metrics.items():
            metric = METRICS.get(metric_id)()
            stats_a = np.asarray(metric.stats(hyp_a, refs), dtype=np.float64)
            stats_b = np.asarray(metric.stats(hyp_b, refs), dtype=np.float64)
            for g, mask in masks.items():
                n = int(mask.sum())
                if n == 0:
                    continue  # e.g. no unseen category in a dev split
                res = paired_bootstrap(metric, stats_a[mask], stats_b[mask], n_boot=n_boot, seed=seed)
                rows.append(
                    {
                        "split": sp, "group": g, "metric": column, "metric_id": metric_id,
                        "n": n, "score_a": res.score_a, "score_b": res.score_b,
                        "delta": res.delta, "delta_ci_low": res.delta_ci[0],
                        "delta_ci_high": res.delta_ci[1], "p_value": res.p_value,
                        "higher_is_better": bool(metric.higher_is_better),
                    }
                )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)
