"""`bench regress`: compare stored metrics with a committed baseline, run by run (the CI gate).

A baseline is a parquet file (schema-versioned, like every stored artifact) with one row per
(run, split, score group, metric). A current row is matched to a baseline row by run key;
when keys differ (a version bump, a changed setting) by the run's identity: suite, model,
method label, dataset, train size, subset, seed. Outcomes per metric:

- ``same`` / ``better`` / ``worse``: compared; ``worse`` when the value moved the wrong way by
  more than the tolerance (the suite's ``tolerances`` by metric column or metric id, else the
  default), widened to 2 x the seed standard deviation where the baseline has several seeds;
- ``not comparable``: the method, dataset or metric version (or the metric signature)
  differs, so the numbers measure different things;
- ``missing``: in the baseline but not in the results; ``failed``: the run failed;
- ``new``: in the results but not in the baseline (informational).

The check fails (exit status 1) on worse, missing or failed, and when nothing was compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench import store
from bench.errors import BenchError

# Exact up to float round-off: CPU runs of the smoke suite are bitwise deterministic, so any
# other movement is a change of behaviour. Suites with noisy metrics set `tolerances`.
DEFAULT_TOLERANCE = 1e-9

BASELINE_COLUMNS = (
    "suite", "train_key", "model", "method", "method_label", "method_version", "dataset", "dataset_version",
    "train_size", "subset", "seed", "split", "group", "metric", "metric_id", "metric_version", "signature",
    "value", "higher_is_better",
)
RUN_IDENTITY = ("suite", "model", "method_label", "dataset", "train_size", "subset", "seed")
CELL = ("split", "group", "metric")
FAILING = ("worse", "missing", "failed")
OUTCOMES = ("worse", "missing", "failed", "not comparable", "better", "same", "new")

RESULT_COLUMNS = (
    "outcome", "suite", "method_label", "model", "dataset", "train_size", "subset", "seed", "split", "group",
    "metric", "baseline", "current", "delta", "tolerance", "note",
)


@dataclass(frozen=True)
class RegressResult:
    rows: pd.DataFrame  # RESULT_COLUMNS, one row per compared / missing / failed / new metric
    compared: int
    passed: bool

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def counts(self) -> dict[str, int]:
        return {o: int((self.rows["outcome"] == o).sum()) for o in OUTCOMES}


# ----------------------------------------------------------------------------- current results


def _none(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _norm_size(value: Any) -> int | None:
    value = _none(value)
    return None if value is None else int(value)


def current_results(*, results: Path, suite: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                                  Mapping[str, Mapping[str, float]] | None, list[str]]:
    """(scores in baseline columns, runs in scope, missing runs, the suite's tolerances or None,
    the suite names in scope)."""
    from bench.report.data import collect_all, collect_suite

    if suite is not None:
        from bench.suite import load_suite

        tolerances: Mapping[str, Mapping[str, float]] | None = None
        s = load_suite(suite)
        sets = [collect_suite(suite=suite, results=results)]
        tolerances = {s.name: dict(s.tolerances)}
    else:
        if not Path(results).exists():
            raise BenchError(f"results directory not found: {results}")
        sets = collect_all(results=results)
        tolerances = None
    scores = pd.concat([rs.scores for rs in sets], ignore_index=True) if sets else pd.DataFrame()
    runs = pd.concat([rs.runs for rs in sets], ignore_index=True) if sets else pd.DataFrame()
    missing = pd.concat([rs.missing.assign(suite=rs.suite) for rs in sets], ignore_index=True) if sets else pd.DataFrame()
    if scores.empty:
        scores = pd.DataFrame(columns=[*BASELINE_COLUMNS, "tolerances"])
    else:
        scores = scores[[*BASELINE_COLUMNS, "tolerances"]].copy()
        scores["train_size"] = scores["train_size"].map(_norm_size).astype(object)
    return scores, runs, missing, tolerances, [rs.suite for rs in sets]


# ----------------------------------------------------------------------------- baseline file


def read_baseline(path: Path) -> pd.DataFrame:
    if not Path(path).exists():
        raise BenchError(f"baseline not found: {path} (create it on purpose with `bench regress --update`)")
    df = store.read_parquet(Path(path))
    lacking = [c for c in BASELINE_COLUMNS if c not in df.columns]
    if lacking:
        raise BenchError(f"{path}: not a baseline (columns {', '.join(lacking)} missing)")
    df = df[list(BASELINE_COLUMNS)].copy()
    df["train_size"] = df["train_size"].map(_norm_size).astype(object)
    return df


def write_baseline(path: Path, scores: pd.DataFrame, *, replace_suites: Sequence[str]) -> int:
    """Write ``scores`` as the baseline, keeping other suites' rows of an existing file; atomic
    and schema-versioned (bench.store). Returns the number of rows written for these suites."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = scores[list(BASELINE_COLUMNS)].copy()
    new["train_size"] = new["train_size"].map(_norm_size).astype("Int64")
    if path.exists():
        old = read_baseline(path)
        old = old[~old["suite"].isin(set(replace_suites))]
        old["train_size"] = old["train_size"].astype("Int64")
        new = pd.concat([old, new], ignore_index=True) if not old.empty else new
    new = new.sort_values(["suite", "method_label", "dataset", "train_size", "subset", "seed", "split", "group",
                           "metric"], kind="stable", na_position="first").reset_index(drop=True)
    store.write_parquet(path, new)
    return int(new["suite"].isin(set(replace_suites)).sum())


# ----------------------------------------------------------------------------- comparison


def _identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(_norm_size(row[k]) if k == "train_size" else row[k] for k in RUN_IDENTITY)


def _tolerance(metric: str, metric_id: str, tolerances: Mapping[str, float], default: float) -> float:
    if metric in tolerances:
        return float(tolerances[metric])
    if metric_id in tolerances:
        return float(tolerances[metric_id])
    return default


def _seed_std(frame: pd.DataFrame) -> dict[tuple[Any, ...], float]:
    """Standard deviation over seeds of each (run identity without seed, cell)."""
    out: dict[tuple[Any, ...], float] = {}
    if frame.empty:
        return out
    keys = [k for k in RUN_IDENTITY if k != "seed"] + list(CELL)
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in frame.to_dict("records"):
        key = tuple(_norm_size(r[k]) if k == "train_size" else r[k] for k in keys)
        groups.setdefault(key, []).append(float(r["value"]))
    for key, vals in groups.items():
        if len(vals) > 1:
            mean = sum(vals) / len(vals)
            out[key] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return out


def _std_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    keys = [k for k in RUN_IDENTITY if k != "seed"] + list(CELL)
    return tuple(_norm_size(row[k]) if k == "train_size" else row[k] for k in keys)


def _versions_differ(base: Mapping[str, Any], cur: Mapping[str, Any]) -> str:
    diffs = []
    for col in ("method_version", "dataset_version", "metric_version"):
        if str(base[col]) != str(cur[col]):
            diffs.append(f"{col.replace('_', ' ')} {base[col]} -> {cur[col]}")
    if not diffs and str(base["signature"]) != str(cur["signature"]):
        diffs.append("metric signature changed")
    return "; ".join(diffs)


def compare(
    baseline: pd.DataFrame,
    current: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    missing_runs: pd.DataFrame | None = None,
    tolerances: Mapping[str, Mapping[str, float]] | None = None,
    default_tolerance: float = DEFAULT_TOLERANCE,
    key_aliases: Mapping[str, str] | None = None,
) -> RegressResult:
    """Outcome per baseline metric (and per new current metric); see the module docstring.
    ``tolerances`` maps suite name -> {metric: tolerance}; None = each run's spec tolerances.
    ``key_aliases`` maps a run's pre-value key (``RunSpec.legacy_variant``) to its key now: a
    baseline row under the old key matches by key, not only by identity."""
    aliases = dict(key_aliases or {})
    records = current.to_dict("records")  # one dict per row: its id() marks it as matched
    cur_by_key = {(r["train_key"], *(r[c] for c in CELL)): r for r in records}
    cur_by_id: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        cur_by_id.setdefault((*_identity(r), *(r[c] for c in CELL)), []).append(r)
    run_by_key = {r["train_key"]: r for r in runs.to_dict("records")} if not runs.empty else {}
    run_by_id = {_identity(r): r for r in runs.to_dict("records")} if not runs.empty else {}
    missing_ids = {}
    if missing_runs is not None and not missing_runs.empty:
        missing_ids = {_identity({**r, "suite": r.get("suite")}): r for r in missing_runs.to_dict("records")}
    base_std = _seed_std(baseline)

    rows: list[dict[str, Any]] = []
    used: set[int] = set()
    failed_seen: set[str] = set()

    def out(outcome: str, ref: Mapping[str, Any], **kw: Any) -> None:
        rows.append({
            "outcome": outcome, **{k: ref.get(k) for k in ("suite", "method_label", "model", "dataset", "subset",
                                                          "seed", "split", "group", "metric")},
            "train_size": _norm_size(ref.get("train_size")),
            "baseline": kw.get("baseline"), "current": kw.get("current"), "delta": kw.get("delta"),
            "tolerance": kw.get("tolerance"), "note": kw.get("note", ""),
        })

    for b in baseline.to_dict("records"):
        cell = tuple(b[c] for c in CELL)
        c = cur_by_key.get((b["train_key"], *cell)) or cur_by_key.get((aliases.get(b["train_key"]), *cell))
        note = ""
        if c is None:
            candidates = cur_by_id.get((*_identity(b), *cell), [])
            if len(candidates) == 1:
                c = candidates[0]
                note = "run key changed"
        if c is not None:
            used.add(id(c))
            why = _versions_differ(b, c)
            if why:
                out("not comparable", b, baseline=b["value"], current=c["value"], note=why)
                continue
            suite_tol = (tolerances or {}).get(str(c["suite"])) if tolerances is not None else c.get("tolerances")
            tol = _tolerance(str(b["metric"]), str(b["metric_id"]), suite_tol or {}, default_tolerance)
            # The baseline's seeds set the noise level: a current seed that regressed must not
            # widen its own tolerance.
            std = base_std.get(_std_key(b), 0.0)
            if 2 * std > tol:
                tol = 2 * std
                note = (note + "; " if note else "") + "tolerance = 2 x seed std"
            delta = float(c["value"]) - float(b["value"])
            hib = b["higher_is_better"]
            hib = True if _none(hib) is None else bool(hib)
            gain = delta if hib else -delta
            outcome = "worse" if gain < -tol else "better" if gain > tol else "same"
            if not hib:
                note = (note + "; " if note else "") + "lower is better"
            out(outcome, b, baseline=float(b["value"]), current=float(c["value"]), delta=delta, tolerance=tol, note=note)
            continue
        run = (run_by_key.get(b["train_key"]) or run_by_key.get(aliases.get(b["train_key"]))
               or run_by_id.get(_identity(b)))
        if run is not None and run.get("status") == "failed":
            failed_seen.add(run["train_key"])
            out("failed", b, baseline=b["value"], note=f"{run.get('stage')}: {run.get('error')}")
        elif run is not None and run.get("status") != "done":
            out("missing", b, baseline=b["value"], note=f"run status {run.get('status')}")
        elif run is not None:
            out("missing", b, baseline=b["value"], note="run has no value for this metric")
        else:
            m = missing_ids.get(_identity(b))
            out("missing", b, baseline=b["value"], note=str(m["reason"]) if m else "run not in the results")
    for c in records:
        if id(c) not in used:
            out("new", c, current=float(c["value"]), note="not in the baseline")
    for r in runs.to_dict("records") if not runs.empty else []:
        if r.get("status") == "failed" and r["train_key"] not in failed_seen:
            out("failed", {**r, "split": "-", "group": "-", "metric": "-"}, note=f"{r.get('stage')}: {r.get('error')}")
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    compared = int(frame["outcome"].isin(["same", "better", "worse"]).sum())
    passed = compared > 0 and not frame["outcome"].isin(FAILING).any()
    return RegressResult(frame, compared, passed)


# ----------------------------------------------------------------------------- markdown


def _fmt(v: Any, signed: bool = False) -> str:
    v = _none(v)
    if v is None:
        return "-"
    return f"{float(v):+.4g}" if signed else f"{float(v):.6g}"


def to_markdown(result: RegressResult, *, baseline: Path) -> str:
    """A pull-request comment: verdict, counts, and the table of deltas (failures first)."""
    counts = result.counts()
    verdict = "PASS" if result.passed else "FAIL"
    why = ""
    if result.compared == 0:
        why = " (no metric was compared)"
    parts = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    lines = [f"**bench regress: {verdict}**{why} against `{baseline}`: {result.compared} metrics compared; {parts or 'nothing'}.",
             ""]
    if result.rows.empty:
        return "\n".join(lines)
    order = {o: i for i, o in enumerate(OUTCOMES)}
    view = result.rows.assign(_o=result.rows["outcome"].map(order)).sort_values("_o", kind="stable")
    lines += ["| outcome | method | data | seed | metric | baseline | current | Δ | tolerance | note |",
              "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for r in view.to_dict("records"):
        size = "full" if r["train_size"] is None else f"{r['train_size']} ex., subset {r['subset']}"
        group = "" if r["group"] in ("all", "-", None) else f" {r['group']}"
        data = f"{r['dataset']} {r['split']}{group} ({size})"
        mark = "**" if r["outcome"] in FAILING else ""
        lines.append(f"| {mark}{r['outcome']}{mark} | {r['method_label']} | {data} | {r['seed']} | {r['metric']} | "
                     f"{_fmt(r['baseline'])} | {_fmt(r['current'])} | {_fmt(r['delta'], True)} | "
                     f"{_fmt(r['tolerance'])} | {str(r['note']).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- entry point


def regress(
    *, baseline: Path, results: Path = Path("results"), suite: Path | None = None, update: bool = False,
    default_tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[RegressResult | None, str]:
    """Compare (or, with ``update``, rewrite the baseline from) the results; returns the
    comparison (None when there was no baseline to compare with) and its markdown."""
    scores, runs, missing, tolerances, suites = current_results(results=results, suite=suite)
    if update:
        failed = runs[runs["status"] == "failed"] if not runs.empty else runs
        if not failed.empty:
            first = failed.iloc[0]
            raise BenchError(f"refusing to --update {baseline}: {len(failed)} run(s) failed "
                             f"(first: {first['method_label']} seed {first['seed']}: {first['error']})")
        if not missing.empty:
            first = missing.iloc[0]
            raise BenchError(f"refusing to --update {baseline}: {len(missing)} run(s) missing "
                             f"(first: {first['method_label']} seed {first['seed']}: {first['reason']})")
        if scores.empty:
            raise BenchError(f"refusing to --update {baseline}: no metric values in {results}")
        previous = None
        if Path(baseline).exists():
            previous = compare(read_baseline(baseline), scores, runs, missing_runs=missing, tolerances=tolerances,
                               default_tolerance=default_tolerance)
        n = write_baseline(baseline, scores, replace_suites=suites)
        text = f"bench regress: wrote {n} metric values of {', '.join(suites)} to {baseline}\n"
        if previous is not None:
            text += "\nChanges against the previous baseline:\n\n" + to_markdown(previous, baseline=baseline)
        return previous, text
    base = read_baseline(baseline)
    aliases: dict[str, str] = {}
    if suite is not None:
        base = base[base["suite"].isin(set(suites))]
        from bench.suite import expand, load_suite

        aliases = {old.train_key: sp.train_key for sp in expand(load_suite(suite)) if (old := sp.legacy_variant())}
    result = compare(base, scores, runs, missing_runs=missing, tolerances=tolerances,
                     default_tolerance=default_tolerance, key_aliases=aliases)
    return result, to_markdown(result, baseline=baseline)
