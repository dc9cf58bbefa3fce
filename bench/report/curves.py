"""Training curves: per suite and dataset, one PNG with a panel per method.

Each panel shows the training loss per step (moving average; the raw mean faint) and the dev
loss at each evaluation (dashed, circles) of the method's runs; with several runs (seeds,
low-data subsets) each run is a light line and their mean is bold, one colour per training
size. A dotted vertical line marks each run's early-stopping step (its best dev loss). The
losses are those ``meta.json`` records (``train.losses``, ``train.dev_losses``,
``train.best_step``); runs that recorded none (evaluation-only methods, runs from before
per-step losses were kept) are left out, and a dataset without any loss gets no figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import store
from bench.report.data import ResultSet
from bench.report.figures import ReportFigure, _figure
from bench.report.tables import dataset_name

LOSS_NAMES = {"sequence_sum": "per-sequence sum of token losses", "token_mean": "mean token loss"}


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    return pd.Series(values, dtype=float).rolling(window, min_periods=1).mean().to_numpy()


def window_for(n_steps: int) -> int:
    """About 1/20 of the run, at least 1, at most 100 steps."""
    return max(1, min(100, n_steps // 20))


def _curves(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per done run with recorded losses: label, train size, losses, dev losses, best step."""
    rows = []
    for r in runs.itertuples(index=False):
        if r.status != "done":
            continue
        meta = store.read_meta(Path(r.path)) or {}
        train = meta.get("train") or {}
        losses = [float(x) for x in train.get("losses") or []]
        dev = [(int(s), float(v)) for s, v in train.get("dev_losses") or []]
        if not losses and not dev:
            continue
        spec = store.read_json(Path(r.path) / "spec.json")["spec"]
        rows.append({
            "label": str(getattr(r, "row_label", None) or r.method_label), "model": str(r.model),
            "dataset": str(r.dataset), "train_size": r.train_size, "losses": losses, "dev": dev,
            "best_step": train.get("best_step") if dev else None,
            "loss_kind": str((spec.get("train") or {}).get("loss", "")),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["label", "model", "dataset", "train_size", "losses", "dev", "best_step",
                                       "loss_kind"])


def _mean_curve(curves: Sequence[Sequence[float]]) -> np.ndarray:
    """Step-wise mean over runs, as long as the shortest run (all runs have every step)."""
    n = min(len(c) for c in curves)
    return np.mean(np.array([c[:n] for c in curves], dtype=float), axis=0)


def _mean_dev(devs: Sequence[Sequence[tuple[int, float]]]) -> tuple[list[int], list[float]]:
    """Mean dev loss at the evaluation steps every run has."""
    steps = sorted(set.intersection(*[{s for s, _ in d} for d in devs]))
    values = [float(np.mean([dict(d)[s] for d in devs])) for s in steps]
    return steps, values


def _size_name(size: Any) -> str:
    return "full data" if size is None or (isinstance(size, float) and math.isnan(size)) else f"{int(size)} examples"


def _panel(ax: Any, group: pd.DataFrame, colours: dict[str, Any]) -> int:
    """Draw one method's runs; returns the smoothing window used (the largest)."""
    widest = 1
    stopped = False
    for size, runs in group.groupby(group["train_size"].map(_size_name), sort=False):
        colour = colours[size]
        many = len(runs) > 1
        tag = f" ({size})" if len(colours) > 1 else ""
        trained = [list(x) for x in runs["losses"] if x]
        if trained:
            window = window_for(max(len(x) for x in trained))
            widest = max(widest, window)
            if many:
                for losses in trained:
                    ax.plot(np.arange(1, len(losses) + 1), smooth(losses, window), color=colour, lw=0.8, alpha=0.3)
            mean = _mean_curve(trained)
            steps = np.arange(1, len(mean) + 1)
            ax.plot(steps, mean, color=colour, lw=0.8, alpha=0.2)
            ax.plot(steps, smooth(mean, window), color=colour, lw=2.0, label=f"train{tag}")
        devs = [list(d) for d in runs["dev"] if d]
        if devs:
            if many:
                for d in devs:
                    ax.plot([s for s, _ in d], [v for _, v in d], color=colour, lw=0.8, ls="--", alpha=0.3)
            steps, values = _mean_dev(devs)
            ax.plot(steps, values, color=colour, lw=2.0, ls="--", marker="o", ms=4, label=f"dev{tag}")
        for best in runs["best_step"].dropna():
            ax.axvline(float(best), color=colour, ls=":", lw=1.2, alpha=0.8 if not many else 0.5,
                       label=None if stopped else "early stop")
            stopped = True
    return widest


def curve_figures(rs: ResultSet) -> list[ReportFigure]:
    """One figure per dataset of the suite that has recorded losses."""
    runs = rs.runs
    if runs.empty or "path" not in runs:
        return []
    curves = _curves(runs)
    out: list[ReportFigure] = []
    for dataset, frame in curves.groupby("dataset", sort=False):
        labels = list(dict.fromkeys(frame["label"]))
        cols = min(3, len(labels))
        rows = math.ceil(len(labels) / cols)
        fig = _figure(4.0 * cols, 3.2 * rows)
        sizes = list(dict.fromkeys(frame["train_size"].map(_size_name)))
        palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
        colours = {s: palette[i % len(palette)] for i, s in enumerate(sizes)}
        first = None
        window = 1
        for i, label in enumerate(labels, 1):
            ax = fig.add_subplot(rows, cols, i, sharey=first)
            first = first or ax
            window = max(window, _panel(ax, frame[frame["label"] == label], colours))
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        kinds = sorted(set(frame["loss_kind"]) - {""})
        first.set_ylabel("loss" + (f" ({LOSS_NAMES.get(kinds[0], kinds[0])})" if len(kinds) == 1 else ""))
        models = ", ".join(sorted(set(frame["model"])))
        fig.suptitle(f"Training curves: {models}, {dataset_name(str(dataset))}", fontsize=11)
        fig.tight_layout()
        n = len(frame)
        no_steps = int(sum(1 for x in frame["losses"] if not x))
        train_part = (f"training loss per step as a trailing moving average (window up to {window} steps; the "
                      "raw mean faint), " if no_steps < n else "")
        caption = (
            f"Training curves, {models} on {dataset_name(str(dataset))} ({n} run{'s' if n != 1 else ''}): "
            f"{train_part}dev loss at each evaluation dashed; with several runs per method (seeds, subsets) each "
            "run is a light line and their mean is bold; dotted vertical lines mark early-stopping steps (best dev "
            "loss)" + (f"; {no_steps} run(s) recorded no per-step training loss (trained before it was kept)"
                       if no_steps else "")
        )
        out.append(ReportFigure(f"curves_{dataset}", fig, caption))
    return out
