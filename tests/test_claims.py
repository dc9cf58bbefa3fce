"""The claims section of `bench report`: pooled paired bootstrap, verdict rules, Figure 3 layout,
and runs committed without weights (read by every results command, never retrained)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import E2E, write_run  # the shared results-tree writers

from bench import store
from bench.metrics.bootstrap import paired_bootstrap, pooled_paired_bootstrap
from bench.registry import METRICS
from bench.report.claims import claims_report
from bench.report.data import collect_all

REFS = [
    ["the eagle is a cheap pub near the river", "the eagle pub is cheap"],
    ["blue spice serves french food in the city centre", "blue spice is a french restaurant"],
    ["the mill is a family friendly coffee shop", "the mill coffee shop is family friendly"],
    ["zizzi is an expensive italian restaurant", "zizzi serves expensive italian food"],
    ["the wrestlers has a high customer rating", "the wrestlers is highly rated"],
    ["cotto is a chinese place near the bakers", "cotto serves chinese food near the bakers"],
] * 5  # 30 sources


def _predictions(folder: Path, hyps: list[str]) -> None:
    spec = store.read_json(folder / "spec.json")["spec"]
    store.write_parquet(folder / "predictions.parquet", pd.DataFrame({
        "decode_key": spec["decode_key"], "split": "test",
        "source_id": [f"s{i:03d}" for i in range(len(REFS))], "source": [f"mr {i}" for i in range(len(REFS))],
        "prediction": hyps, "references": REFS, "fields": ["{}"] * len(REFS),
    }))


def _run(results: Path, *, label: str, method: str, size: int, subset: int, good: bool, bleu: float, **kw) -> str:
    kw.setdefault("columns", {"bleu": E2E["bleu"], "rouge_l": E2E["rouge_l"]})
    scores = {("test", "all", m): bleu + 0.1 * i for i, m in enumerate(kw["columns"])}
    key = write_run(results, suite="claims", label=label, method=method, model="smollm2-135m", train_size=size,
                    subset=subset, scores=scores, **kw)
    # A good system copies the first reference; a bad one says the same thing for every source.
    rng = np.random.default_rng(subset * 1000 + size)
    hyps = [r[0] if good or rng.random() < 0.2 else "a place to eat food" for r in REFS]
    _predictions(store.run_dir(results, key), hyps)
    return key


def _low_data_tree(results: Path, *, prefix_wins: bool, sizes=(50, 100), subsets=2) -> None:
    for size in sizes:
        for subset in range(subsets):
            _run(results, label="prefix", method="prefix", size=size, subset=subset, good=prefix_wins,
                 bleu=0.6 if prefix_wins else 0.2, config={"length": 5, "init": "table-to-text:"})
            _run(results, label="finetune", method="full", size=size, subset=subset, good=not prefix_wins,
                 bleu=0.2 if prefix_wins else 0.6)


def _claims(results: Path):
    rs = collect_all(results=results)[0]
    return rs, claims_report(rs.scores, rs.runs, rs.missing)


def test_pooled_bootstrap_equals_koehn_for_one_pair() -> None:
    metric = METRICS.get("e2e_bleu")()
    hyp_a = ["a place to eat food"] * len(REFS)
    hyp_b = [r[0] for r in REFS]
    a = np.asarray(metric.stats(hyp_a, REFS), dtype=float)
    b = np.asarray(metric.stats(hyp_b, REFS), dtype=float)
    one = paired_bootstrap(metric, a, b, n_boot=200, seed=3)
    pooled = pooled_paired_bootstrap(metric, [(a, b)], n_boot=200, seed=3)
    assert one == pooled
    assert one.delta > 0 and one.delta_ci[0] > 0
    # Two identical pairs average to the same difference; a pair with B == A halves it.
    twice = pooled_paired_bootstrap(metric, [(a, b), (a, b)], n_boot=200, seed=3)
    assert twice.delta == pytest.approx(one.delta)
    half = pooled_paired_bootstrap(metric, [(a, b), (a, a)], n_boot=200, seed=3)
    assert half.delta == pytest.approx(one.delta / 2)
    with pytest.raises(ValueError, match="same examples"):
        pooled_paired_bootstrap(metric, [(a, b), (a[:5], b[:5])])


@pytest.mark.parametrize("prefix_wins, verdict", [(True, "reproduced"), (False, "not reproduced")])
def test_claim2_verdict_follows_the_paired_test(tmp_path: Path, prefix_wins: bool, verdict: str) -> None:
    _low_data_tree(tmp_path, prefix_wins=prefix_wins)
    _, report = _claims(tmp_path)
    text = "\n".join(report.lines)
    assert "### Claim 2 — low data (E2E test)" in text
    assert f"**Verdict (prefix vs finetune): {verdict} —" in text
    # mean +- std [interval] (n) per point, from the stored metric values (x100 display scale)
    assert ("60.0 ± 0.0" if prefix_wins else "20.0 ± 0.0") in text
    assert "(n=2)" in text
    assert len(report.figures) == 1
    fig = report.figures[0].figure
    assert [ax.get_ylabel() for ax in fig.axes] == ["BLEU", "ROUGE-L"]  # Figure 3's two panels
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["50", "100"]


def test_claim2_ignores_a_prefix_row_run_at_one_size(tmp_path: Path) -> None:
    """The Table 5 ablation's prefix_10 (500 examples only) is not a low-data curve: no
    "prefix_10 vs finetune" block calling sizes it was never meant to run "incomplete"."""
    _low_data_tree(tmp_path, prefix_wins=True)
    _run(tmp_path, label="prefix_10", method="prefix", size=100, subset=0, good=True, bleu=0.6,
         config={"length": 10})
    _, report = _claims(tmp_path)
    text = "\n".join(report.lines)
    assert "**Verdict (prefix vs finetune): reproduced —" in text
    assert "prefix_10" not in text
    assert len(report.figures) == 1


def test_claim2_equal_systems_are_inconclusive(tmp_path: Path) -> None:
    for size in (50, 100):
        for method, label in (("prefix", "prefix"), ("full", "finetune")):
            _run(tmp_path, label=label, method=method, size=size, subset=0, good=True, bleu=0.5)
    _, report = _claims(tmp_path)
    assert "**Verdict (prefix vs finetune): inconclusive at this scale — mean gap +0.00" in "\n".join(report.lines)


def test_claim3_extrapolation(tmp_path: Path) -> None:
    preset = {"train_filter": {"seen": ["yes"]}, "eval_filter": {"seen": ["no"]}}  # WebNLG seen_to_unseen
    columns = {"bleu": "webnlg_bleu"}
    _run(tmp_path, label="prefix", method="prefix", size=500, subset=0, good=True, bleu=40.0, dataset="webnlg",
         columns=columns, **preset)
    _run(tmp_path, label="finetune", method="full", size=500, subset=0, good=False, bleu=20.0, dataset="webnlg",
         columns=columns, **preset)
    _, report = _claims(tmp_path)
    text = "\n".join(report.lines)
    assert "### Claim 3 — extrapolation (WebNLG, seen_to_unseen, test all)" in text
    assert "**Verdict (prefix vs finetune, model smollm2-135m): reproduced — prefix ahead of fine-tuning" in text
    assert "| 45.3 | 26.7 |" in text  # Table 2's U column, GPT-2 medium, beside ours


def test_claim4_order(tmp_path: Path) -> None:
    for label, method, good in (("prefix_10", "prefix", True), ("infix_10", "infix", False),
                                ("emb_10", "embedding_only", False)):
        _run(tmp_path, label=label, method=method, size=500, subset=0, good=good, bleu=0.5,
             config={"length": 10})
    _, report = _claims(tmp_path)
    text = "\n".join(report.lines)
    assert "### Claim 4 — prefix vs infix vs embedding-only (E2E test, length 10, 500 training examples)" in text
    # infix and embedding-only produce the same outputs here: the second step holds zero.
    assert "**Verdict: inconclusive at this scale — at least one interval holds zero" in text
    assert "emb_10 (embedding_only)" in text and "(paper 62.2)" in text  # Table 5's emb_10 BLEU


def test_claim4_tuned_variant_gets_its_own_column_and_verdict(tmp_path: Path) -> None:
    """A method that did not learn at the paper's rate keeps its row beside a tuned variant;
    each choice of rows gets a verdict, and the dev-loss row shows which one did not learn."""
    runs = (("prefix_10", "prefix", True, 5e-5, [[20, 87.7], [400, 38.7]]),
            ("infix_10", "infix", False, 5e-5, [[20, 88.0], [400, 45.0]]),
            ("emb_10", "embedding_only", False, 5e-5, [[20, 90.0], [200, 86.4], [400, 86.5]]),
            ("emb_10_lr3e-3", "embedding_only", True, 3e-3, [[20, 80.0], [400, 40.0]]))
    for label, method, good, lr, dev in runs:
        key = _run(tmp_path, label=label, method=method, size=500, subset=0, good=good, bleu=0.5,
                   config={"length": 10}, lr=lr)
        meta_path = store.run_dir(tmp_path, key) / "meta.json"
        train = {"dev_losses": dev} | ({"dev_loss_before": 95.0} if label == "emb_10_lr3e-3" else {})
        store.write_json(meta_path, {**store.read_json(meta_path), "train": train})
    _, report = _claims(tmp_path)
    text = "\n".join(report.lines)
    assert "| emb_10 (embedding_only) | emb_10_lr3e-3 (embedding_only) |" in text
    assert ("| dev loss (untrained → best) | 87.7 at step 20 → 38.7 (-56%) | 88.0 at step 20 → 45.0 (-49%) "
            "| 90.0 at step 20 → 86.4 (-4%) | 95.0 → 40.0 (-58%) |") in text  # (stored without / with it)
    assert "| learning rate | 5e-05 | 5e-05 | 5e-05 | 0.003 |" in text
    assert "**Verdict (prefix_10, infix_10, emb_10): " in text
    assert "**Verdict (prefix_10, infix_10, emb_10_lr3e-3): " in text
    # infix_10 and emb_10 say the same thing (both "bad" with one seed): that step holds zero;
    # the tuned variant copies the references, so infix is significantly behind it
    assert "- infix_10 − emb_10 (BLEU): " in text and "- infix_10 − emb_10_lr3e-3 (BLEU): " in text
    assert "not reproduced — at least one step is significantly reversed" in text


def test_no_claim_without_the_runs_to_test_it(tmp_path: Path) -> None:
    _run(tmp_path, label="prefix", method="prefix", size=50, subset=0, good=True, bleu=0.5)
    _, report = _claims(tmp_path)
    assert report.lines == [] and report.figures == []


WEIGHTLESS_SUITE = """
name: weightless
model: tiny-gpt2
seeds: [0]
train: {max_steps: 2, lr: 1.0e-2, batch_size: 4, max_target_tokens: 96}
decode: {beam_size: 2, max_new_tokens: 8}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 20, n_dev_mrs: 4, n_test_mrs: 6}
    eval_splits: [test]
    max_eval_sources: 4
    metrics: METRICS
methods:
  - {label: prefix, method: prefix, config: {length: 2, mlp_width: 8}}
"""


def test_results_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A results set committed without weights: cached runs stay cached, a new metric rescores
    them without the model, a new decoding config is refused with the fix, nothing is retrained."""
    from bench.cli import main

    suite = tmp_path / "w.yaml"
    suite.write_text(WEIGHTLESS_SUITE.replace("METRICS", "{bleu: e2e_bleu, rouge_l: e2e_rouge_l}"))
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    (folder,) = list(store.runs_dir(results).iterdir())
    (folder / "trainable.safetensors").unlink()  # as committed under results/replication_cpu/
    meta = store.read_meta(folder)
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    assert "1 runs: 0 done, 1 cached, 0 failed" in capsys.readouterr().err
    assert main(["ls", "--results", str(results)]) == 0
    assert "done" in capsys.readouterr().out
    # One metric fewer: only the score key changes, so the stored predictions are rescored.
    suite.write_text(WEIGHTLESS_SUITE.replace("METRICS", "{bleu: e2e_bleu}"))
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    assert "1 runs: 1 done, 0 cached, 0 failed" in capsys.readouterr().err
    assert not (folder / "trainable.safetensors").exists()
    # Another beam size needs new predictions, hence the weights: refused in one line, exit 1.
    suite.write_text(WEIGHTLESS_SUITE.replace("METRICS", "{bleu: e2e_bleu}").replace("beam_size: 2", "beam_size: 3"))
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "[weightless] prefix" in err and "--force to retrain" in err and "1 need their weights" in err
    after = store.read_meta(folder)
    assert after["train"] == meta["train"] and len(after["attempts"]) == len(meta["attempts"]) + 1
    assert not (folder / "trainable.safetensors").exists()


def test_missing_runs_are_listed_as_not_tested_yet(tmp_path: Path) -> None:
    """Claims whose runs have not finished are named as still to run, not left out silently."""
    _low_data_tree(tmp_path, prefix_wins=True, sizes=(50,), subsets=1)
    rs = collect_all(results=tmp_path)[0]
    missing = pd.DataFrame({"method_label": ["infix_10", "infix_10", "prefix"], "model": "smollm2-135m",
                            "dataset": ["e2e", "e2e", "webnlg"], "train_size": [500, 500, None],
                            "subset": [0, 1, None], "seed": 0, "train_key": ["a", "b", "c"], "reason": "not run"})
    text = "\n".join(claims_report(rs.scores, rs.runs, missing).lines)
    assert "### Not tested yet" in text
    assert "| E2E | infix_10 | 2 |" in text and "| WebNLG | prefix | 1 |" in text
    assert "Not tested yet" not in "\n".join(claims_report(rs.scores, rs.runs, missing.iloc[0:0]).lines)
