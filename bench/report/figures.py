"""The paper's figures from cached results: Figure 3 (metric against training size, prefix vs
fine-tuning, mean and 95% interval over subsets x seeds), Figure 4 (metric against prefix
length), Figure 5 (metric per initialization word), and for any suite a score-against-
trainable-parameters plot (log x, one point per method).

Each builder returns a ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot, no global
state), so tests inspect axes and labels before anything is saved; ``build_figures`` returns
them with a file stem and a caption naming the paper's setting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report import reference as ref
from bench.report.data import ResultSet, aggregate, group_indices
from bench.report.tables import (
    CELL_KEYS,
    dataset_name,
    lower_is_better,
    primary_group,
    primary_metric,
)

# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30; beyond, the next entries are
# interpolated and 1.96 is the limit (scipy is not a dependency for one table of constants).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
_T975_TAIL = ((40, 2.021), (60, 2.000), (120, 1.980))

PAPER_FIG3 = ("Paper Figure 3: GPT-2 medium (BART-large for XSUM), low-data training sizes 50 / 100 / 200 / 500, "
              "5 sampled subsets x 2 seeds per point, prefix initialised with \"table-to-text:\" "
              "(\"summarize\" for XSUM); prefix-tuning vs fine-tuning")
PAPER_FIG4 = ("Paper Figure 4: prefix length {1, 5, 10, 20, 40} for table-to-text and "
              "{1, 10, 20, 50, 80, 100, 200, 300} for XSUM; the score rises up to ~10 / ~200, then dips slightly")
PAPER_FIG5 = ("Paper Figure 5: E2E low-data, 100 training examples, prefix initialised randomly or from the "
              "activations of real words (\"table-to-text:\", \"summarize\", \"elephant\", \"banana\", \"divide\", "
              "\"keep\", \"active\", \"beautiful\")")
PAPER_PARAMS = ("No paper figure; the paper states the budgets in Table 2 (prefix 0.1%, adapters 0.1% / 3%, "
                "FT-top2 ~7%, fine-tuning 100% of GPT-2 medium)")


def t_quantile(df: int) -> float:
    """t(0.975, df): the half-width factor of a two-sided 95% interval."""
    if df < 1:
        return float("nan")
    if df <= len(_T975):
        return _T975[df - 1]
    prev_df, prev_t = len(_T975), _T975[-1]
    for d, t in _T975_TAIL:
        if df <= d:
            return prev_t + (t - prev_t) * (df - prev_df) / (d - prev_df)
        prev_df, prev_t = d, t
    return max(1.96, prev_t - (prev_t - 1.96) * min(1.0, (df - prev_df) / 1000))


def interval95(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the 95% t-interval of the mean; a single value has no interval (NaN bounds)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class ReportFigure:
    stem: str  # file name part: reports/<suite>_<stem>.png
    figure: Figure
    caption: str


def _figure(width: float = 6.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # Agg, whatever backend pyplot would pick
    return fig


def _metric_label(metric: str, metric_id: str, signature: str, lower_better: bool) -> str:
    scale = ref.display_scale(metric_id, signature)
    return ref.display_name(metric) + (f" (×{scale:g})" if scale != 1.0 else "") + (" ↓" if lower_better else "")


# ----------------------------------------------------------------------------- builders


def params_figure(points: pd.DataFrame, *, metric_label: str, title: str) -> Figure:
    """Score against trained parameters (log x), one point per method; ``points`` has
    row_label, n_trained, mean, std, n (already on the display scale)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for r in points.itertuples(index=False):
        yerr = r.std if r.n > 1 and not math.isnan(r.std) else None
        ax.errorbar([r.n_trained], [r.mean], yerr=yerr, fmt="o", capsize=3, label=r.row_label)
        ax.annotate(r.row_label, (r.n_trained, r.mean), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("trained parameters (log scale)")
    ax.set_ylabel(metric_label)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def _series_plot(series: pd.DataFrame, *, x: str, xlabel: str, metric_label: str, title: str,
                 log_x: bool = False) -> Figure:
    """Lines of mean with a 95% band over runs; ``series`` has label, x, values (display scale)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for label, g in series.groupby("label", sort=False):
        g = g.sort_values(x)
        stats = [interval95(v) for v in g["values"]]
        xs = list(g[x])
        ax.plot(xs, [s[0] for s in stats], marker="o", label=str(label))
        lows, highs = [s[1] for s in stats], [s[2] for s in stats]
        if any(not math.isnan(v) for v in lows):
            ax.fill_between(xs, lows, highs, alpha=0.2)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(series[x])))
        ax.set_xticks([], minor=True)  # only the sizes that were run get a tick
        ax.set_xticklabels([str(int(v)) for v in sorted(set(series[x]))])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric_label)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def low_data_figure(series: pd.DataFrame, *, metric_label: str, title: str) -> Figure:
    """Figure 3: metric against training size (log x), one line per method."""
    return _series_plot(series, x="train_size", xlabel="training examples", metric_label=metric_label,
                        title=title, log_x=True)


def length_figure(series: pd.DataFrame, *, metric_label: str, title: str) -> Figure:
    """Figure 4: metric against prefix length, one line per method."""
    fig = _series_plot(series, x="length", xlabel="prefix length", metric_label=metric_label, title=title)
    fig.axes[0].set_xticks(sorted(set(series["length"])))
    return fig


def init_figure(series: pd.DataFrame, *, metric_label: str, title: str) -> Figure:
    """Figure 5: metric per initialization (categorical x), mean with 95% interval and the runs."""
    fig = _figure(max(6.0, 0.9 * series["init"].nunique() + 2), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    labels = list(dict.fromkeys(series["label"]))
    inits = list(dict.fromkeys(series["init"]))
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        g = series[series["label"] == label]
        for r in g.itertuples(index=False):
            i = inits.index(r.init)
            mean, low, high = interval95(r.values)
            xpos = i - 0.4 + width * (j + 0.5)
            yerr = None if math.isnan(low) else [[mean - low], [high - mean]]
            ax.errorbar([xpos], [mean], yerr=yerr, fmt="o", capsize=3, color=f"C{j}",
                        label=str(label) if r.init == g["init"].iloc[0] else None)
            ax.scatter([xpos] * len(r.values), r.values, s=8, alpha=0.4, color=f"C{j}")
    ax.set_xticks(range(len(inits)))
    ax.set_xticklabels([str(v) for v in inits], rotation=30, ha="right")
    ax.set_xlabel("initialization")
    ax.set_ylabel(metric_label)
    ax.set_title(title)
    if len(labels) > 1:
        ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- from results


def _without_key(label: str, key: str) -> str:
    """A sweep variant's label without the ``key=value`` item that the x axis shows:
    ``prefix[length=5,init=banana]`` -> ``prefix[init=banana]`` for key ``length``. Other sweep
    items and a setting suffix ``⟨id⟩`` stay, so distinct settings stay distinct lines."""
    def strip(m: re.Match[str]) -> str:
        items = [i for i in m.group(1).split(",") if not i.strip().startswith(f"{key}=")]
        return f"[{','.join(items)}]" if items else ""

    return re.sub(r"\[([^\]]*)\]", strip, str(label))


def _line_labels(sel: pd.DataFrame, key: str) -> pd.Series:
    """Line names: the label without the x-axis key, plus the training size / scenario where
    those vary (a line must never average runs trained on different data)."""
    labels = sel["row_label"].map(lambda s: _without_key(s, key))
    sizes = sel["train_size"].map(lambda s: "full" if s is None or (isinstance(s, float) and math.isnan(s))
                                  else str(int(s)))
    if sizes.nunique() > 1:
        labels = labels + ", n=" + sizes
    scen = sel["scenario"].fillna("")
    if scen.nunique() > 1:
        labels = labels + scen.map(lambda s: f", {s}" if s else "")
    return labels


def _primary(frame: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    metric, group = primary_metric(frame), primary_group(frame)
    sel = frame[(frame["metric"] == metric) & (frame["group"] == group)]
    first = sel.iloc[0]
    return sel, metric, _metric_label(metric, str(first["metric_id"]), str(first["signature"]), lower_is_better(first.to_dict()))


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop cells whose runs carry different metric versions (they are never averaged)."""
    keep: list[object] = []
    for idx in group_indices(frame, ["row_label", "dataset", "split", "group", "metric", "train_size", "scenario"]):
        g = frame.loc[idx]
        if len(g[["metric_version", "signature"]].astype(str).drop_duplicates()) == 1:
            keep.extend(idx)
    return frame.loc[keep]


def _where(frame: pd.DataFrame) -> str:
    models = ", ".join(sorted(frame["model"].astype(str).unique()))
    return f"{models}, {dataset_name(str(frame['dataset'].iloc[0]))} {frame['split'].iloc[0]}"


def build_figures(rs: ResultSet) -> list[ReportFigure]:
    """Every figure the results support (at least the parameters plot when any metric exists)."""
    scores = _comparable(rs.scores)
    if scores.empty:
        return []
    out: list[ReportFigure] = []
    for (dataset, split), frame in scores.groupby(["dataset", "split"], sort=False):
        out += _params(frame, dataset, split)
        out += _low_data(frame, dataset, split)
        out += _lengths(frame, dataset, split)
        out += _inits(frame, dataset, split)
    return out


def _params(frame: pd.DataFrame, dataset: str, split: str) -> list[ReportFigure]:
    full = frame[frame["train_size"].isna() & frame["scenario"].isna()]
    if full.empty:
        # No full-data runs: the most common setting (largest training size first) stands in.
        sizes = pd.to_numeric(frame["train_size"], errors="coerce")
        full = frame[(sizes == sizes.max()) & frame["scenario"].isna()] if sizes.notna().any() else frame.iloc[0:0]
    if full.empty:
        return []
    sel, metric, label = _primary(full)
    scale = ref.display_scale(str(sel["metric_id"].iloc[0]), str(sel["signature"].iloc[0]))
    cells = aggregate(sel, CELL_KEYS)
    cells = cells[cells["n_trained"].notna()]
    # evaluation-only rows (method none / peft) train nothing: no place on a log axis
    untrained = sorted(cells.loc[cells["n_trained"] <= 0, "row_label"].astype(str))
    cells = cells[cells["n_trained"] > 0]
    if cells.empty:
        return []
    points = pd.DataFrame({
        "row_label": cells["row_label"], "n_trained": cells["n_trained"].astype(float),
        "mean": cells["mean"] * scale, "std": cells["std"] * scale, "n": cells["n"],
    })
    size = sel["train_size"].iloc[0]
    setting = "full training split" if size is None or (isinstance(size, float) and math.isnan(size)) \
        else f"{int(size)} training examples"
    title = f"{dataset_name(dataset)} {split}: {ref.display_name(metric)} vs trained parameters"
    fig = params_figure(points, metric_label=label, title=title)
    caption = (f"{PAPER_PARAMS}. Here: {_where(sel)}, {setting}; {label}; one point per method "
               "(mean over its runs, bars: ± 1 std where n > 1)"
               + (f"; not shown, nothing trained: {', '.join(untrained)}" if untrained else "") + ".")
    return [ReportFigure(f"params_{dataset}_{split}", fig, caption)]


def _series(sel: pd.DataFrame, x: str, scale: float) -> pd.DataFrame:
    rows = []
    keys = ["_label", x]
    for _, g in sel.groupby(keys, sort=False):
        rows.append({"label": g["_label"].iloc[0], x: g[x].iloc[0], "values": [v * scale for v in g["value"]]})
    return pd.DataFrame(rows)


def _low_data(frame: pd.DataFrame, dataset: str, split: str) -> list[ReportFigure]:
    part = frame[frame["train_size"].notna() & frame["scenario"].isna()]
    if part.empty or part["train_size"].nunique() < 2:
        return []
    sel, metric, label = _primary(part)
    scale = ref.display_scale(str(sel["metric_id"].iloc[0]), str(sel["signature"].iloc[0]))
    sel = sel.assign(_label=sel["row_label"], train_size=sel["train_size"].astype(int))
    series = _series(sel, "train_size", scale)
    fig = low_data_figure(series, metric_label=label,
                          title=f"{dataset_name(dataset)} {split}: low-data {ref.display_name(metric)}")
    n = sel.groupby(["_label", "train_size"]).size()
    caption = (f"{PAPER_FIG3}. Here: {_where(sel)}, sizes {', '.join(map(str, sorted(sel['train_size'].unique())))}, "
               f"{n.min()}-{n.max()} runs per point (subsets x seeds); line: mean, band: 95% t-interval.")
    return [ReportFigure(f"fig3_{dataset}_{split}", fig, caption)]


def _lengths(frame: pd.DataFrame, dataset: str, split: str) -> list[ReportFigure]:
    part = frame[frame["length"].notna()]
    if part.empty:
        return []
    sel, metric, label = _primary(part)
    # One line per method label (sweep suffix removed) and training data.
    sel = sel.assign(_label=_line_labels(sel, "length"), length=sel["length"].astype(int))
    sel = sel[sel.groupby("_label")["length"].transform("nunique") >= 2]
    if sel.empty:
        return []
    sel = sel.assign(_label=_line_labels(sel, "length"))  # drop suffixes that no longer vary
    scale = ref.display_scale(str(sel["metric_id"].iloc[0]), str(sel["signature"].iloc[0]))
    series = _series(sel, "length", scale)
    fig = length_figure(series, metric_label=label,
                        title=f"{dataset_name(dataset)} {split}: {ref.display_name(metric)} vs prefix length")
    caption = (f"{PAPER_FIG4}. Here: {_where(sel)}, lengths {', '.join(map(str, sorted(sel['length'].unique())))}; "
               "line: mean over runs, band: 95% t-interval where there are several.")
    return [ReportFigure(f"fig4_{dataset}_{split}", fig, caption)]


def _inits(frame: pd.DataFrame, dataset: str, split: str) -> list[ReportFigure]:
    part = frame[frame["init"].notna()]
    if part.empty:
        return []
    sel, metric, label = _primary(part)
    sel = sel.assign(_label=_line_labels(sel, "init"), init=sel["init"].astype(str))
    sel = sel[sel.groupby("_label")["init"].transform("nunique") >= 2]
    if sel.empty:
        return []
    sel = sel.assign(_label=_line_labels(sel, "init"))  # drop suffixes that no longer vary
    scale = ref.display_scale(str(sel["metric_id"].iloc[0]), str(sel["signature"].iloc[0]))
    series = _series(sel, "init", scale)
    fig = init_figure(series, metric_label=label,
                      title=f"{dataset_name(dataset)} {split}: {ref.display_name(metric)} per initialization")
    sizes = sorted({"full" if s is None or (isinstance(s, float) and math.isnan(s)) else str(int(s))
                    for s in sel["train_size"]})
    caption = (f"{PAPER_FIG5}. Here: {_where(sel)}, training size {', '.join(sizes)}; "
               "dot: mean, bars: 95% t-interval over subsets x seeds, small dots: the runs.")
    return [ReportFigure(f"fig5_{dataset}_{split}", fig, caption)]
