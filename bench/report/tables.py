"""Markdown tables in the layouts of Li & Liang (2021): Table 2 (table-to-text: E2E, WebNLG
S/U/A, DART), Table 3 (XSUM), Table 4 (extrapolation), Table 5 (embedding-only / infix /
prefix), the low-data numbers behind Figure 3, an efficiency table, and the lists that keep a
report honest (failed and missing runs, metric signatures, provenance).

Every function takes frames from ``bench.report.data`` and returns markdown lines; nothing
here reads files, so the golden test pins the text exactly. The table functions take the
table writer as ``table=`` (markdown by default): ``bench.report.latex.latex_table`` renders
the very same rows as booktabs LaTeX, so the two formats cannot drift apart.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd
from typing_extensions import Self

from bench.contention import CONTENDED
from bench.report import reference as ref
from bench.report.data import aggregate, group_indices

CELL_KEYS = ["model", "row_label", "method_label", "dataset", "scenario", "train_size", "split", "group", "metric"]
ROW_KEYS = ["model", "row_label", "method_label"]

DATASET_NAMES: Mapping[str, str] = {
    "e2e": "E2E",
    "synthetic_e2e": "synthetic E2E",
    "webnlg": "WebNLG",
    "dart": "DART",
    "xsum": "XSUM",
}

# Methods of the paper's Table 5 ablation (same length, different places for the parameters).
TABLE5_METHODS = ("embedding_only", "infix", "prefix")
TABLE5_KINDS: Mapping[str, str] = {"embedding_only": "Embedding-only", "infix": "Infix", "prefix": "Prefix"}


def dataset_name(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def task_of(dataset: str) -> str:
    """The dataset's task from its registered builder ("table_to_text" | "summarization")."""
    from bench.registry import DATASETS

    if dataset in DATASETS:
        return str(getattr(DATASETS.get(dataset), "task", "table_to_text"))
    return "table_to_text"


# ----------------------------------------------------------------------------- formatting


class TableWriter(Protocol):
    """Renders one table (headers, rows of cell texts) as lines: ``md_table`` or ``latex_table``."""

    def __call__(self, headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> list[str]: ...


class ScoreCell(str):
    """A score cell's markdown text that also keeps its parts: ours, and the paper's value where
    one is shown (the LaTeX writer sets the paper's value apart, in its own marked column)."""

    ours: str
    paper: str | None

    def __new__(cls, text: str, ours: str, paper: str | None = None) -> Self:
        cell = super().__new__(cls, text)
        cell.ours, cell.paper = ours, paper
        return cell


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> list[str]:
    """A GitHub markdown table; columns from ``numeric_from`` on are right-aligned."""
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    align = ["---" if i < numeric_from else "---:" for i in range(len(headers))]
    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


class RecordedTable(str):
    """A table's markdown text that keeps its headers and rows, so that sections computed once
    (the claims: bootstrap intervals over every test source) can be written again by another
    ``TableWriter`` (the LaTeX export) without being computed a second time."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric_from: int


def recorded_table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> list[str]:
    """``md_table`` as one :class:`RecordedTable` line (joined with newlines, the same markdown)."""
    kept = tuple(tuple(r) for r in rows)
    table = RecordedTable("\n".join(md_table(headers, kept, numeric_from)))
    table.headers, table.rows, table.numeric_from = tuple(headers), kept, numeric_from
    return [table]


def fmt_num(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def fmt_count(n: float | None) -> str:
    return "-" if n is None or (isinstance(n, float) and math.isnan(n)) else f"{round(n):,}"


def fmt_pct(n: float | None, base: float | None) -> str:
    if n is None or not base or (isinstance(n, float) and math.isnan(n)):
        return "-"
    return f"{100.0 * n / base:.3g}%"


def fmt_params(n: float | None, base: float | None) -> str:
    """'0.0693% (245,760)': the share of the base model and the count, as the paper states both."""
    return "-" if n is None else f"{fmt_pct(n, base)} ({fmt_count(n)})"


def decimals_for(values: Iterable[float]) -> int:
    """Three decimals for a column of fractions (METEOR, TER), two otherwise (BLEU x100, NIST)."""
    finite = [abs(v) for v in values if v is not None and not math.isnan(v)]
    return 3 if finite and max(finite) < 1.0 else 2


def lower_is_better(cell: Mapping[str, Any]) -> bool:
    hib = cell.get("higher_is_better")
    if hib is None or (isinstance(hib, float) and math.isnan(hib)):
        return cell.get("metric") == "ter"
    return not bool(hib)


def header_of(metric: str, group: str | None, lower_better: bool, scale: float) -> str:
    name = ref.display_name(metric) + (" ↓" if lower_better else "")
    if group is not None:
        name += f" {ref.GROUP_SHORT.get(group, group)}"
    return name


def scale_note(columns: Sequence[Column]) -> str | None:
    scaled = {}
    for c in columns:
        if c.scale != 1.0:
            scaled.setdefault(c.scale, [])
            if ref.display_name(c.metric) not in scaled[c.scale]:
                scaled[c.scale].append(ref.display_name(c.metric))
    if not scaled:
        return None
    parts = [f"{', '.join(names)} stored in [0, 1], shown ×{scale:g}" for scale, names in scaled.items()]
    return "Scale: " + "; ".join(parts) + " (the paper's scale)."


# ----------------------------------------------------------------------------- score tables


@dataclass(frozen=True)
class Column:
    metric: str
    group: str
    header: str
    scale: float


@dataclass
class RefStats:
    """How many of our cells found a paper value, over the whole report."""

    matched: int = 0
    cells: int = 0
    settings: set[tuple[str, str]] = field(default_factory=set)  # (model, dataset) shown


def metric_columns(agg: pd.DataFrame) -> list[Column]:
    """Metrics in the paper's order; one column per score group (S / U / A) where there are several."""
    metrics = sorted(agg["metric"].unique(), key=ref.metric_sort_key)
    groups = sorted(agg["group"].unique(), key=ref.group_sort_key)
    cols = []
    for m in metrics:
        first = agg[agg["metric"] == m].iloc[0]
        scale = ref.display_scale(str(first["metric_id"]), str(first["signature"]))
        for g in groups:
            if ((agg["metric"] == m) & (agg["group"] == g)).any():
                cols.append(Column(m, g, header_of(m, g if len(groups) > 1 else None, lower_is_better(first), scale),
                                   scale))
    return cols


def fmt_cell(cell: Mapping[str, Any] | None, scale: float, decimals: int, paper: ref.PaperValue | None) -> str:
    if cell is None:
        return "-"
    if not cell["comparable"]:
        return f"not comparable ({cell['why']})"
    text = fmt_num(cell["mean"] * scale, decimals)
    if cell["n"] > 1:
        text += f" ± {fmt_num(cell['std'] * scale, decimals)} (n={cell['n']})"
    if paper is None:
        return ScoreCell(text, text)
    second = f" [v1 {paper.second:g}]" if paper.second is not None else ""
    return ScoreCell(f"{text} · paper {paper.value:g}{second}, Δ {cell['mean'] * scale - paper.value:+.{decimals}f}",
                     text, f"{paper.value:g}{second}")


def _row_order(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    seen: dict[tuple[Any, ...], None] = {}
    for r in frame[ROW_KEYS].itertuples(index=False):
        seen.setdefault(tuple(r), None)
    return list(seen)


def score_table(
    cells: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    stats: RefStats,
    lead: Sequence[tuple[str, Callable[[pd.DataFrame], str]]] = (),
    with_paper: bool = True,
    table: TableWriter = md_table,
) -> list[str]:
    """One block: a row per (model, method label), the trained/stored parameter columns and a
    column per metric (x score group). ``cells`` is ``aggregate`` output for one dataset/split;
    ``runs`` the runs behind it (for parameter counts); ``lead`` extra leading columns."""
    columns = metric_columns(cells)
    index = {(r["model"], r["row_label"], r["metric"], r["group"]): r for r in cells.to_dict("records")}
    decimals = {
        (c.metric, c.group): decimals_for(v * c.scale for v in cells.loc[
            (cells["metric"] == c.metric) & (cells["group"] == c.group), "mean"])
        for c in columns
    }
    headers = ["method", *[h for h, _ in lead], "model", "trained", "stored", *[c.header for c in columns]]
    rows = []
    for model, row_label, method_label in _row_order(cells):
        row_runs = runs[(runs["model"] == model) & (runs["row_label"] == row_label)]
        base = _single(row_runs["base_total"])
        line = [row_label, *[fn(row_runs) for _, fn in lead], model,
                fmt_params(_single(row_runs["n_trained"]), base), fmt_params(_single(row_runs["n_stored"]), base)]
        for c in columns:
            cell = index.get((model, row_label, c.metric, c.group))
            paper = None
            if cell is not None and with_paper:
                stats.cells += 1
                stats.settings.add((str(model), str(cell["dataset"])))
                if _size_text(cell["train_size"]) == "full":  # the paper's tables train on the full split
                    paper = ref.paper_value(model=str(model), method_label=str(method_label),
                                            dataset=str(cell["dataset"]), split=str(cell["split"]),
                                            group=str(cell["group"]), metric=c.metric,
                                            scenario=_none(cell["scenario"]))
                stats.matched += paper is not None
            line.append(fmt_cell(cell, c.scale, decimals[(c.metric, c.group)], paper))
        rows.append(line)
    out = table(headers, rows, numeric_from=len(headers) - len(columns))
    note = scale_note(columns)
    return ([note, ""] if note else []) + out


def _none(value: Any) -> Any:
    """None for a missing value (pandas may hold it as NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _runs_of(runs: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """The runs behind a block's scores (parameter counts come from exactly those)."""
    return runs[runs["train_key"].isin(set(frame["train_key"]))]


def _single(series: pd.Series) -> float | None:
    """The runs' common value (parameter counts do not vary by seed); the mean if they do."""
    vals = pd.to_numeric(series, errors="coerce").dropna()
    return float(vals.mean()) if len(vals) else None


def _blocks(scores: pd.DataFrame, keys: Sequence[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    if scores.empty:
        return []
    return [(tuple(scores.loc[idx[0], list(keys)]), scores.loc[idx]) for idx in group_indices(scores, keys)]


def _is_full(scores: pd.DataFrame) -> pd.Series:
    return scores["train_size"].isna() & scores["scenario"].isna()


def _split_title(split: str) -> str:
    return split


def _one_size(scores: pd.DataFrame) -> pd.Series:
    """Rows of a (dataset, split) whose runs all trained on one sampled size and none on the
    full split: one point is no low-data curve, so they get the main layout, at that size."""
    plain = scores[scores["scenario"].isna()]
    single = set()
    for (dataset, split), frame in plain.groupby(["dataset", "split"], sort=False):
        if frame["train_size"].notna().all() and frame["train_size"].nunique() == 1:
            single.add((dataset, split))
    return scores["scenario"].isna() & pd.Series(
        [(d, sp) in single for d, sp in zip(scores["dataset"], scores["split"], strict=True)], index=scores.index)


def main_tables(scores: pd.DataFrame, runs: pd.DataFrame, *, stats: RefStats,
                table: TableWriter = md_table) -> list[str]:
    """Table 2 (table-to-text) and Table 3 (summarization) layouts: full-data, unfiltered runs,
    and those of a dataset trained at one sampled size only (titled with the size)."""
    full = scores[_is_full(scores) | _one_size(scores)] if not scores.empty else scores
    out: list[str] = []
    for task, title in (("table_to_text", "Table 2 layout: table-to-text"), ("summarization", "Table 3 layout: summarization")):
        part = full[full["dataset"].map(task_of) == task] if not full.empty else full
        # Embedding-only and infix are the Table 5 ablation, shown there.
        part = part[~part["method"].isin(["embedding_only", "infix"])] if not part.empty else part
        blocks = _blocks(part, ["dataset", "split"])
        if not blocks:
            continue
        out += [f"## {title}", ""]
        for (dataset, split), frame in blocks:
            size = frame["train_size"].dropna()
            size_text = f", {int(size.iloc[0])} training examples" if len(size) else ""
            out += [f"### {dataset_name(dataset)} ({_split_title(split)}{size_text})", ""]
            cells = aggregate(frame, CELL_KEYS)
            out += score_table(cells, _runs_of(runs, frame), stats=stats, table=table) + [""]
    return out


def extrapolation_tables(scores: pd.DataFrame, runs: pd.DataFrame, *, stats: RefStats,
                         table: TableWriter = md_table) -> list[str]:
    """Table 4 layout: runs trained on one part of the data and scored on another."""
    part = scores[scores["scenario"].notna()] if not scores.empty else scores
    blocks = _blocks(part, ["dataset", "scenario", "train_size", "split"])
    if not blocks:
        return []
    out = ["## Table 4 layout: extrapolation", ""]
    for (dataset, scenario, size, split), frame in blocks:
        size_text = "" if size is None or (isinstance(size, float) and math.isnan(size)) else f", {int(size)} training examples"
        out += [f"### {dataset_name(dataset)}: {scenario} ({split}{size_text})", ""]
        cells = aggregate(frame, CELL_KEYS)
        out += score_table(cells, _runs_of(runs, frame), stats=stats, table=table) + [""]
    return out


def table5(scores: pd.DataFrame, runs: pd.DataFrame, *, stats: RefStats, table: TableWriter = md_table) -> list[str]:
    """Table 5 layout: embedding-only vs infix vs prefix, by length (full-data table-to-text)."""
    if scores.empty or not scores["method"].isin(["embedding_only", "infix"]).any():
        return []
    part = scores[_is_full(scores) & scores["method"].isin(TABLE5_METHODS)]
    part = part[part["dataset"].map(task_of) == "table_to_text"]
    blocks = _blocks(part, ["dataset", "split"])
    if not blocks:
        return []
    out = ["## Table 5 layout: embedding-only / infix / prefix", ""]
    kind_order = {m: i for i, m in enumerate(TABLE5_METHODS)}
    for (dataset, split), frame in blocks:
        out += [f"### {dataset_name(dataset)} ({split})", ""]
        frame = frame.assign(
            _o1=frame["method"].map(kind_order),
            _o2=pd.to_numeric(frame["length"], errors="coerce").fillna(-1),
        ).sort_values(["_o1", "_o2"], kind="stable")
        cells = aggregate(frame, CELL_KEYS)
        lead = [
            ("kind", lambda r: TABLE5_KINDS.get(str(r["method"].iloc[0]), str(r["method"].iloc[0])) if len(r) else "-"),
            ("length", lambda r: _length_text(r["length"])),
        ]
        out += score_table(cells, _runs_of(runs, frame), stats=stats, lead=lead, table=table) + [""]
    return out


def _length_text(series: pd.Series) -> str:
    vals = sorted({int(v) for v in pd.to_numeric(series, errors="coerce").dropna()})
    return ", ".join(map(str, vals)) if vals else "default"


def primary_metric(frame: pd.DataFrame) -> str:
    return min(frame["metric"].unique(), key=ref.metric_sort_key)


def primary_group(frame: pd.DataFrame) -> str:
    groups = set(frame["group"])
    return "all" if "all" in groups else min(groups, key=ref.group_sort_key)


def low_data_tables(scores: pd.DataFrame, *, table: TableWriter = md_table) -> list[str]:
    """The numbers behind Figure 3: the primary metric by training size, one row per method."""
    part = scores[scores["train_size"].notna() & scores["scenario"].isna() & ~_one_size(scores)] \
        if not scores.empty else scores
    blocks = _blocks(part, ["dataset", "split"])
    if not blocks:
        return []
    out = ["## Low-data (Figure 3 numbers)", ""]
    for (dataset, split), frame in blocks:
        metric, group = primary_metric(frame), primary_group(frame)
        frame = frame[(frame["metric"] == metric) & (frame["group"] == group)]
        cells = aggregate(frame, CELL_KEYS)
        scale = ref.display_scale(str(cells["metric_id"].iloc[0]), str(cells["signature"].iloc[0]))
        sizes = sorted({int(s) for s in cells["train_size"]})
        decimals = decimals_for(v * scale for v in cells["mean"])
        lb = lower_is_better(cells.iloc[0].to_dict())
        out += [(f"### {dataset_name(dataset)} ({split}): {ref.display_name(metric)}{' ↓' if lb else ''}"
                f"{' ' + group if group != 'all' else ''}, mean ± std over subsets × seeds"), ""]
        if scale != 1.0:
            out += [f"Scale: stored in [0, 1], shown ×{scale:g} (the paper's scale).", ""]
        index = {(r["model"], r["row_label"], int(r["train_size"])): r for r in cells.to_dict("records")}
        rows = []
        for model, row_label, _ in _row_order(cells):
            rows.append([row_label, model, *[fmt_cell(index.get((model, row_label, s)), scale, decimals, None)
                                             for s in sizes]])
        out += table(["method", "model", *[f"{s} examples" for s in sizes]], rows, numeric_from=2) + [""]
    return out


# ----------------------------------------------------------------------------- efficiency


COST_COLUMNS: Sequence[tuple[str, str, int]] = (
    ("train_time_s", "train time (s)", 1),
    ("step_time_median_s", "step time (s, median)", 4),
    ("tokens_per_s", "tokens/s", 0),
    ("memory_above_model_mb", "memory above model (MB)", 0),
    ("peak_memory_mb", "process peak (MB)", 0),
    ("decode_time_s", "decode time (s)", 1),
    ("train_other_cpu", "others' CPU, train", 2),
    ("decode_other_cpu", "others' CPU, decode", 2),
)
# The time columns each contention share speaks for (bench/contention.py).
CONTENDED_TIMES = {"train_other_cpu": ("train_time_s", "step_time_median_s", "tokens_per_s"),
                   "decode_other_cpu": ("decode_time_s",)}


def efficiency_table(runs: pd.DataFrame, *, table: TableWriter = md_table) -> list[str]:
    """Trained/stored parameters and measured costs per method (mean over its runs)."""
    done = runs[runs["status"] == "done"]
    if done.empty:
        return []
    out = ["## Efficiency", "",
           ("Parameters: share of the base model and count; trained includes training-only parts "
           "(prefix-tuning's MLP), stored is what is kept per task. Costs: mean over the method's runs "
           "(n); step time is the median step of each run. Memory above model: the peak memory training "
           "added on top of the loaded model (activations, gradients, optimizer state; CPU: peak RSS above "
           "the RSS before the first step, GPU: peak allocated above the allocation after loading); process "
           "peak: the whole process at that peak (model, tokenizer, libraries included; for comparison "
           "with older results). Others' CPU: the share of the machine's CPU that other processes used while "
           "the run trained / decoded (0: the run had the machine to itself; 0.5 on two cores: another "
           "process held one core throughout); -: not recorded (runs from before it was); \"(m of n runs)\": the "
           "mean over the m runs that recorded the figure."), ""]
    rows = []
    flagged = False
    keys = ["model", "row_label", "dataset", "train_size", "scenario"]
    for idx in group_indices(done, keys):
        g = done.loc[idx]
        first = g.iloc[0]
        base = _single(g["base_total"])
        line = [str(first["row_label"]), str(first["model"]), _data_text(first),
                fmt_params(_single(g["n_trained"]), base), fmt_params(_single(g["n_stored"]), base)]
        shared = {t for share, times in CONTENDED_TIMES.items()
                  if (v := _single(g[share])) is not None and v > CONTENDED for t in times}
        flagged |= bool(shared)
        for col, _, dec in COST_COLUMNS:
            v = _single(g[col])
            cell = "-" if v is None else f"{v:,.{dec}f}" + (" †" if col in shared else "")
            measured = int(pd.to_numeric(g[col], errors="coerce").notna().sum())
            if v is not None and measured < len(g):
                cell += f" ({measured} of {len(g)} runs)"  # the others predate this column
            line.append(cell)
        line.append(str(len(g)))
        rows.append(line)
    headers = ["method", "model", "data", "trained", "stored", *[h for _, h, _ in COST_COLUMNS], "n"]
    out += table(headers, rows, numeric_from=3) + ["", compute_line(done), ""]
    out += patience_note(done, table=table)
    if flagged:
        out += [(f"†: measured while other processes used more than {CONTENDED:.0%} of the machine's CPU (mean "
                 "over the row's runs): the time is inflated and not comparable with unmarked rows."), ""]
    return out


def patience_note(done: pd.DataFrame, *, table: TableWriter = md_table) -> list[str]:
    """Which runs used train.patience (early stopping that ends training), and where they stopped:
    their training time is not that of the full step budget."""
    from pathlib import Path

    from bench import store

    rows = []
    for r in done.to_dict("records"):
        folder = Path(r["path"])
        train = (store.read_json(folder / "spec.json") or {}).get("spec", {}).get("train", {})
        if train.get("patience") is None:
            continue
        meta = store.read_meta(folder) or {}
        t = meta.get("train") or {}
        planned, ran = t.get("steps"), len(t.get("losses") or [])
        stopped = t.get("stopped_at") or (ran if planned and 0 < ran < planned else None)
        rows.append([str(r["row_label"]), _data_text(r), str(train["patience"]),
                     f"{stopped} of {planned}" if stopped else f"all {planned}", str(t.get("best_step", "-"))])
    if not rows:
        return []
    return [(f"Runs with train.patience ({len(rows)}): training stopped after that many dev-loss evaluations "
             "without a new best; the other runs trained every scheduled step and kept their best dev-loss state."),
            "", *table(["method", "data", "patience", "steps trained", "best step"], rows, numeric_from=2), ""]


def compute_line(done: pd.DataFrame) -> str:
    """The machine time the finished runs took, summed: what a suite costs to reproduce."""
    train = pd.to_numeric(done["train_time_s"], errors="coerce")
    decode = pd.to_numeric(done["decode_time_s"], errors="coerce")
    unknown = [f"{int(col.isna().sum())} without a recorded {what} time" for col, what in
               ((train, "training"), (decode, "decode")) if col.isna().any()]
    return (f"Compute: the {len(done)} finished run(s) took {_duration(train.sum() + decode.sum())} of "
            f"wall-clock time ({_duration(train.sum())} training, {_duration(decode.sum())} decoding, summed "
            "over runs; model loading and scoring not counted"
            + (f"; {', '.join(unknown)}, not counted" if unknown else "") + ").")


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _data_text(run: Mapping[str, Any]) -> str:
    """'E2E', 'E2E, 100 examples', 'XSUM, news_to_sports'."""
    parts = [dataset_name(str(run["dataset"]))]
    if _size_text(run["train_size"]) != "full":
        parts.append(f"{_size_text(run['train_size'])} examples")
    if _none(run.get("scenario")):
        parts.append(str(run["scenario"]))
    return ", ".join(parts)


# ----------------------------------------------------------------------------- honesty lists


def _size_text(size: Any) -> str:
    return "full" if size is None or (isinstance(size, float) and math.isnan(size)) else str(int(size))


def failed_and_missing(failed: pd.DataFrame, missing: pd.DataFrame, unlisted: int) -> list[str]:
    out: list[str] = []
    if not failed.empty:
        out += ["## Failed runs", ""]
        rows = [[str(r["method_label"]), str(r["model"]), dataset_name(str(r["dataset"])), _size_text(r["train_size"]),
                 str(r["subset"]), str(r["seed"]), str(r["stage"]), str(r["error"]), f"`{r['train_key']}`"]
                for r in failed.to_dict("records")]
        out += md_table(["method", "model", "dataset", "train size", "subset", "seed", "stage", "error", "run"],
                        rows, numeric_from=99) + [""]
    if not missing.empty:
        out += ["## Missing runs", ""]
        rows = [[str(r["method_label"]), str(r["model"]), dataset_name(str(r["dataset"])), _size_text(r["train_size"]),
                 str(r["subset"]), str(r["seed"]), str(r["reason"]), f"`{r['train_key']}`"]
                for r in missing.to_dict("records")]
        out += md_table(["method", "model", "dataset", "train size", "subset", "seed", "reason", "run"],
                        rows, numeric_from=99) + [""]
    if unlisted:
        out += [(f"{unlisted} stored run(s) carry this suite's name but are not part of its current expansion "
                "(older versions or settings); they are not shown."), ""]
    return out


def signatures(scores: pd.DataFrame) -> list[str]:
    """Each metric's signature once: every setting that changes its number."""
    if scores.empty:
        return []
    sig = scores[["metric", "metric_id", "metric_version", "signature"]].astype(str).drop_duplicates()
    sig = sig.sort_values(["metric", "metric_id", "metric_version", "signature"],
                          key=lambda s: s.map(lambda v: ref.metric_sort_key(v)) if s.name == "metric" else s)
    out = ["## Metric signatures", ""]
    for i, r in enumerate(sig.to_dict("records"), 1):
        out.append(f"{i}. {ref.display_name(r['metric'])} (`{r['metric_id']}` v{r['metric_version']}): `{r['signature']}`")
    return out + [""]


def provenance(runs: pd.DataFrame) -> list[str]:
    """Where the numbers came from: code version, package versions, hardware, with run counts
    (finished runs only: a running or failed run has no numbers in the report, and a resumed
    one records the code of its latest attempt)."""
    if not runs.empty and "status" in runs:
        runs = runs[runs["status"] == "done"]
    if runs.empty:
        return []
    combos = Counter(describe_provenance(p or {}) for p in runs["provenance"])  # insertion order: first seen first
    out = ["## Provenance", ""]
    for text, n in combos.items():
        out.append(f"- {n} run(s): {text}")
    return out + [""]


def describe_provenance(p: Mapping[str, Any]) -> str:
    git = p.get("git") or {}
    sha = git.get("sha")
    code = f"git {sha[:12]}{' (dirty)' if git.get('dirty') else ''}" if sha else "git unknown"
    versions = p.get("versions") or {}
    vers = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v)
    hw = p.get("hardware") or {}
    hardware = ", ".join(str(x) for x in (
        hw.get("gpu") or hw.get("cpu"), f"{hw['cpu_count']} CPUs" if hw.get("cpu_count") else None,
        f"device {hw['device']}" if hw.get("device") else None, hw.get("platform")) if x)
    return f"{code}; {vers or 'versions unknown'}; {hardware or 'hardware unknown'}"
