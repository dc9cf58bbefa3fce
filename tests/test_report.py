"""`bench report`: golden markdown renders of small results trees written directly with the
store (no training), and figures checked as matplotlib objects and as PNG files."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench import store
from bench.identity import digest
from bench.report import reference
from bench.report.claims import claims_report
from bench.report.data import collect_all, collect_suite
from bench.report.figures import build_figures, interval95, t_quantile
from bench.report.render import render_markdown, report

GOLDEN = Path(__file__).parent / "golden"
# UPDATE_GOLDEN=1 rewrites the golden files (then review the diff before committing).
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

E2E = {"bleu": "e2e_bleu", "nist": "e2e_nist", "meteor": "e2e_meteor", "rouge_l": "e2e_rouge_l",
       "cider": "e2e_cider"}
WEBNLG = {"bleu": "webnlg_bleu", "meteor": "webnlg_meteor", "ter": "webnlg_ter"}
XSUM = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL"}
LOWER_BETTER = {"ter"}
# What the real metrics write in their signatures: multi-bleu BLEU and rouge-score ROUGE store x100.
SCALE_SIG = {"webnlg_bleu": "scale:100", "rouge1": "scale:100", "rouge2": "scale:100", "rougeL": "scale:100"}

PROVENANCE = {
    "git": {"sha": "0123456789abcdef0123", "dirty": False},
    "versions": {"python": "3.12.3", "torch": "2.13.0", "transformers": "5.24.0"},
    "hardware": {"cpu": "x86_64", "cpu_count": 2, "device": "cpu", "platform": "Linux-test"},
}


def write_run(
    results: Path,
    *,
    label: str,
    method: str,
    scores: Mapping[tuple[str, str, str], float],
    suite: str = "golden",
    model: str = "gpt2-medium",
    dataset: str = "e2e",
    columns: Mapping[str, str] = E2E,
    train_size: int | None = None,
    subset: int = 0,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    status: str = "done",
    params: tuple[int, int, int] = (1000, 500, 1_000_000),
    method_version: str = "1",
    metric_version: str = "1",
    train_filter: Mapping[str, list[str]] | None = None,
    eval_filter: Mapping[str, list[str]] | None = None,
    tolerances: Mapping[str, float] | None = None,
    lr: float = 5e-5,
    error: str | None = None,
    cost: Mapping[str, float | None] | None = None,
) -> str:
    """One run folder as the runner leaves it: spec.json, meta.json and metrics.parquet.
    ``scores`` maps (split, group, metric column) to the stored value."""
    data = {
        "name": dataset, "version": "1", "options": {}, "train_split": "train",
        "eval_splits": sorted({s for s, _, _ in scores}) or ["test"], "train_size": train_size,
        "subset": subset, "dev_fraction": 0.3, "nested_subsets": False,
        "train_filter": dict(train_filter or {}), "eval_filter": dict(eval_filter or {}),
        "max_eval_sources": None, "metrics": dict(columns),
    }
    metric_versions = {mid: metric_version for mid in columns.values()}
    spec = {
        "suite": suite, "model": model, "model_fingerprint": model, "method": method,
        "method_label": label, "method_version": method_version, "method_config": dict(config or {}),
        "data": data, "seed": seed, "train": {"lr": lr, "epochs": 5}, "decode": {"beam_size": 5},
        "metric_versions": metric_versions, "tolerances": dict(tolerances or {}),
    }
    key = digest({k: v for k, v in spec.items() if k != "tolerances"})
    spec |= {"train_key": key, "decode_key": key + "d", "score_key": key + "s"}
    folder = store.run_dir(results, key)
    folder.mkdir(parents=True)
    store.write_json(folder / "spec.json", {"spec": spec})
    store.write_json(folder / "meta.json", {
        "status": status, "stage": "done" if status == "done" else "train", "error": error,
        "params": {"trained": params[0], "stored": params[1], "base_total": params[2]},
        "cost": {"train_time_s": 12.5, "step_time_median_s": 0.125, "tokens_per_s": 2048.0,
                 "memory_above_model_mb": 96.0, "peak_memory_mb": 512.0, "decode_time_s": 3.25, **(cost or {})},
        "provenance": PROVENANCE,
    })
    if status == "done":
        rows = [{
            "score_key": spec["score_key"], "decode_key": spec["decode_key"], "split": split, "group": group,
            "metric": metric, "metric_id": columns[metric], "value": float(value), "ci_low": None, "ci_high": None,
            "n": 10, "signature": f"{columns[metric]}|{SCALE_SIG.get(columns[metric], 'scale:1')}|v{metric_version}",
            "metric_version": metric_version,
            "higher_is_better": metric not in LOWER_BETTER,
        } for (split, group, metric), value in scores.items()]
        store.write_parquet(folder / "metrics.parquet", pd.DataFrame(rows))
    return key


def write_spec_run(results: Path, spec: Any, scores: Mapping[tuple[str, str, str], float], *, status: str = "done",
                   score_key: str | None = None, metric_version: str = "1", error: str | None = None,
                   params: tuple[int, int, int] = (1000, 500, 1_000_000)) -> Path:
    """A run folder for a RunSpec of a real suite (as the runner writes it), with given scores."""
    folder = store.run_dir(results, spec.train_key)
    folder.mkdir(parents=True)
    store.write_json(folder / "spec.json", {"spec": spec.to_json()})
    store.write_json(folder / "meta.json", {
        "status": status, "stage": "done" if status == "done" else "decode", "error": error,
        "params": {"trained": params[0], "stored": params[1], "base_total": params[2]},
        "cost": {"train_time_s": 1.0}, "provenance": PROVENANCE,
    })
    if status == "done":
        columns = dict(spec.data.metrics)
        store.write_parquet(folder / "metrics.parquet", pd.DataFrame([{
            "score_key": score_key or spec.score_key, "decode_key": spec.decode_key, "split": split, "group": group,
            "metric": metric, "metric_id": columns[metric], "value": float(value), "ci_low": None, "ci_high": None,
            "n": 8, "signature": f"{columns[metric]}|v{metric_version}", "metric_version": metric_version,
            "higher_is_better": metric not in LOWER_BETTER,
        } for (split, group, metric), value in scores.items()]))
    return folder


SUITE_YAML = """
name: mini
model: tiny-gpt2
seeds: [0, 1]
train: {max_steps: 2}
datasets:
  - name: synthetic_e2e
    eval_splits: [test]
methods:
  - {label: finetune, method: full}
  - {label: prefix, method: prefix, config: {length: 2, mlp_width: 8}}
tolerances: {bleu: 0.01}
"""


def mini_suite(tmp_path: Path) -> tuple[Path, list[Any]]:
    from bench.suite import expand, load_suite

    path = tmp_path / "mini.yaml"
    path.write_text(SUITE_YAML, encoding="utf-8")
    return path, expand(load_suite(path))


def e2e_scores(bleu: float, split: str = "test") -> dict[tuple[str, str, str], float]:
    """Plausible E2E values in our storage scale (BLEU/METEOR/ROUGE-L in [0, 1])."""
    return {(split, "all", "bleu"): bleu, (split, "all", "nist"): 8.0 + bleu, (split, "all", "meteor"): 0.45,
            (split, "all", "rouge_l"): 0.7 + bleu / 100, (split, "all", "cider"): 2.4}


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"golden file {path} was missing and has been written; review it and rerun")
    assert text == path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- trees


def table2_tree(results: Path) -> None:
    """GPT-2 medium: E2E with 2 seeds for prefix (mean ± std), WebNLG S/U/A with TER, a failed
    run, and one label trained with two settings (must become two rows)."""
    base = 354_823_168
    write_run(results, label="finetune", method="full", scores=e2e_scores(0.688), params=(base, base, base))
    write_run(results, label="prefix_0.1pct", method="prefix", scores=e2e_scores(0.700), seed=0,
              params=(25_700_000, 245_760, base), config={"length": 5})
    write_run(results, label="prefix_0.1pct", method="prefix", scores=e2e_scores(0.706), seed=1,
              params=(25_700_000, 245_760, base), config={"length": 5})
    write_run(results, label="adapter_0.1pct", method="adapter", scores={}, status="failed",
              error="CUDA out of memory", params=(368_784, 368_784, base))
    web = {(("test", g, m)): v for g, vals in {"seen": (0.6, 0.44, 0.35), "unseen": (0.45, 0.37, 0.5),
                                               "all": (0.55, 0.41, 0.42)}.items()
           for m, v in zip(("bleu", "meteor", "ter"), (vals[0] * 100, vals[1], vals[2]))}
    write_run(results, label="prefix_0.1pct", method="prefix", dataset="webnlg", columns=WEBNLG, scores=web,
              params=(25_700_000, 245_760, base), config={"length": 5})
    write_run(results, label="lora", method="lora", scores=e2e_scores(0.65), lr=1e-4, params=(4096, 4096, base))
    write_run(results, label="lora", method="lora", scores=e2e_scores(0.60), lr=1e-3, params=(4096, 4096, base))


def quickstart_tree(results: Path) -> None:
    """The quickstart setting: smollm2-135m on synthetic E2E, where no paper value applies."""
    base = 134_515_008
    for label, method, bleu, params in (
        ("finetune", "full", 0.41, (base, base, base)),
        ("prefix", "prefix", 0.38, (1_200_000, 46_080, base)),
        ("lora", "lora", 0.36, (460_800, 460_800, base)),
    ):
        write_run(results, label=label, method=method, model="smollm2-135m", dataset="synthetic_e2e",
                  scores=e2e_scores(bleu), params=params, suite="quickstart")


def ablation_tree(results: Path) -> None:
    """Figures 3-5 and Tables 3-5: low-data sizes x subsets x seeds, a length sweep, an
    initialization sweep, embedding-only / infix rows, XSUM full and extrapolation."""
    base = 354_823_168
    for size, gain in ((50, 0.0), (100, 0.05), (200, 0.08)):
        for subset in range(2):
            for seed in range(2):
                noise = 0.01 * (subset - seed)
                write_run(results, label="prefix", method="prefix", train_size=size, subset=subset, seed=seed,
                          scores=e2e_scores(0.40 + gain + noise), config={"length": 5, "init": "table-to-text:"},
                          params=(25_700_000, 245_760, base), suite="ablation")
                write_run(results, label="finetune", method="full", train_size=size, subset=subset, seed=seed,
                          scores=e2e_scores(0.36 + gain + noise), params=(base, base, base), suite="ablation")
    for length, bleu in ((1, 0.62), (5, 0.68), (10, 0.70)):
        write_run(results, label=f"prefix[length={length}]", method="prefix", scores=e2e_scores(bleu),
                  config={"length": length}, params=(25_000_000 + 49_152 * length, 49_152 * length, base),
                  suite="ablation")
    for length, bleu in ((1, 0.48), (10, 0.62)):
        write_run(results, label=f"emb_{length}", method="embedding_only", scores=e2e_scores(bleu),
                  config={"length": length}, params=(1024 * length, 1024 * length, base), suite="ablation")
        write_run(results, label=f"infix_{length}", method="infix", scores=e2e_scores(bleu + 0.19),
                  config={"length": length}, params=(25_000_000 + 49_152 * length, 49_152 * length, base),
                  suite="ablation")
    for init, bleu in (("random", 0.30), ("table-to-text:", 0.45), ("elephant", 0.41)):
        for seed in range(2):
            write_run(results, label=f"prefix[init={init}]", method="prefix", train_size=100, seed=seed,
                      scores=e2e_scores(bleu + 0.02 * seed, split="dev"), config={"length": 5, "init": init},
                      params=(25_700_000, 245_760, base), suite="ablation")
    bart = 406_291_456
    for label, method, r1 in (("finetune", "full", 45.14), ("prefix_2pct", "prefix", 43.0)):
        write_run(results, label=label, method=method, model="bart-large", dataset="xsum", columns=XSUM,
                  scores={("test", "all", "rouge1"): r1, ("test", "all", "rouge2"): r1 / 2,
                          ("test", "all", "rougeL"): r1 * 0.8}, params=(bart, bart, bart) if method == "full"
                  else (8_000_000, 7_000_000, bart), suite="ablation")
        write_run(results, label="prefix" if method == "prefix" else label, method=method, model="bart-large",
                  dataset="xsum", columns=XSUM, train_filter={"section": ["news"]}, eval_filter={"section": ["sport"]},
                  scores={("test", "all", "rouge1"): r1 - 6, ("test", "all", "rouge2"): r1 / 3,
                          ("test", "all", "rougeL"): r1 * 0.7}, suite="ablation")


# ----------------------------------------------------------------------------- golden renders


def test_table2_golden(tmp_path: Path) -> None:
    table2_tree(tmp_path)
    [rs] = collect_all(results=tmp_path)
    figures = build_figures(rs)
    text = render_markdown(rs, figures, figure_files=[f"golden_{f.stem}.png" for f in figures])
    assert_golden("report_table2.md", text)


def test_quickstart_golden(tmp_path: Path) -> None:
    quickstart_tree(tmp_path / "results")
    [out] = report(results=tmp_path / "results", out=tmp_path / "reports")
    assert out.markdown == tmp_path / "reports" / "quickstart.md"
    assert_golden("report_quickstart.md", out.markdown.read_text(encoding="utf-8"))
    assert out.figures and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in out.figures)


def test_ablation_golden(tmp_path: Path) -> None:
    ablation_tree(tmp_path)
    [rs] = collect_all(results=tmp_path)
    figures = build_figures(rs)
    text = render_markdown(rs, figures, figure_files=[f"ablation_{f.stem}.png" for f in figures])
    assert_golden("report_ablation.md", text)


# ----------------------------------------------------------------------------- figures


def test_figures_axes_and_pngs(tmp_path: Path) -> None:
    from PIL import Image

    ablation_tree(tmp_path / "results")
    [rs] = collect_all(results=tmp_path / "results")
    figs = {f.stem: f for f in build_figures(rs)}
    assert set(figs) == {"params_e2e_test", "params_xsum_test", "params_e2e_dev", "fig3_e2e_test", "fig4_e2e_test",
                         "fig5_e2e_dev"}
    params = figs["params_e2e_test"].figure.axes[0]
    assert params.get_xscale() == "log"
    assert params.get_xlabel() == "trained parameters (log scale)"
    assert params.get_ylabel() == "BLEU (×100)"
    fig3 = figs["fig3_e2e_test"].figure.axes[0]
    assert fig3.get_xlabel() == "training examples" and fig3.get_ylabel() == "BLEU (×100)"
    assert [t.get_text() for t in fig3.get_legend().get_texts()] == ["finetune", "prefix"]
    # The plotted means are the data's: prefix at 50 examples = mean of 0.40 +- 0.01 noise, x100.
    prefix_line = next(ln for ln in fig3.get_lines() if ln.get_label() == "prefix")
    assert list(prefix_line.get_xdata()) == [50, 100, 200]
    assert prefix_line.get_ydata()[0] == pytest.approx(40.0)
    assert "Paper Figure 3" in figs["fig3_e2e_test"].caption and "4-4 runs per point" in figs["fig3_e2e_test"].caption
    fig4 = figs["fig4_e2e_test"].figure.axes[0]
    assert fig4.get_xlabel() == "prefix length"
    assert list(fig4.get_lines()[0].get_xdata()) == [1, 5, 10]
    fig5 = figs["fig5_e2e_dev"].figure.axes[0]
    assert fig5.get_xlabel() == "initialization"
    assert [t.get_text() for t in fig5.get_xticklabels()] == ["elephant", "random", "table-to-text:"]
    assert "Paper Figure 5" in figs["fig5_e2e_dev"].caption
    xsum = figs["params_xsum_test"].figure.axes[0]
    assert xsum.get_ylabel() == "ROUGE-1"  # rouge-score values are stored x100 already

    [out] = report(results=tmp_path / "results", out=tmp_path / "reports")
    # The claims section (bench/report/claims.py) adds its own Figure 3 panels: prefix and
    # fine-tuning over training sizes are present in this tree on the test split (the dev split
    # holds only the initialization sweep's prefix runs: no fine-tuning to compare, no panel).
    claim_figs = {f.stem for f in claims_report(rs.scores, rs.runs, rs.missing).figures}
    assert claim_figs == {"claim2_e2e_test"}
    assert {p.name for p in out.figures} == {f"ablation_{s}.png" for s in set(figs) | claim_figs}
    for path in out.figures:
        with Image.open(path) as im:
            im.verify()
            assert im.format == "PNG"
        assert f"]({path.name})" in out.markdown.read_text(encoding="utf-8")


def test_t_interval() -> None:
    assert t_quantile(1) == pytest.approx(12.706)
    assert t_quantile(9) == pytest.approx(2.262)
    assert 1.96 < t_quantile(50) < 2.021
    mean, _, high = interval95([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert math.isnan(interval95([5.0])[1])


# ----------------------------------------------------------------------------- honesty


def test_metric_versions_are_never_averaged(tmp_path: Path) -> None:
    write_run(tmp_path, label="prefix", method="prefix", scores=e2e_scores(0.5), seed=0, metric_version="1")
    write_run(tmp_path, label="prefix", method="prefix", scores=e2e_scores(0.7), seed=1, metric_version="2")
    [rs] = collect_all(results=tmp_path)
    text = render_markdown(rs, [], figure_files=[])
    assert "not comparable (metric versions 1, 2)" in text
    assert "60.00" not in text  # the mean of 0.5 and 0.7 (x100) must not appear
    assert build_figures(rs) == []  # nor be plotted


def test_method_versions_become_separate_rows(tmp_path: Path) -> None:
    write_run(tmp_path, label="prefix", method="prefix", scores=e2e_scores(0.5), method_version="1")
    write_run(tmp_path, label="prefix", method="prefix", scores=e2e_scores(0.7), method_version="2")
    [rs] = collect_all(results=tmp_path)
    text = render_markdown(rs, [], figure_files=[])
    assert text.count("| prefix ⟨") == 4  # two rows in Table 2, two in the efficiency table
    assert "(method_version differ)" in text


def test_reference_lookup() -> None:
    hit = reference.paper_value(model="gpt2-medium", method_label="prefix_0.1pct", dataset="webnlg", split="test",
                                group="unseen", metric="bleu")
    assert hit is not None and hit.value == 45.3 and hit.source == "acl2021_table2" and hit.second == 45.6
    assert reference.paper_value(model="gpt2-medium", method_label="prefix_0.1pct", dataset="e2e", split="dev",
                                 group="all", metric="bleu").source == "acl2021_table9"
    # WebNLG's "train seen, score unseen" preset is Table 2's U column.
    assert reference.paper_value(model="gpt2-medium", method_label="finetune", dataset="webnlg", split="test",
                                 group="all", metric="ter", scenario="seen_to_unseen").value == 0.78
    assert reference.paper_value(model="bart-large", method_label="prefix", dataset="xsum", split="test",
                                 group="all", metric="rouge2", scenario="within_news").value == 16.87
    assert reference.paper_value(model="smollm2-135m", method_label="prefix_0.1pct", dataset="e2e", split="test",
                                 group="all", metric="bleu") is None
    # The package's copy holds the same numbers as the project's reference table.
    shared = Path(__file__).resolve().parents[2] / "shared" / "paper_reference.csv"
    if shared.exists():
        pd.testing.assert_frame_equal(reference.load_reference(), pd.read_csv(shared))


def test_suite_report_lists_failed_and_missing(tmp_path: Path) -> None:
    path, specs = mini_suite(tmp_path)
    results = tmp_path / "results"
    ft0, ft1, px0, px1 = specs  # finetune seeds 0, 1; prefix seeds 0, 1
    write_spec_run(results, ft0, e2e_scores(0.30))
    write_spec_run(results, ft1, e2e_scores(0.32))
    write_spec_run(results, px0, {}, status="failed", error="RuntimeError: loss is NaN")
    # px1 was never run. A run of the same suite name from an older expansion is not shown:
    write_run(results, label="prefix", method="prefix", suite="mini", scores=e2e_scores(0.9))
    rs = collect_suite(suite=path, results=results)
    assert list(rs.missing["train_key"]) == [px1.train_key] and rs.unlisted == 1
    text = render_markdown(rs, [], figure_files=[])
    assert "Runs: 4 (2 done, 1 failed, 1 missing or incomplete)" in text
    assert "| finetune | tiny-gpt2 | 0.1% (1,000) | 0.05% (500) | 31.00 ± 1.41 (n=2) |" in text
    assert "loss is NaN" in text and px0.train_key in text
    assert f"not in the results cache (not run yet) | `{px1.train_key}`" in text
    assert "90.00" not in text and "1 stored run(s) carry this suite's name" in text
    # provenance: where the numbers came from, so the finished runs only (not the failed one)
    provenance = text.split("## Provenance", 1)[1].strip().splitlines()
    assert len(provenance) == 1 and provenance[0].startswith("- 2 run(s): ")


def test_suite_report_ignores_stale_score_keys(tmp_path: Path) -> None:
    path, specs = mini_suite(tmp_path)
    results = tmp_path / "results"
    write_spec_run(results, specs[0], e2e_scores(0.30), score_key="an-older-score-key")
    rs = collect_suite(suite=path, results=results)
    assert rs.scores.empty
    assert "not scored with this suite's metric versions" in " ".join(rs.missing["reason"])


def test_cli_report_without_suite(tmp_path: Path) -> None:
    from bench.cli import main

    quickstart_tree(tmp_path / "results")
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "quickstart.md").exists()
    assert main(["report", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2


def test_display_scale() -> None:
    # E2E script values in [0, 1] are shown x100 like the paper; multi-bleu's 0-100 as stored.
    assert reference.display_scale("e2e_bleu") == 100.0 and reference.display_scale("e2e_nist") == 1.0
    assert reference.display_scale("webnlg_bleu", "webnlg_bleu|tok:13a|scale:100|version:1") == 1.0
    # A metric that says it stores x100 is never scaled again.
    assert reference.display_scale("rouge1", "rouge1|stem:porter|scale:100|version:1") == 1.0
    assert reference.display_scale("e2e_rouge_l", "e2e_rouge_l|rouge-l(coco)|scale:100|version:1") == 1.0


def test_result_neutral_train_fields_are_not_settings() -> None:
    """Runs that differ only in how often they checkpointed computed the same thing: one setting,
    as they have one run key."""
    from bench.report.data import setting_of

    base = {"method": "prefix", "train": {"lr": 5e-5, "checkpoint_every": 0}, "data": {"name": "e2e", "subset": 0}}
    other = {**base, "train": {"lr": 5e-5, "checkpoint_every": 20}, "data": {"name": "e2e", "subset": 1}}
    assert setting_of(base) == setting_of(other)
    assert setting_of(base) != setting_of({**base, "train": {"lr": 1e-4, "checkpoint_every": 0}})
    # Fields added after a spec was stored count only away from their default (as in the key).
    newer = {**base, "train": {"lr": 5e-5, "checkpoint_every": 0, "precision": "fp32", "group_by_length": False}}
    assert setting_of(newer) == setting_of(base)
    assert setting_of({**newer, "train": {**newer["train"], "precision": "bf16"}}) != setting_of(base)


def test_efficiency_table_marks_times_measured_on_a_shared_machine(tmp_path: Path) -> None:
    """A run trained while other processes held the cores gets its train times marked (†), a
    run decoded alone does not; runs from before the share was recorded show '-'."""
    from bench.report.tables import efficiency_table

    results = tmp_path / "results"
    scores = {("test", "all", "bleu"): 0.5}
    write_run(results, label="prefix", method="prefix", scores=scores,
              cost={"train_other_cpu": 0.61, "decode_other_cpu": 0.02})
    write_run(results, label="finetune", method="full", scores=scores,
              cost={"train_other_cpu": 0.03, "decode_other_cpu": 0.04})
    write_run(results, label="adapter", method="adapter", scores=scores)
    lines = efficiency_table(store.load_runs(results).assign(row_label=lambda d: d["method_label"],
                                                              scenario=None))
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ") and "---" not in line}
    assert "12.5 †" in rows["prefix"] and "0.1250 †" in rows["prefix"] and "3.2 †" not in rows["prefix"]
    assert "0.61" in rows["prefix"] and "†" not in rows["finetune"]
    assert rows["adapter"].rstrip(" |").endswith("- | - | 1")
    assert any(line.startswith("†: measured while other processes used more than 25%") for line in lines)


def test_efficiency_table_says_how_many_runs_measured_the_share(tmp_path: Path) -> None:
    """A row mixing runs from before and after the share was recorded says so."""
    from bench.report.tables import efficiency_table

    results = tmp_path / "results"
    scores = {("test", "all", "bleu"): 0.5}
    write_run(results, label="prefix", method="prefix", scores=scores, seed=0, cost={"train_other_cpu": 0.02})
    write_run(results, label="prefix", method="prefix", scores=scores, seed=1, cost={"memory_above_model_mb": None})
    lines = efficiency_table(store.load_runs(results).assign(row_label=lambda d: d["method_label"], scenario=None))
    [row] = [line for line in lines if line.startswith("| prefix")]
    assert "0.02 (1 of 2 runs)" in row and "| 96 (1 of 2 runs) |" in row and row.rstrip(" |").endswith("| 2")


def test_efficiency_section_sums_the_compute_of_finished_runs(tmp_path: Path) -> None:
    """The machine time a suite took is summed over its finished runs; a run without a recorded
    decode time is said to be left out, not counted as zero silently."""
    from bench.report.tables import efficiency_table

    results = tmp_path / "results"
    scores = {("test", "all", "bleu"): 0.5}
    write_run(results, label="prefix", method="prefix", scores=scores, seed=0, cost={"train_time_s": 3600.0})
    write_run(results, label="prefix", method="prefix", scores=scores, seed=1,
              cost={"train_time_s": 1800.0, "decode_time_s": 1800.0})
    write_run(results, label="finetune", method="full", scores=scores, cost={"decode_time_s": None})
    write_run(results, label="adapter", method="adapter", scores=scores, status="failed", error="x")
    lines = efficiency_table(store.load_runs(results).assign(row_label=lambda d: d["method_label"], scenario=None))
    [line] = [x for x in lines if x.startswith("Compute:")]
    # 3600 + 1800 + 12.5 s training, 3.25 + 1800 s decoding
    assert line.startswith("Compute: the 3 finished run(s) took 2.00 h of wall-clock time (1.50 h training, 30.1 min "
                           "decoding")
    assert "1 without a recorded decode time, not counted" in line


def test_reference_line_is_scoped_to_the_tables_when_claims_show_paper_values() -> None:
    """The claims sections always print the paper's numbers; the head line must not deny that."""
    from bench.report.render import _reference_line
    from bench.report.tables import RefStats

    stats = RefStats(matched=0, cells=4, settings={("smollm2-135m", "webnlg")})
    plain = _reference_line(stats)
    scoped = _reference_line(stats, with_claims=True)
    assert plain.startswith("No paper value is shown:")
    assert scoped.startswith("In the layout tables below the claims, no paper value is shown")
    assert "claim sections give the paper's numbers" in scoped
    assert "smollm2-135m on webnlg" in scoped
