"""Figures 4 and 5 of the paper as report sections: the panel, our numbers, a verdict.

- Figure 4 (prefix length): prefix rows labelled ``prefix_<length>`` (as Table 5 names them)
  trained on the same examples (dataset, training size, subset, seed). Paper: on table-to-text
  the score rises with the length up to about 10, then dips.
- Figure 5 (initialization): prefix runs at one low-data training size whose ``init`` differs:
  random against the activations of real words. A random-init run counts only where it has the
  length of the "table-to-text:" run it is compared with (the word's token count; equal stored
  parameter counts), so the initialization is the only difference. Paper: real words beat random in low data.

Verdicts use the paired bootstrap over test sources (bench.report.claims.compare).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from bench.report import reference as ref
from bench.report.claim_table2 import size_text
from bench.report.claims import (
    ClaimReport,
    Comparison,
    _pairs,
    _runs_by_key,
    _scale,
    compare,
    fmt_delta,
    mean_std_ci,
    missing_of,
)
from bench.report.figures import (
    PAPER_FIG4,
    PAPER_FIG5,
    ReportFigure,
    _without_key,
    init_figure,
    length_figure,
)
from bench.report.tables import TableWriter, dataset_name, md_table, primary_group, primary_metric

LENGTH_LABEL = re.compile(r"^prefix_(\d+)$")
PAPER_LENGTHS = (1, 5, 10, 20, 40)
ABOUT_TEN = (5, 10, 20)  # "rises to about 10": the peak may sit one grid step either side
CLAIM_FIG4 = ("Figure 4: on table-to-text, performance rises with the prefix length up to about 10, "
              "then dips slightly (longer prefixes overfit).")
CLAIM_FIG5 = ("Figure 5: in low-data settings, initializing the prefix with the activations of real words "
              "(\"table-to-text:\", even task-irrelevant ones) beats random initialization, which is worse "
              "and has higher variance.")
PAPER_WORD = "table-to-text:"


def _primary_block(block: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    metric, group = primary_metric(block), primary_group(block)
    return block[(block["metric"] == metric) & (block["group"] == group)], metric, group


def _diff(sel: pd.DataFrame, by_key: dict, a: pd.Series, b: pd.Series, metric: str) -> Comparison | None:
    """B - A (rows selected by the boolean masks ``a`` / ``b`` of ``sel``), paired bootstrap."""
    pairs = _pairs(sel[a], sel[b], by_key)
    if not pairs:
        return None
    return compare(pairs, split=str(sel["split"].iloc[0]), column=metric, metric_id=str(sel["metric_id"].iloc[0]),
                   group_filter={}, scale=_scale(sel))



# ----------------------------------------------------------------------------- Figure 4


def claim_fig4(scores: pd.DataFrame, runs: pd.DataFrame, *, table: TableWriter = md_table) -> ClaimReport:
    part = scores[(scores["method"] == "prefix") & scores["row_label"].astype(str).str.match(LENGTH_LABEL)
                  & scores["scenario"].isna()]
    lines: list[str] = []
    figures: list[ReportFigure] = []
    if part.empty:
        return ClaimReport(lines, figures)
    part = part.assign(_len=part["row_label"].map(lambda s: int(LENGTH_LABEL.match(str(s)).group(1))),  # type: ignore[union-attr]
                       train_size=part["train_size"].astype(object).where(part["train_size"].notna(), None))
    keys = ["dataset", "split", "train_size", "subset", "seed"]
    for (dataset, split, size, subset, seed), block in part.groupby(keys, sort=False, dropna=False):
        if block["_len"].nunique() < 3:
            continue
        sel, metric, _ = _primary_block(block)
        scale = _scale(sel)
        by_key = _runs_by_key(runs[runs["train_key"].isin(set(sel["train_key"]))])
        points = sel.groupby("_len")["value"].mean().mul(scale).sort_index()
        best = int(points.idxmax())
        lengths = list(points.index)
        lines += [(f"### Figure 4 — prefix length ({dataset_name(dataset)} {split}, {size_text(size)}, subset {subset}, "
                  f"seed {seed})"), "", f"Paper: {CLAIM_FIG4}", ""]
        rows = [[str(n), f"{points[n]:.2f}",
                 "" if n == best else fmt_delta(_diff(sel, by_key, sel["_len"] == n, sel["_len"] == best, metric))]
                for n in lengths]
        lines += table(["length", ref.display_name(metric), f"Δ (length {best} − this), 95% CI, p"], rows)
        short, long = min(lengths), max(lengths)
        c_short = _diff(sel, by_key, sel["_len"] == short, sel["_len"] == best, metric) if best != short else None
        c_long = _diff(sel, by_key, sel["_len"] == long, sel["_len"] == best, metric) if best != long else None
        c_ten = _diff(sel, by_key, sel["_len"] == 10, sel["_len"] == best, metric) \
            if best != 10 and 10 in lengths else None
        missing = [n for n in PAPER_LENGTHS if n not in lengths]
        lines += ["", f"**Verdict: {verdict_fig4(best, lengths, c_short, c_long, c_ten, missing)}**", "",
                  (f"Rule: reproduced when the best length is {', '.join(map(str, ABOUT_TEN))} (\"about 10\") and "
                   "both the shortest and the longest length score significantly below it (paired 95% interval "
                   "above 0); not reproduced when the best is the shortest or longest length and significantly "
                   "ahead of length 10; inconclusive otherwise or while any of the paper's lengths is missing."), ""]
        if sel.groupby("_len")["train_key"].nunique().max() == 1:
            # the bootstrap resamples test sources of fixed predictions: training noise is not in it
            lines += [("One training run per length: the intervals cover the sampling of the test sources, not the "
                       "spread between training runs (other subsets or seeds), which this grid does not measure."), ""]
        series = pd.DataFrame([{"label": "prefix", "length": n, "values": list(sel[sel["_len"] == n]["value"] * scale)}
                               for n in lengths])
        fig = length_figure(series, metric_label=ref.display_name(metric),
                            title=f"{dataset_name(dataset)} {split}: {ref.display_name(metric)} vs prefix length")
        figures.append(ReportFigure(f"claim_fig4_{dataset}_{split}", fig,
                                    f"{PAPER_FIG4}. Here: {size_text(size)}, subset {subset}, seed {seed}, "
                                    f"lengths {', '.join(map(str, lengths))}; one run per point."))
    return ClaimReport(lines, figures)


def verdict_fig4(best: int, lengths: list[int], c_short: Comparison | None, c_long: Comparison | None,
                 c_ten: Comparison | None, missing: list[int]) -> str:
    what = f"best length {best} of {', '.join(map(str, lengths))}"
    if best in ABOUT_TEN and best not in (min(lengths), max(lengths)):
        dips = [c for c in (c_short, c_long) if c is not None]
        if len(dips) == 2 and all(c.ci[0] > 0 for c in dips) and not missing:
            return (f"reproduced — {what}; it beats length {min(lengths)} by {c_short.delta:+.2f} "  # type: ignore[union-attr]
                    f"and length {max(lengths)} by {c_long.delta:+.2f}")  # type: ignore[union-attr]
    elif best in (min(lengths), max(lengths)) and c_ten is not None and c_ten.ci[0] > 0 and not missing:
        return f"not reproduced — {what}, ahead of length 10 by {c_ten.delta:+.2f} [{c_ten.ci[0]:+.2f}, {c_ten.ci[1]:+.2f}]"
    tail = f"; length{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} not run yet" if missing else ""
    return f"inconclusive at this scale — {what}, the differences do not settle the shape{tail}"


# ----------------------------------------------------------------------------- Figure 5


def claim_fig5(scores: pd.DataFrame, runs: pd.DataFrame, missing: pd.DataFrame | None = None, *,
               table: TableWriter = md_table) -> ClaimReport:
    """Figure 5 per (dataset, split, size): real-word initializations against random at the word's
    length; ``missing``: the suite's runs not done yet (a comparison with runs still to come is at
    most inconclusive)."""
    part = scores[(scores["method"] == "prefix") & scores["init"].notna() & scores["train_size"].notna()
                  & scores["scenario"].isna()]
    lines: list[str] = []
    figures: list[ReportFigure] = []
    if part.empty:
        return ClaimReport(lines, figures)
    for (dataset, split, size), block in part.groupby(["dataset", "split", "train_size"], sort=False):
        word = block[block["init"] == PAPER_WORD]
        if word.empty:
            continue
        # random init compared only at the word's length (equal stored counts): the initialization
        # is then the only change (a word's prefix length is its token count, not in the config)
        random = block[(block["init"] == "random") & block["n_stored"].isin(set(word["n_stored"].dropna()))]
        words = block[(block["init"] != "random")]
        if random.empty:
            continue
        block = pd.concat([random, words])
        sel, metric, _ = _primary_block(block)
        scale = _scale(sel)
        by_key = _runs_by_key(runs[runs["train_key"].isin(set(sel["train_key"]))])
        inits = ["random", PAPER_WORD, *sorted(set(sel["init"]) - {"random", PAPER_WORD})]
        lines += [f"### Figure 5 — prefix initialization ({dataset_name(dataset)} {split}, {size_text(size)})", "",
                  f"Paper: {CLAIM_FIG5}", ""]
        rows = []
        primary: Comparison | None = None
        for init in inits:
            s = sel[sel["init"] == init]
            c = None if init == "random" else _diff(sel, by_key, sel["init"] == "random", sel["init"] == init, metric)
            primary = c if init == PAPER_WORD else primary
            stored = ", ".join(f"{int(v):,}" for v in sorted(set(s["n_stored"].dropna())))
            rows.append([init, stored, ", ".join(str(int(v)) for v in sorted(set(s["subset"]))),
                         mean_std_ci(s["value"] * scale), "" if c is None else fmt_delta(c)])
        lines += table(["initialization", "stored parameters", "subsets", ref.display_name(metric),
                           "Δ (this − random), paired 95% CI, p"], rows)
        pending = _pending(missing, dataset, size, set(sel[sel["init"].isin(["random", PAPER_WORD])]["row_label"]))
        lines += ["", f"**Verdict (\"{PAPER_WORD}\" vs random): {verdict_fig5(primary, pending)}**", "",
                  ("Rule: reproduced when the paired 95% interval of real-word − random (pooled over the subsets both "
                   "ran) lies above 0, not reproduced when below, inconclusive when it holds 0 or while runs of "
                   "either row are still to come. Other words: shown, on the subsets they ran, at their own "
                   "token count (a word's prefix length), so their Δ against random also holds a length "
                   "difference: compare the stored parameters."), ""]
        if sel["row_label"].map(lambda s: _without_key(str(s), "init")).nunique() == 1:
            continue  # one swept row: bench.report.figures already draws this panel
        series = pd.DataFrame([{"label": "prefix", "init": i, "values": list(sel[sel["init"] == i]["value"] * scale)}
                               for i in inits])
        fig = init_figure(series, metric_label=ref.display_name(metric),
                          title=f"{dataset_name(dataset)} {split}: {ref.display_name(metric)} per initialization")
        figures.append(ReportFigure(f"claim_fig5_{dataset}_{split}", fig,
                                    f"{PAPER_FIG5}. Here: {size_text(size)}; dot: mean, bars: 95% t-interval over "
                                    "subsets, small dots: the runs."))
    return ClaimReport(lines, figures)


def _pending(missing: pd.DataFrame | None, dataset: str, size: object, labels: set[str]) -> list[str]:
    """The suite's runs of ``labels`` at this dataset and training size that have not finished."""
    m = missing_of(missing, dataset, labels)
    m = m[pd.to_numeric(m["train_size"], errors="coerce") == float(size)]  # type: ignore[arg-type]
    return [f"{label} on subset {subset}" for label, subset in sorted(zip(m["method_label"], m["subset"].astype(int), strict=True))]


def verdict_fig5(c: Comparison | None, pending: Sequence[str] = ()) -> str:
    if c is None:
        return "inconclusive at this scale — no matched pair of random and real-word runs"
    what = f"Δ {ref.display_name(c.metric)} {c.delta:+.2f} [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}] over {c.n_pairs} subset(s)"
    if pending:
        return f"inconclusive at this scale — runs still to come ({', '.join(pending)}); so far: {what}"
    if c.ci[0] > 0:
        return f"reproduced — real words ahead of random: {what}"
    if c.ci[1] < 0:
        return f"not reproduced — random ahead of real words: {what}"
    return f"inconclusive at this scale — the 95% interval holds zero: {what}"
