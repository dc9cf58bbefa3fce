"""Read cached results into the frames that reports and the regression check use.

Nothing here trains or scores: a run is what ``results/runs/<train_key>/`` holds. With a suite,
the runs are exactly those its current expansion names (by train key) and the metric rows are
those of each run's current score key; runs the suite expects but the cache lacks (or holds
only as failed, interrupted or scored under other metric versions) are listed, not dropped.
Without a suite, every stored run is read, grouped by the suite name in its spec.

Comparability: a row of a table aggregates runs of one *setting* (the resolved spec minus
seed and subset, which are what a row averages over). Two settings under one label (another
method version, another learning rate) become two rows, never one average; a cell whose runs
were scored with different metric versions or signatures is marked not comparable.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import store
from bench.config import KEYED_WHEN_SET, RESULT_NEUTRAL_TRAIN
from bench.identity import digest

# The spec fields a row averages over (or that only name the run), left out of its setting.
_NOT_SETTING = ("seed", "train_key", "decode_key", "score_key", "tolerances", "metric_versions", "suite")

SCORE_COLUMNS = (
    "split", "group", "metric", "metric_id", "value", "ci_low", "ci_high", "signature",
    "metric_version", "higher_is_better",
)

EXTRA_COLUMNS = (
    "setting", "setting_json", "scenario", "length", "init", "score_key", "max_eval_sources",
    "tolerances", "metric_versions", "provenance",
)

MISSING_COLUMNS = ("method_label", "model", "dataset", "train_size", "subset", "seed", "train_key", "reason")
FAILED_COLUMNS = ("method_label", "model", "dataset", "train_size", "subset", "seed", "train_key", "stage", "error")


@dataclass(frozen=True)
class ResultSet:
    """What one suite's report (or regression check) reads: runs, their scores, the gaps."""

    suite: str
    runs: pd.DataFrame  # one row per run in scope (store.RUN_COLUMNS + spec extras)
    scores: pd.DataFrame  # one row per (run, split, group, metric) of done runs, with run columns
    missing: pd.DataFrame  # MISSING_COLUMNS: expected but not (fully) in the cache
    failed: pd.DataFrame  # FAILED_COLUMNS
    unlisted: int = 0  # stored runs under this suite name that its current expansion does not name
    notes: tuple[str, ...] = field(default_factory=tuple)
    # the suite's `compare:` entry (bench.report.paired); None/() for a report of stored results only
    compare_reference: str | None = None
    compare_metrics: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- spec extras


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def setting_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without what a table row aggregates over (seed, subset) or what only names it."""
    out = {k: v for k, v in spec.items() if k not in _NOT_SETTING}
    out["data"] = {k: v for k, v in dict(spec.get("data", {})).items() if k != "subset"}
    if isinstance(out.get("train"), Mapping):
        # As in the run key: fields added later count only when set away from their default, so a
        # spec written before they existed is the same setting as one that holds the default.
        out["train"] = {k: v for k, v in out["train"].items()
                        if k not in RESULT_NEUTRAL_TRAIN and not (k in KEYED_WHEN_SET and v == KEYED_WHEN_SET[k])}
    return out


def scenario_of(dataset: str, data: Mapping[str, Any]) -> str | None:
    """The paper's extrapolation split this run's filters implement, a description of custom
    filters, or None for the whole split."""
    train_f = {k: list(v) for k, v in dict(data.get("train_filter") or {}).items()}
    eval_f = {k: list(v) for k, v in dict(data.get("eval_filter") or {}).items()}
    if not train_f and not eval_f:
        return None
    try:
        from bench.splits import EXTRAPOLATION_PRESETS
    except ImportError:  # pragma: no cover - splits is part of the package
        EXTRAPOLATION_PRESETS = {}
    for name, preset in EXTRAPOLATION_PRESETS.get(dataset, {}).items():
        p_train = {k: list(v) for k, v in preset.get("train", {}).items()}
        p_eval = {k: list(v) for k, v in preset.get("eval", {}).items()}
        if p_train == train_f and p_eval == eval_f:
            return name
    parts = [f"train {k}={'/'.join(v)}" for k, v in sorted(train_f.items())]
    parts += [f"eval {k}={'/'.join(v)}" for k, v in sorted(eval_f.items())]
    return "; ".join(parts)


def spec_extras(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Columns a report needs beyond store.load_runs: setting id, scenario, prefix length, init."""
    config = dict(spec.get("method_config") or {})
    data = dict(spec.get("data") or {})
    return {
        "setting": digest(setting_of(spec))[:8],
        "setting_json": setting_of(spec),
        "scenario": scenario_of(str(data.get("name")), data),
        "length": config.get("length"),
        "init": config.get("init"),
        "score_key": spec.get("score_key"),
        "max_eval_sources": data.get("max_eval_sources"),
        "tolerances": dict(spec.get("tolerances") or {}),
        "metric_versions": dict(spec.get("metric_versions") or {}),
        "spec_train_size": data.get("train_size"),
    }


def _with_extras(runs: pd.DataFrame) -> pd.DataFrame:
    extras = []
    for path, status in zip(runs["path"], runs["status"]):
        if status == "damaged":  # its files do not read: no spec to take columns from
            extras.append({**spec_extras({}), "provenance": {}})
            continue
        spec = store.read_json(Path(path) / "spec.json")["spec"]
        meta = store.read_meta(Path(path)) or {}
        extras.append({**spec_extras(spec), "provenance": meta.get("provenance") or {}})
    cols = list(EXTRA_COLUMNS)
    ext = pd.DataFrame(extras, columns=cols + ["spec_train_size"], index=runs.index)
    out = runs.copy()
    for c in cols:
        out[c] = ext[c]
    # load_runs turns a missing train size into NaN; keep None (= the full split) explicitly.
    out["train_size"] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                         for v in ext["spec_train_size"]]
    return out


# ----------------------------------------------------------------------------- scores


def _run_scores(folder: Path, score_key: str | None) -> pd.DataFrame:
    """The run's metric rows for ``score_key``; without one, the newest row per metric (rows
    are appended in scoring order, so the last one is the newest)."""
    m = store.read_metrics(folder)
    if m.empty:
        return m
    if score_key is not None and "score_key" in m.columns:
        hit = m[m["score_key"] == score_key]
        if not hit.empty:
            return hit
    keys = [c for c in ("split", "group", "metric") if c in m.columns]
    return m.drop_duplicates(keys, keep="last")


def _scores_for(runs: pd.DataFrame, *, strict_score_key: bool) -> tuple[pd.DataFrame, list[str]]:
    """Metric rows of the done runs joined with the run columns; also the keys of done runs
    that have no rows for their score key (when strict)."""
    frames, unscored = [], []
    for run in runs[runs["status"] == "done"].itertuples(index=False):
        folder = Path(run.path)
        if strict_score_key:
            m = store.read_metrics(folder)
            m = m[m["score_key"] == run.score_key] if not m.empty and "score_key" in m.columns else m.iloc[0:0]
        else:
            m = _run_scores(folder, run.score_key)
        if m.empty:
            unscored.append(run.train_key)
            continue
        m = m.copy()
        for col in SCORE_COLUMNS:
            if col not in m.columns:
                m[col] = None
        m = m[list(SCORE_COLUMNS)]
        m.insert(0, "train_key", run.train_key)
        frames.append(m)
    run_cols = [c for c in runs.columns if c not in ("setting_json", "provenance")]
    if not frames:
        empty = pd.DataFrame(columns=["train_key", *SCORE_COLUMNS])
        return empty.merge(runs[run_cols], on="train_key", how="left"), unscored
    scores = pd.concat(frames, ignore_index=True)
    scores["value"] = scores["value"].astype(float)
    return scores.merge(runs[run_cols], on="train_key", how="left"), unscored


# ----------------------------------------------------------------------------- labels


def _row_labels(runs: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """The label shown for each run's row: the method label, plus the setting id where one
    label holds several settings for the same data (they must not be averaged)."""
    labels = runs["method_label"].astype(str).copy()
    notes: list[str] = []
    keys = ["model", "method_label", "dataset", "train_size", "scenario"]
    for idx in group_indices(runs, keys):
        sub = runs.loc[idx]
        if sub["setting"].nunique() <= 1:
            continue
        settings = sub.drop_duplicates("setting")
        flat = [_flatten(s) for s in settings["setting_json"]]
        differ = sorted({k for f in flat for k in set(f) | set(flat[0]) if f.get(k) != flat[0].get(k)})
        for i in idx:
            labels.loc[i] = f"{runs.at[i, 'method_label']} ⟨{runs.at[i, 'setting']}⟩"
        first = sub.iloc[0]
        size = "full" if first["train_size"] is None else first["train_size"]
        notes.append(
            f"`{first['method_label']}` on {first['dataset']} (train size {size}) has "
            f"{len(settings)} settings ({', '.join(differ[:6])} differ): shown as separate rows, "
            "not comparable with each other"
        )
    return labels, notes


# ----------------------------------------------------------------------------- collect


def _frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(columns))


def _failed_rows(runs: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {c: r.get(c) for c in FAILED_COLUMNS}
        for r in runs[runs["status"] == "failed"].to_dict("records")
    ]


def _finish(name: str, runs: pd.DataFrame, missing: list[dict[str, Any]], *, strict: bool,
            unlisted: int = 0) -> ResultSet:
    if not runs.empty:
        labels, notes = _row_labels(runs)
        runs = runs.assign(row_label=labels)
    else:
        runs = runs.assign(row_label=pd.Series(dtype=str))
        notes = []
    scores, unscored = _scores_for(runs, strict_score_key=strict)
    for key in unscored:
        r = runs[runs["train_key"] == key].iloc[0]
        reason = ("done, but not scored with this suite's metric versions and decode settings "
                  "(`bench run` rescores it)" if strict else "done, but no metrics stored")
        missing.append({**{c: r.get(c) for c in MISSING_COLUMNS if c != "reason"}, "reason": reason})
    return ResultSet(
        suite=name,
        runs=runs.reset_index(drop=True),
        scores=scores,
        missing=_frame(missing, MISSING_COLUMNS),
        failed=_frame(_failed_rows(runs), FAILED_COLUMNS),
        unlisted=unlisted,
        notes=tuple(notes),
    )


def collect_suite(*, suite: Path, results: Path) -> ResultSet:
    """The runs ``suite`` expands to, as far as ``results`` holds them (never trains)."""
    from bench.suite import expand, load_suite

    s = load_suite(suite)
    specs = store.adopt_stored_keys(expand(s), results)
    stored = load_runs_with_extras(results)
    known = set(stored["train_key"])
    wanted = [sp.train_key for sp in specs]
    missing: list[dict[str, Any]] = []
    for sp in specs:
        if sp.train_key not in known:
            missing.append({
                "method_label": sp.method_label, "model": sp.model, "dataset": sp.data.name,
                "train_size": sp.data.train_size, "subset": sp.data.subset, "seed": sp.seed,
                "train_key": sp.train_key, "reason": "not in the results cache (not run yet)",
            })
    by_key = {sp.train_key: sp for sp in specs}
    for r in stored[stored["status"] == "damaged"].to_dict("records"):
        sp = by_key.get(r["train_key"])
        if sp is not None:
            missing.append({
                "method_label": sp.method_label, "model": sp.model, "dataset": sp.data.name,
                "train_size": sp.data.train_size, "subset": sp.data.subset, "seed": sp.seed,
                "train_key": sp.train_key, "reason": f"damaged run folder ({r['error']}); `bench run` redoes it",
            })
    stored = stored[stored["status"] != "damaged"]
    runs = stored[stored["train_key"].isin(set(wanted))].copy()
    # The suite's current score keys decide which metric rows count (not spec.json's, which
    # was written when the run folder was created).
    score_keys = {sp.train_key: sp.score_key for sp in specs}
    runs["score_key"] = runs["train_key"].map(score_keys)
    order = {k: i for i, k in enumerate(wanted)}
    runs = runs.sort_values("train_key", key=lambda s: s.map(order), kind="stable")
    for r in runs[~runs["status"].isin(["done", "failed"])].to_dict("records"):
        missing.append({**{c: r.get(c) for c in MISSING_COLUMNS if c != "reason"},
                        "reason": f"status {r['status']} (stage {r.get('stage')})"})
    unlisted = int(((stored["suite"] == s.name) & ~stored["train_key"].isin(set(wanted))).sum())
    rs = _finish(s.name, runs, missing, strict=True, unlisted=unlisted)
    return dataclasses.replace(rs, compare_reference=s.compare_reference, compare_metrics=s.compare_metrics)


# Without a suite to give the row order: the paper's (fine-tuning, partial fine-tuning,
# adapters, prefix and its ablations), then anything else alphabetically.
METHOD_ORDER = ("full", "top_k", "adapter", "lora", "prefix", "infix", "embedding_only")


def _paper_order(runs: pd.DataFrame) -> pd.DataFrame:
    rank = runs["method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    size = pd.to_numeric(runs["train_size"], errors="coerce").fillna(float("inf"))
    order = runs.assign(_rank=rank, _size=size, _len=pd.to_numeric(runs["length"], errors="coerce").fillna(-1))
    order = order.sort_values(["model", "dataset", "_rank", "method", "_len", "method_label", "_size", "subset",
                               "seed", "train_key"], kind="stable")
    return order.drop(columns=["_rank", "_size", "_len"])


def collect_all(*, results: Path) -> list[ResultSet]:
    """Every stored run, one ResultSet per suite name found in the cache."""
    stored = load_runs_with_extras(results)
    out = []
    for name in sorted(stored["suite"].dropna().unique()):
        runs = _paper_order(stored[stored["suite"] == name].copy())
        missing = [
            {**{c: r.get(c) for c in MISSING_COLUMNS if c != "reason"},
             "reason": f"status {r['status']} (stage {r.get('stage')})"}
            for r in runs[~runs["status"].isin(["done", "failed"])].to_dict("records")
        ]
        out.append(_finish(str(name), runs, missing, strict=False))
    return out


def load_runs_with_extras(results: Path) -> pd.DataFrame:
    """store.load_runs plus the spec columns reports need (setting, scenario, length, init...)."""
    runs = store.load_runs(results)
    if runs.empty:
        cols = list(runs.columns) + list(EXTRA_COLUMNS)
        return pd.DataFrame(columns=cols)
    for r in runs[runs["status"] == "damaged"].to_dict("records"):
        print(f"bench: warning: damaged run folder skipped: {r['error']} (`bench run` redoes it)", file=sys.stderr)
    return _with_extras(runs)


# One tidy row per run x split x group x metric (`bench ls --format csv|json`): what the run
# was (label, method, data, size, subset, seed, model, keys), then the score and its interval.
TIDY_COLUMNS = (
    "suite", "label", "method", "dataset", "train_size", "subset", "seed", "model", "train_key", "score_key",
    "split", "group", "metric", "value", "ci_low", "ci_high", "metric_id", "metric_version", "signature",
)


def tidy_scores(*, results: Path, suite: str | None = None) -> pd.DataFrame:
    """Every stored metric value of the done runs in ``results`` (of suite name ``suite``), long
    form with its run's columns (``TIDY_COLUMNS``); values as stored (BLEU in [0, 1], NIST raw)."""
    frames = [rs.scores for rs in collect_all(results=results) if suite is None or rs.suite == suite]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(TIDY_COLUMNS))
    scores = pd.concat(frames, ignore_index=True).rename(columns={"method_label": "label"})
    tidy = scores[list(TIDY_COLUMNS)].copy()
    tidy["train_size"] = tidy["train_size"].astype("Int64")  # None: the full split
    return tidy.reset_index(drop=True)


# ----------------------------------------------------------------------------- aggregation


def aggregate(scores: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per group of ``by`` (which should include ``metric``): mean, std (n-1), n,
    the runs' mean parameter counts, and whether the runs may be averaged at all (same metric
    version and signature)."""
    rows = []
    if scores.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "n", "comparable", "why", "metric_id", "signature",
                                     "higher_is_better", "n_trained", "n_stored", "base_total"])
    for idx in group_indices(scores, by):
        g = scores.loc[idx]
        first = g.iloc[0]
        versions = g[["metric_version", "signature"]].astype(str).drop_duplicates()
        comparable = len(versions) == 1
        vals = g["value"].astype(float)
        rows.append({
            **{c: first[c] for c in by},
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
            "n": len(vals),
            "comparable": comparable,
            "why": "" if comparable else "metric versions " + ", ".join(sorted(set(g["metric_version"].astype(str)))),
            "metric_id": first["metric_id"],
            "signature": first["signature"],
            "higher_is_better": first["higher_is_better"],
            "n_trained": _mean_or_none(g["n_trained"]),
            "n_stored": _mean_or_none(g["n_stored"]),
            "base_total": _mean_or_none(g["base_total"]),
            "values": list(vals),
        })
    return pd.DataFrame(rows)


def _key(value: Any) -> Any:
    """A hashable, NaN-free stand-in so groupby keeps None (= the full split) as a group."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "\x00none"
    return value


def group_indices(frame: pd.DataFrame, keys: Sequence[str]) -> list[pd.Index]:
    """Row indices of each group of ``keys`` in first-appearance order; missing values (a full
    split's train size, no scenario) form their own group instead of being dropped."""
    if frame.empty:
        return []
    keyed = pd.DataFrame({c: frame[c].map(_key).astype(object) for c in keys}, index=frame.index)
    return [g.index for _, g in keyed.groupby(list(keys), sort=False, dropna=False)]


def _mean_or_none(series: pd.Series) -> float | None:
    vals = pd.to_numeric(series, errors="coerce").dropna()
    return float(vals.mean()) if len(vals) else None
