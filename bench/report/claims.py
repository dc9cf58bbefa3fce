"""The paper's claims as report sections: what the paper says, its numbers, ours, a test, a verdict.

A claim section appears wherever a suite's runs can test it, in any report:
- claim 2 (Figure 3, low data): prefix-tuning vs fine-tuning runs on sampled training subsets;
- claim 3 (extrapolation): prefix-tuning vs fine-tuning under an extrapolation preset;
- claim 4 (Table 5): prefix vs infix vs embedding-only at one prefix length.

Ours are the mean +- standard deviation over the runs of a point (subsets x seeds) with a 95%
t-interval of that mean (training-data variance), and a paired bootstrap over the test
sources (``pooled_paired_bootstrap``: test-set variance; the same resamples score every pair
of runs that share a subset and seed). Each verdict is one line, computed from those numbers
by the rules written next to it; a claim whose runs are incomplete is at most inconclusive.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import store
from bench.report import reference as ref
from bench.report.figures import ReportFigure, _figure, interval95
from bench.report.tables import ScoreCell, TableWriter, dataset_name, fmt_num, md_table
from bench.runner import dev_loss_moved

N_BOOT = 1000
# The paper's statements (ACL 2021 text; PAPER.md "Claims the harness should let a user test").
CLAIM2 = ("Prefix-tuning outperforms fine-tuning in low-data settings, by 2.9 BLEU on average over "
          "training sizes 50-500 on E2E (GPT-2 medium, Figure 3), the gap narrowing as data grows.")
CLAIM3 = ("Prefix-tuning extrapolates better than fine-tuning to categories unseen in training "
          "(WebNLG unseen categories, Table 2's U column; XSUM topics, Table 4).")
CLAIM4 = ("At equal length, prefix-tuning > infix-tuning > embedding-only (Table 5, E2E, GPT-2 medium): "
          "tuning activations at every layer beats tuning only the input embeddings, and the prefix "
          "position beats the infix position.")


@dataclass(frozen=True)
class Comparison:
    """B - A for one metric at one point, over the matched (subset, seed) pairs of runs."""

    metric: str
    n_pairs: int
    n_sources: int
    score_a: float
    score_b: float
    delta: float
    ci: tuple[float, float]
    p_value: float

    @property
    def significant(self) -> int:
        """+1: B better (interval above 0), -1: A better (below 0), 0: the interval holds 0."""
        if self.ci[0] > 0:
            return 1
        if self.ci[1] < 0:
            return -1
        return 0


@dataclass(frozen=True)
class ClaimReport:
    lines: list[str]
    figures: list[ReportFigure]


# ----------------------------------------------------------------------------- statistics


def _per_example(run: Mapping, split: str, metric_id: str, group_filter: Mapping) -> tuple[list[str], np.ndarray]:
    """Source ids and per-example statistics of one run's stored predictions."""
    from bench.interfaces import EvalItem
    from bench.registry import METRICS
    from bench.scoring import group_mask

    preds = store.read_predictions(Path(run["path"]), run.get("decode_key"))
    preds = preds[preds["split"] == split].sort_values("source_id", kind="stable")
    items = [EvalItem(str(r.source_id), str(r.source), tuple(r.references), json.loads(r.fields or "{}"))
             for r in preds.itertuples()]
    mask = group_mask(items, "group", group_filter) if group_filter else np.ones(len(items), dtype=bool)
    hyps = ["" if p is None else str(p) for p in preds["prediction"]]
    metric = METRICS.get(metric_id)()
    stats = np.asarray(metric.stats(hyps, [list(it.references) for it in items]), dtype=np.float64)
    ids = [it.source_id for it, keep in zip(items, mask) if keep]
    return ids, stats[np.asarray(mask, dtype=bool)]


def compare(pairs: Sequence[tuple[Mapping, Mapping]], *, split: str, column: str, metric_id: str,
            group_filter: Mapping, scale: float, seed: int = 0) -> Comparison | None:
    """Pooled paired bootstrap of B - A over ``pairs`` of runs (display scale)."""
    from bench.metrics.bootstrap import pooled_paired_bootstrap
    from bench.registry import METRICS

    arrays = []
    for a, b in pairs:
        ids_a, sa = _per_example(a, split, metric_id, group_filter)
        ids_b, sb = _per_example(b, split, metric_id, group_filter)
        if ids_a != ids_b or not ids_a:
            return None  # not the same examples: no paired test (the table still shows both)
        arrays.append((sa, sb))
    if not arrays:
        return None
    res = pooled_paired_bootstrap(METRICS.get(metric_id)(), arrays, n_boot=N_BOOT, seed=seed)
    return Comparison(column, len(arrays), len(arrays[0][0]), res.score_a * scale, res.score_b * scale,
                      res.delta * scale, (res.delta_ci[0] * scale, res.delta_ci[1] * scale), res.p_value)


def mean_std_ci(values: Sequence[float]) -> str:
    """'mean +- std [lo, hi] (n)' of runs' scores; the interval is the 95% t-interval of the mean."""
    vals = [float(v) for v in values]
    if not vals:
        return "–"
    mean, lo, hi = interval95(vals)
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    d = 1 if abs(mean) >= 10 else 2
    if math.isnan(std):
        return f"{fmt_num(mean, d)} (n=1)"
    return f"{fmt_num(mean, d)} ± {fmt_num(std, d)} [{fmt_num(lo, d)}, {fmt_num(hi, d)}] (n={len(vals)})"


def fmt_delta(c: Comparison | None) -> str:
    if c is None:
        return "–"
    d = 2
    return f"{c.delta:+.{d}f} [{c.ci[0]:+.{d}f}, {c.ci[1]:+.{d}f}] p={c.p_value:.3f}"


# ----------------------------------------------------------------------------- selection


def _cells(scores: pd.DataFrame, split: str, group: str, metric: str) -> pd.DataFrame:
    sel = scores[(scores["split"] == split) & (scores["group"] == group) & (scores["metric"] == metric)]
    return sel


def _scale(sel: pd.DataFrame) -> float:
    if sel.empty:
        return 1.0
    return ref.display_scale(str(sel["metric_id"].iloc[0]), str(sel["signature"].iloc[0]))


def _runs_by_key(runs: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for r in runs.to_dict("records"):
        spec = store.read_json(Path(r["path"]) / "spec.json")["spec"]
        r["decode_key"] = spec.get("decode_key")
        r["train_spec"] = spec.get("train", {})
        r["lr"] = r["train_spec"].get("lr", float("nan"))
        out[r["train_key"]] = r
    return out


def _pairs(sel_a: pd.DataFrame, sel_b: pd.DataFrame, runs: Mapping[str, dict]) -> list[tuple[dict, dict]]:
    """Runs of A and B matched on (train size, subset, seed): trained on the same examples."""
    key = ["train_size", "subset", "seed"]
    a = {tuple(r[k] for k in key): r["train_key"] for r in sel_a.to_dict("records")}
    b = {tuple(r[k] for k in key): r["train_key"] for r in sel_b.to_dict("records")}
    return [(runs[a[k]], runs[b[k]]) for k in sorted(set(a) & set(b), key=str)]


def _paper(model: str, label: str, dataset: str, split: str, metric: str) -> str:
    hit = ref.paper_value(model=model, method_label=label, dataset=dataset, split=split, group="all",
                          metric=metric)
    return "–" if hit is None else f"{hit.value:g}"


# ----------------------------------------------------------------------------- claim 2


def _low_data_metric_pair(scores: pd.DataFrame) -> list[str]:
    """BLEU and ROUGE-L where the dataset has them (Figure 3's two panels), else its first metric."""
    have = list(dict.fromkeys(scores["metric"]))
    chosen = [m for m in ("bleu", "rouge_l") if m in have]
    return chosen or have[:1]


def claim2(scores: pd.DataFrame, runs: pd.DataFrame, missing: pd.DataFrame, *,
           table: TableWriter = md_table) -> ClaimReport:
    part = scores[scores["train_size"].notna() & scores["scenario"].isna()
                  & scores["method"].isin(["prefix", "full"])]
    lines: list[str] = []
    figures: list[ReportFigure] = []
    if part.empty or part["method"].nunique() < 2:
        return ClaimReport(lines, figures)
    by_key = _runs_by_key(runs[runs["train_key"].isin(set(part["train_key"]))])
    for (dataset, split), block in part.groupby(["dataset", "split"], sort=False):
        group = "all"
        metrics = _low_data_metric_pair(block)
        ft_labels = _curve_labels(block, "full", missing, dataset)
        pre_labels = _curve_labels(block, "prefix", missing, dataset)
        if not ft_labels or not pre_labels:
            continue
        block = block[block["row_label"].isin([*ft_labels, *pre_labels])]
        sizes = sorted(int(s) for s in block["train_size"].unique())
        if len(sizes) < 2:
            continue  # one training size is no low-data curve (Table 2's rows at 500 examples: claim 1)
        lines += [f"### Claim 2 — low data ({dataset_name(dataset)} {split})", "", f"Paper: {CLAIM2}", ""]
        for ft in ft_labels:
            for pre in pre_labels:
                rows, deltas = [], []
                for size in sizes:
                    row = [str(size)]
                    for metric in metrics:
                        sel = _cells(block, split, group, metric)
                        scale = _scale(sel)
                        a = sel[(sel["row_label"] == ft) & (sel["train_size"] == size)]
                        b = sel[(sel["row_label"] == pre) & (sel["train_size"] == size)]
                        pairs = _pairs(a, b, by_key)
                        c = compare(pairs, split=split, column=metric, metric_id=str(sel["metric_id"].iloc[0]),
                                    group_filter={}, scale=scale) if pairs else None
                        row += [mean_std_ci(b["value"] * scale), mean_std_ci(a["value"] * scale), fmt_delta(c)]
                        if metric == metrics[0]:
                            deltas.append((size, c))
                    rows.append(row)
                headers = ["train size"]
                for metric in metrics:
                    name = ref.display_name(metric)
                    headers += [f"{pre} {name}", f"{ft} {name}", f"Δ {name} ({pre} − {ft}), 95% CI, p"]
                lines += [(f"**{pre}** vs **{ft}**: mean ± std over subsets x seeds [95% t-interval] (n runs); "
                          "Δ: paired bootstrap over test sources, pooled over the runs that share a subset "
                          f"and seed ({N_BOOT} resamples)."), ""]
                lines += table(headers, rows)
                verdict = _verdict2(deltas, _incomplete(missing, dataset, {ft, pre}), metrics[0])
                lines += ["", f"**Verdict ({pre} vs {ft}): {verdict}**", ""]
        figures.append(_figure3(block, dataset, split, metrics))
    return ClaimReport(lines, figures)


def _curve_labels(block: pd.DataFrame, method: str, missing: pd.DataFrame, dataset: str) -> list[str]:
    """Labels of ``method`` that span the most training sizes (finished or still expected by the
    suite): the low-data curves. A row the suite runs at fewer sizes (the Table 5 ablation's
    prefix_10 at 500 examples only) is not one of them."""
    sizes: dict[str, set[float]] = {}
    for label, rows in block[block["method"] == method].groupby("row_label"):
        sizes[str(label)] = set(rows["train_size"].dropna())
    if not missing.empty:
        todo = missing[(missing["dataset"] == dataset) & missing["method_label"].isin(list(sizes))]
        for label, rows in todo.groupby("method_label"):
            sizes[str(label)] |= set(rows["train_size"].dropna())
    most = max((len(v) for v in sizes.values()), default=0)
    return sorted(label for label, v in sizes.items() if len(v) == most)


def missing_of(missing: pd.DataFrame | None, dataset: str, labels: set[str]) -> pd.DataFrame:
    """The suite's runs of these labels on ``dataset`` that are not done (empty without any)."""
    if missing is None or missing.empty:
        return pd.DataFrame(columns=["dataset", "method_label", "train_size", "subset"])
    return missing[(missing["dataset"] == dataset) & missing["method_label"].isin(labels)]


def _incomplete(missing: pd.DataFrame, dataset: str, labels: set[str]) -> set[int]:
    """Training sizes where the suite expects runs of these labels that are not done."""
    return {int(s) for s in missing_of(missing, dataset, labels)["train_size"].dropna()}


def _verdict2(deltas: list[tuple[int, Comparison | None]], incomplete_sizes: set[int], metric: str) -> str:
    """Reproduced: prefix is ahead on average and significantly ahead at most sizes;
    not reproduced: behind on average and significantly behind at most sizes; else inconclusive.
    Incomplete points (runs the suite expects that are not done) make it inconclusive at best."""
    tested = [(s, c) for s, c in deltas if c is not None]
    if not tested:
        return "inconclusive at this scale — no size has a matched pair of finished runs yet"
    name = ref.display_name(metric)
    mean_gap = float(np.mean([c.delta for _, c in tested]))
    ahead = [s for s, c in tested if c.significant > 0]
    behind = [s for s, c in tested if c.significant < 0]
    incomplete = sorted({s for s, c in deltas if c is None} | incomplete_sizes)
    detail = (f"mean gap {mean_gap:+.2f} {name} over {len(tested)} sizes (paper: +2.9 BLEU); prefix significantly "
              f"ahead at {len(ahead)} ({', '.join(map(str, ahead)) or 'none'}), behind at {len(behind)} "
              f"({', '.join(map(str, behind)) or 'none'})")
    if incomplete:
        return (f"inconclusive at this scale — incomplete: sizes {', '.join(map(str, incomplete))} still miss "
                f"runs; so far {detail}")
    if mean_gap > 0 and len(ahead) > len(tested) / 2:
        return f"reproduced — {detail}"
    if mean_gap < 0 and len(behind) > len(tested) / 2:
        return f"not reproduced — {detail}"
    return f"inconclusive at this scale — {detail}"


def _figure3(block: pd.DataFrame, dataset: str, split: str, metrics: list[str]) -> ReportFigure:
    """Figure 3's layout: one panel per metric, score against training size, one line per method;
    each run a dot, the mean a line, the band its 95% t-interval."""
    fig = _figure(width=5.0 * len(metrics), height=4.0)
    for i, metric in enumerate(metrics, 1):
        ax = fig.add_subplot(1, len(metrics), i)
        sel = _cells(block, split, "all", metric)
        scale = _scale(sel)
        for label, g in sel.groupby("row_label", sort=True):
            points = g.groupby("train_size")["value"].apply(list).map(lambda v, k=scale: [x * k for x in v])
            xs = [int(x) for x in points.index]
            stats = [interval95(v) for v in points]
            line = ax.plot(xs, [s[0] for s in stats], marker="o", label=str(label))[0]
            for x, v in zip(xs, points):
                ax.scatter([x] * len(v), v, s=10, alpha=0.4, color=line.get_color())
            lows, highs = [s[1] for s in stats], [s[2] for s in stats]
            if any(not math.isnan(v) for v in lows):
                ax.fill_between(xs, lows, highs, alpha=0.15, color=line.get_color())
        sizes = sorted(int(s) for s in sel["train_size"].unique())
        ax.set_xscale("log")
        ax.set_xticks(sizes)
        ax.set_xticks([], minor=True)
        ax.set_xticklabels([str(s) for s in sizes])
        ax.set_xlabel("training examples")
        ax.set_ylabel(ref.display_name(metric))
        ax.set_title(f"{dataset_name(dataset)} {split}: {ref.display_name(metric)}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    caption = (f"Claim 2 in Figure 3's layout ({dataset_name(dataset)} {split}): "
               f"{' and '.join(ref.display_name(m) for m in metrics)} against the training size; dots: runs "
               "(subsets x seeds), line: mean, band: 95% t-interval.")
    return ReportFigure(f"claim2_{dataset}_{split}", fig, caption)


# ----------------------------------------------------------------------------- claim 3


def claim3(scores: pd.DataFrame, runs: pd.DataFrame, *, table: TableWriter = md_table) -> ClaimReport:
    part = scores[scores["scenario"].notna() & scores["method"].isin(["prefix", "full"])]
    lines: list[str] = []
    if part.empty or part["method"].nunique() < 2:
        return ClaimReport(lines, [])
    by_key = _runs_by_key(runs[runs["train_key"].isin(set(part["train_key"]))])
    for (dataset, scenario, split), block in part.groupby(["dataset", "scenario", "split"], sort=False):
        groups = list(dict.fromkeys(block["group"]))
        group = "unseen" if "unseen" in groups else "all"
        metrics = list(dict.fromkeys(block["metric"]))
        ft = sorted(block[block["method"] == "full"]["row_label"].unique())
        pre = sorted(block[block["method"] == "prefix"]["row_label"].unique())
        model = str(block["model"].iloc[0])
        lines += [f"### Claim 3 — extrapolation ({dataset_name(dataset)}, {scenario}, {split} {group})", "",
                  f"Paper: {CLAIM3}", ""]
        for a_label in ft:
            for b_label in pre:
                rows = []
                primary: Comparison | None = None
                for metric in metrics:
                    sel = block[(block["group"] == group) & (block["metric"] == metric)]
                    scale = _scale(sel)
                    a, b = sel[sel["row_label"] == a_label], sel[sel["row_label"] == b_label]
                    groups_spec = _group_filter(dataset, group)
                    pairs = _pairs(a, b, by_key)
                    c = compare(pairs, split=split, column=metric, metric_id=str(sel["metric_id"].iloc[0]),
                                group_filter=groups_spec, scale=scale) if pairs else None
                    primary = primary or c
                    paper_split = ref.SCENARIO_SPLITS.get((scenario, split), scenario)
                    rows.append([ref.display_name(metric), mean_std_ci(b["value"] * scale),
                                 mean_std_ci(a["value"] * scale), fmt_delta(c),
                                 _paper("gpt2-medium", "prefix_0.1pct", dataset, paper_split, metric),
                                 _paper("gpt2-medium", "finetune", dataset, paper_split, metric)])
                lines += table(["metric", b_label, a_label, f"Δ ({b_label} − {a_label}), 95% CI, p",
                                "paper prefix (GPT-2 M)", "paper FT (GPT-2 M)"], rows)
                verdict = _verdict_pair(primary, better="prefix", worse="fine-tuning",
                                        lower_is_better=_lower_better(block, metrics[0]))
                lines += ["", f"**Verdict ({b_label} vs {a_label}, model {model}): {verdict}**", ""]
    return ClaimReport(lines, [])


def _group_filter(dataset: str, group: str) -> Mapping:
    from bench.registry import DATASETS

    groups = dict(getattr(DATASETS.get(dataset), "score_groups", {}) or {})
    return dict(groups.get(group) or {})


def _lower_better(block: pd.DataFrame, metric: str) -> bool:
    sel = block[block["metric"] == metric]
    return bool(not sel["higher_is_better"].iloc[0]) if not sel.empty and sel["higher_is_better"].notna().any() \
        else False


def _verdict_pair(c: Comparison | None, *, better: str, worse: str, lower_is_better: bool = False) -> str:
    """Reproduced when the paired interval says ``better`` wins, not reproduced when it says it
    loses, inconclusive when the interval holds zero or there is no matched pair."""
    if c is None:
        return "inconclusive at this scale — no matched pair of finished runs yet"
    sign = -c.significant if lower_is_better else c.significant
    what = f"Δ {ref.display_name(c.metric)} {c.delta:+.2f} [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}] over {c.n_sources} sources"
    if sign > 0:
        return f"reproduced — {better} ahead of {worse}: {what}"
    if sign < 0:
        return f"not reproduced — {worse} ahead of {better}: {what}"
    return f"inconclusive at this scale — the 95% interval holds zero: {what}"


# ----------------------------------------------------------------------------- claim 4


ABLATION_ORDER = ("prefix", "infix", "embedding_only")


def claim4(scores: pd.DataFrame, runs: pd.DataFrame, *, table: TableWriter = md_table) -> ClaimReport:
    """One section per (dataset, split, size, length). A method may have several rows (labels:
    the paper's learning rate and a tuned variant); each choice of one row per method gets its
    own verdict, and every row says how far its training moved the dev loss."""
    part = scores[scores["method"].isin(ABLATION_ORDER) & scores["length"].notna() & scores["scenario"].isna()]
    lines: list[str] = []
    if part.empty or not part["method"].isin(["infix", "embedding_only"]).any():
        return ClaimReport(lines, [])
    by_key = _runs_by_key(runs[runs["train_key"].isin(set(part["train_key"]))])
    keys = ["dataset", "split", "train_size", "length"]
    part = part.assign(train_size=part["train_size"].astype(object).where(part["train_size"].notna(), None))
    for (dataset, split, size, length), block in part.groupby(keys, sort=False, dropna=False):
        present = [m for m in ABLATION_ORDER if m in set(block["method"])]
        if len(present) < 2:
            continue
        size_text = "full training set" if size is None or (isinstance(size, float) and math.isnan(size)) \
            else f"{int(size)} training examples"
        lines += [(f"### Claim 4 — prefix vs infix vs embedding-only ({dataset_name(dataset)} {split}, "
                  f"length {int(length)}, {size_text})"), "", f"Paper: {CLAIM4}", ""]
        metrics = list(dict.fromkeys(block["metric"]))
        model = str(block["model"].iloc[0])
        labels_of = {m: sorted(block[block["method"] == m]["row_label"].unique()) for m in present}
        columns = [(m, label) for m in present for label in labels_of[m]]
        paper_label = {"prefix": "prefix", "infix": f"infix_{int(length)}", "embedding_only": f"emb_{int(length)}"}
        rows = []
        for metric in metrics:
            sel = block[(block["group"] == "all") & (block["metric"] == metric)]
            scale = _scale(sel)
            row = [ref.display_name(metric)]
            for m, label in columns:
                v = sel[sel["row_label"] == label]["value"] * scale
                paper = _paper("gpt2-medium", paper_label[m], dataset, split, metric)
                ours = mean_std_ci(v)
                row.append(ScoreCell(f"{ours} (paper {paper})", ours, paper))
            rows.append(row)
        rows.append(["dev loss (untrained → best)",
                     *[_dev_loss_moved(block[block["row_label"] == label], by_key) for _, label in columns]])
        rows.append(["learning rate", *[_learning_rates(block[block["row_label"] == label], by_key)
                                        for _, label in columns]])
        lines += table(["metric", *[f"{label} ({m})" for m, label in columns]], rows)
        lines += ["", "Paper values: GPT-2 medium, full E2E training set, Table 5 (prefix row: length 10).", ""]
        primary = metrics[0]
        sel = block[(block["group"] == "all") & (block["metric"] == primary)]
        scale = _scale(sel)
        done: dict[tuple[str, str], Comparison | None] = {}
        choices = list(itertools.product(*[labels_of[m] for m in present]))
        for choice in choices:
            for hi, lo in itertools.pairwise(choice):
                if (hi, lo) in done:
                    continue
                pairs = _pairs(sel[sel["row_label"] == lo], sel[sel["row_label"] == hi], by_key)
                done[(hi, lo)] = compare(pairs, split=split, column=primary, metric_id=str(sel["metric_id"].iloc[0]),
                                         group_filter={}, scale=scale) if pairs else None
                lines.append(f"- {hi} − {lo} ({ref.display_name(primary)}): {fmt_delta(done[(hi, lo)])}")
        lines.append("")
        for choice in choices:
            comps = [(m_hi, m_lo, done[(hi, lo)]) for (m_hi, m_lo), (hi, lo)
                     in zip(itertools.pairwise(present), itertools.pairwise(choice), strict=True)]
            verdict = _verdict4(comps, present, model)
            which = "" if len(choices) == 1 else f" ({', '.join(choice)})"
            lines += [f"**Verdict{which}: {verdict}**", ""]
    return ClaimReport(lines, [])


def _dev_loss_moved(sel: pd.DataFrame, runs: Mapping[str, dict]) -> str:
    """Dev loss before training → best, per run (a method that does not learn shows here); runs
    stored without the untrained loss start from their first evaluation ("at step N")."""
    out = [fmt_dev_loss_moved((store.read_meta(Path(runs[key]["path"])) or {}).get("train") or {})
           for key in dict.fromkeys(sel["train_key"])]
    return "; ".join(out) or "–"


def fmt_dev_loss_moved(train: dict) -> str:
    """"untrained → best (change)" from a run's training summary; "–" where none is stored."""
    moved = dev_loss_moved(train)
    if moved is None:
        return "–"
    first, best, step = moved
    where = "" if step is None else f" at step {step}"
    return f"{first:.1f}{where} → {best:.1f} ({(best - first) / first:+.0%})"


def _learning_rates(sel: pd.DataFrame, runs: Mapping[str, dict]) -> str:
    rates = [f"{runs[key]['lr']:g}" for key in dict.fromkeys(sel["train_key"])]
    return ", ".join(dict.fromkeys(rates)) or "–"


def _verdict4(comps: list[tuple[str, str, Comparison | None]], present: list[str], model: str) -> str:
    """Reproduced when every step of the order is significantly in the paper's direction; not
    reproduced when any step is significantly reversed; else inconclusive."""
    if len(present) < len(ABLATION_ORDER):
        missing = [m for m in ABLATION_ORDER if m not in present]
        return f"inconclusive at this scale — no finished run of {', '.join(missing)} yet"
    if any(c is None for _, _, c in comps):
        return "inconclusive at this scale — some rows have no matched finished run"
    parts = [f"{hi} − {lo} {c.delta:+.2f} [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]" for hi, lo, c in comps if c]
    text = "; ".join(parts) + f" ({model})"
    if all(c.significant > 0 for _, _, c in comps if c):
        return f"reproduced — prefix > infix > embedding-only: {text}"
    if any(c.significant < 0 for _, _, c in comps if c):
        return f"not reproduced — at least one step is significantly reversed: {text}"
    return f"inconclusive at this scale — at least one interval holds zero: {text}"


# ----------------------------------------------------------------------------- all


CLAIM5 = ("On summarization (XSUM, BART-large), prefix-tuning trails full fine-tuning slightly (Table 3: "
          "ROUGE-2 20.93 with a 2% prefix vs 22.27); XSUM is larger, its documents longer, the task harder.")


def claim5_not_testable(scores: pd.DataFrame) -> list[str]:
    """Claim 5 named with why it has no verdict, where the report holds table-to-text runs but no
    summarization run (so an absent claim reads as a reason, not as an oversight)."""
    from bench.datasets.paths import resolve_data_dir
    from bench.errors import BenchError
    from bench.report.tables import task_of

    tasks = {task_of(str(d)) for d in scores["dataset"].unique()}
    _, paper_datasets = ref.reference_settings()
    # only beside the paper's own table-to-text data (a synthetic quickstart tests no paper claim)
    if "summarization" in tasks or not set(scores["dataset"]) & (set(paper_datasets) - {"xsum"}):
        return []
    try:
        root = resolve_data_dir(None)
    except BenchError:
        root = None
    present = root is not None and (root / "xsum" / "bbc-summary-data").is_dir()
    where = ("xsum/bbc-summary-data is present in the data folder, but this suite has no summarization run"
             if present else "the data folder has no xsum/bbc-summary-data: the shared data holds XSUM's split "
             "ids and test summaries only")
    return ["### Claim 5 — summarization: not testable here", "", f"Paper: {CLAIM5}", "",
            (f"No verdict: training and scoring on XSUM needs its source documents ({where}) and the paper's "
             "model is BART-large (facebook/bart-large, 406M parameters), which this machine cannot download "
             "(no hub). suites/summarization.yaml runs the claim where both are available."), ""]


def claims_report(scores: pd.DataFrame, runs: pd.DataFrame, missing: pd.DataFrame, *,
                  table: TableWriter = md_table) -> ClaimReport:
    """Every claim the runs can test; ``missing``: the runs the suite expects that are not done;
    ``table``: the table writer (``md_table``, or ``latex_table`` for the LaTeX export)."""
    if scores.empty:
        return ClaimReport([], [])
    # imported here: these modules build on this one's statistics
    from bench.report.claim_cost import claim6
    from bench.report.claim_figures import claim_fig4, claim_fig5
    from bench.report.claim_table2 import claim1, claim3_seen_unseen

    parts = [ClaimReport(claim1(scores, runs, missing, table=table), []), claim2(scores, runs, missing, table=table),
             claim3(scores, runs, table=table), ClaimReport(claim3_seen_unseen(scores, runs, table=table), []),
             claim4(scores, runs, table=table), claim_fig4(scores, runs, table=table),
             claim_fig5(scores, runs, missing, table=table)]
    parts.append(ClaimReport(claim6(runs, table=table), []))
    if any(p.lines for p in parts):  # claim 5's "not testable" only beside claims that are tested
        parts.append(ClaimReport(claim5_not_testable(scores), []))
    lines = [line for p in parts for line in p.lines]
    figures = [f for p in parts for f in p.figures]
    if lines and not missing.empty:
        # A claim none of whose runs has finished has no section above: say what is still to run,
        # so an absent claim reads as "not run yet", not as "not part of this suite".
        counts = missing.groupby(["dataset", "method_label"], sort=False).size()
        lines += ["### Not tested yet", "",
                  ("Runs of this suite still missing (a claim without a section above has none finished "
                   "yet):"), "",
                  *table(["dataset", "method", "missing runs"],
                            [[dataset_name(d), m, str(n)] for (d, m), n in counts.items()]), ""]
    if lines:
        lines = ["## The paper's claims, tested", "",
                 ("Verdicts follow fixed rules (bench/report/claims.py): *reproduced* when the paired 95% "
                 "interval puts the paper's winner ahead, *not reproduced* when it puts it behind, "
                 "*inconclusive at this scale* when it holds zero or runs are missing. Δ cells: the "
                 "difference, its paired-bootstrap 95% interval and p, the one-sided bootstrap p-value that "
                 "the first-named method is not ahead (the share of resamples where it is not; p=1.000: "
                 "behind in every resample)."), "", *lines]
    return ClaimReport(lines, figures)
