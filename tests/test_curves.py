"""Training curves in `bench report`: per dataset one PNG, a panel per method, runs light and
their mean bold, dev losses per evaluation, early-stopping steps marked; no figure where no
loss is recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_report import e2e_scores, write_run  # the shared results-tree writers

from bench import store
from bench.report.curves import curve_figures, smooth, window_for
from bench.report.data import collect_all
from bench.report.render import report


def add_losses(results: Path, key: str, losses: list[float], dev: list[tuple[int, float]], best: int | None) -> None:
    folder = store.run_dir(results, key)
    meta = store.read_meta(folder)
    meta["train"] = {"steps": len(losses), "losses": losses, "dev_losses": dev, "best_step": best}
    store.write_json(folder / "meta.json", meta)


def curve_tree(results: Path) -> None:
    """Prefix: two seeds at 50 examples with dev losses and early stopping; fine-tuning: one
    run without dev losses; a bare-model run (no losses) and an old run without per-step losses."""
    steps = np.arange(1, 61)
    for seed in range(2):
        key = write_run(results, label="prefix", method="prefix", train_size=50, seed=seed,
                        scores=e2e_scores(0.4), suite="curves")
        losses = list(5.0 / np.sqrt(steps) + 0.1 * seed + 0.05 * np.sin(steps))
        add_losses(results, key, losses, [(20, 2.0 + seed), (40, 1.5 + seed), (60, 1.7 + seed)], 40)
    key = write_run(results, label="finetune", method="full", train_size=50, scores=e2e_scores(0.45), suite="curves")
    add_losses(results, key, list(4.0 / np.sqrt(steps)), [], None)
    key = write_run(results, label="zero_shot", method="none", train_size=50, scores=e2e_scores(0.1), suite="curves")
    add_losses(results, key, [], [], None)
    write_run(results, label="old", method="prefix", train_size=100, scores=e2e_scores(0.4), suite="curves")


def test_curve_figure_panels_means_and_early_stopping(tmp_path: Path) -> None:
    curve_tree(tmp_path)
    [rs] = collect_all(results=tmp_path)
    [fig] = curve_figures(rs)
    assert fig.stem == "curves_e2e" and "Training curves" in fig.caption
    panels = {ax.get_title(): ax for ax in fig.figure.axes}
    assert set(panels) == {"prefix", "finetune"}  # no losses recorded: no panel
    prefix = panels["prefix"]
    bold = [ln for ln in prefix.get_lines() if ln.get_linewidth() == 2.0]
    train_mean = next(ln for ln in bold if ln.get_label() == "train")
    dev_mean = next(ln for ln in bold if ln.get_label() == "dev")
    steps = np.arange(1, 61)
    raw_mean = 5.0 / np.sqrt(steps) + 0.05 + 0.05 * np.sin(steps)  # mean of the two seeds
    assert np.allclose(train_mean.get_ydata(), smooth(list(raw_mean), window_for(60)))
    assert list(dev_mean.get_xdata()) == [20, 40, 60] and list(dev_mean.get_ydata()) == [2.5, 2.0, 2.2]
    light = [ln for ln in prefix.get_lines() if ln.get_alpha() == 0.3]
    assert len(light) == 4  # two runs x (train, dev)
    stops = [ln for ln in prefix.get_lines() if ln.get_linestyle() == ":"]
    assert len(stops) == 2 and all(list(ln.get_xdata()) == [40.0, 40.0] for ln in stops)
    finetune = panels["finetune"]
    assert not [ln for ln in finetune.get_lines() if ln.get_linestyle() in (":", "--")]
    assert [ln.get_label() for ln in finetune.get_lines() if ln.get_linewidth() == 2.0] == ["train"]


def test_report_has_curves_only_where_losses_exist(tmp_path: Path) -> None:
    curve_tree(tmp_path / "results")
    [out] = report(results=tmp_path / "results", out=tmp_path / "reports")
    assert tmp_path / "reports" / "curves_curves_e2e.png" in out.figures
    assert "](curves_curves_e2e.png)" in out.markdown.read_text(encoding="utf-8")
    bare = tmp_path / "bare"
    write_run(bare, label="prefix", method="prefix", scores=e2e_scores(0.4), suite="nolosses")
    [out] = report(results=bare, out=tmp_path / "reports2")
    assert not [p for p in out.figures if "curves" in p.name]


@pytest.mark.parametrize("n,window", [(1, 1), (40, 2), (200, 10), (10_000, 100)])
def test_window(n: int, window: int) -> None:
    assert window_for(n) == window


def test_params_figure_leaves_out_untrained_rows(tmp_path: Path) -> None:
    from bench.report.figures import build_figures

    write_run(tmp_path, label="prefix", method="prefix", scores=e2e_scores(0.4), suite="p")
    write_run(tmp_path, label="zero_shot", method="none", scores=e2e_scores(0.1), params=(0, 0, 1_000_000), suite="p")
    [rs] = collect_all(results=tmp_path)
    [fig] = [f for f in build_figures(rs) if f.stem.startswith("params")]
    assert "not shown, nothing trained: zero_shot" in fig.caption
    assert [t.get_text() for t in fig.figure.axes[0].texts] == ["prefix"]
