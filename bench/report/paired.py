"""Paired comparisons against a reference method: what a suite's main table shows, tested.

A suite that says ``compare: {reference: prefix, metrics: [bleu, rouge_l]}`` gets a report
section in which every other method row is tested against the reference row: its score minus
the reference's on each listed metric (default: the first metric of the paper's order the
runs hold), with the 95% interval and p-value of a paired bootstrap over the test sources
(``claims.compare``: runs matched on training size, subset and seed, so trained on the same
examples, and pooled over those pairs). Each row gets a reading from the interval alone:
ahead, behind, or level (the interval holds zero). Rows with no matched pair say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bench.report import reference as ref
from bench.report.claim_table2 import size_text
from bench.report.claims import _group_filter, _lower_better, _pairs, _runs_by_key, _scale, compare
from bench.report.tables import dataset_name, fmt_num, md_table

GROUP_ORDER = ("seen", "unseen", "all")
CELL = ["model", "dataset", "split", "train_size", "scenario"]


def _reading(delta_ci: tuple[float, float], lower_is_better: bool) -> str:
    lo, hi = delta_ci
    if lo > 0:
        return "behind" if lower_is_better else "ahead"
    if hi < 0:
        return "ahead" if lower_is_better else "behind"
    return "level (interval holds 0)"


def _metrics(block: pd.DataFrame, wanted: Sequence[str]) -> list[str]:
    held = set(block["metric"])
    if wanted:
        return [m for m in wanted if m in held]
    ordered = sorted(held, key=ref.metric_sort_key)
    return ordered[:1]


def _cell_title(cell: dict) -> str:
    size_txt = size_text(cell["train_size"])
    scenario = cell["scenario"]
    extra = "" if scenario is None or (isinstance(scenario, float) and math.isnan(scenario)) else f", {scenario}"
    return f"{cell['model']}, {dataset_name(str(cell['dataset']))} ({cell['split']}), {size_txt}{extra}"


def paired_section(scores: pd.DataFrame, runs: pd.DataFrame, *, reference: str | None,
                   metrics: Sequence[str] = ()) -> list[str]:
    """The markdown section; nothing when the suite names no reference or nothing is scored."""
    if not reference or scores.empty:
        return []
    lines = [f"## Paired comparisons against {reference}", "",
             (f"Each method row minus `{reference}` on the same test sources: Δ with its 95% paired-bootstrap "
             "interval and p = P(the row is not better), runs matched on training size, subset and seed "
             "(pooled over the matched pairs: n). The reading comes from the interval alone: ahead or behind "
             "when it excludes 0, level when it holds 0. The suite's `compare:` entry asks for this section."), ""]
    by_key = _runs_by_key(runs)
    # one grid cell at a time: its rows were trained on the same data and tested on the same split
    for cell, block in scores.groupby(CELL, sort=False, dropna=False):
        labels = list(dict.fromkeys(block["row_label"]))
        title = _cell_title(dict(zip(CELL, cell, strict=True)))
        if reference not in labels:
            lines += [f"### {title}", "", f"No finished `{reference}` run here: nothing to compare against.", ""]
            continue
        groups = [g for g in GROUP_ORDER if g in set(block["group"])] or list(dict.fromkeys(block["group"]))
        many = len(groups) > 1
        rows = []
        for label in labels:
            if label == reference:
                continue
            for metric in _metrics(block, metrics):
                for group in groups:
                    sel = block[(block["metric"] == metric) & (block["group"] == group)]
                    name = ref.display_name(metric) + (f" ({group})" if many else "")
                    pairs = _pairs(sel[sel["row_label"] == reference], sel[sel["row_label"] == label], by_key)
                    c = None
                    if pairs:
                        c = compare(pairs, split=str(sel["split"].iloc[0]), column=metric,
                                    metric_id=str(sel["metric_id"].iloc[0]),
                                    group_filter=_group_filter(str(cell[1]), group), scale=_scale(sel))
                    if c is None:
                        rows.append([label, name, "–", "–", "no matched pair of runs on the same examples", "–", "–", "–"])
                        continue
                    rows.append([label, name, fmt_num(c.score_a, 2), fmt_num(c.score_b, 2),
                                 f"{c.delta:+.2f} [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]", f"{c.p_value:.3f}",
                                 str(c.n_pairs), _reading(c.ci, _lower_better(block, metric))])
        if rows:
            lines += [f"### {title}", "",
                      *md_table(["method", "metric", f"{reference} (reference)", "method", "Δ (method − reference) [95%]",
                                 "p", "n", "reading"], rows, numeric_from=2), ""]
    return lines
