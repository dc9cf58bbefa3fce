"""A suite's `compare: {reference, metrics}` entry: the report tests every row against the reference.

Tiny models score about 0, so the stored hypotheses are replaced after the runs: the reference
row says nothing, one row copies a reference (BLEU 100 on every source), one row answers each
source with another source's reference. The section's Δ must equal `bench compare`'s (its own
code path) and its readings must follow the intervals.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from bench import store
from bench.cli import main
from bench.compare import compare_runs

SUITE = """
name: paired
model: tiny-gpt2
seeds: [0]
train: {max_steps: 2, batch_size: 4, max_target_tokens: 32}
decode: {beam_size: 1, max_new_tokens: 8}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 8, n_dev_mrs: 2, n_test_mrs: 12}
    eval_splits: [test]
    metrics: {bleu: e2e_bleu}
methods:
  - label: base
    method: none
  - label: copy
    method: full
  - label: shuffled
    method: lora
    config: {r: 2}
compare: {reference: base, metrics: [bleu]}
"""


def cli(argv: list) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def _set_predictions(results: Path, label: str, how: str) -> str:
    run = next(p for p in (results / "runs").iterdir()
               if store.read_json(p / "spec.json")["spec"]["method_label"] == label)
    preds = store.read_parquet(run / "predictions.parquet")
    refs = [next(iter(r)) for r in preds["references"]]
    preds["prediction"] = {"empty": [""] * len(refs), "copy": refs, "shuffled": refs[1:] + refs[:1]}[how]
    store.write_parquet(run / "predictions.parquet", preds)  # with its schema version
    return run.name


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("paired")
    suite = root / "paired.yaml"
    suite.write_text(SUITE)
    results = root / "results"
    rc, err = cli(["run", suite, "--results", results, "--quiet"])
    assert rc == 0, err
    for label, how in (("base", "empty"), ("copy", "copy"), ("shuffled", "shuffled")):
        _set_predictions(results, label, how)
    rc, err = cli(["report", suite, "--results", results, "--out", root / "rep"])
    assert rc == 0, err
    return suite, results, (root / "rep" / "paired.md").read_text()


def _row(text: str, label: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} | BLEU |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_each_row_is_tested_against_the_reference(reported: tuple[Path, Path, str]) -> None:
    _, results, text = reported
    assert "## Paired comparisons against base" in text
    copy, shuffled = _row(text, "copy"), _row(text, "shuffled")
    assert copy[2] == "0.00" and copy[3] == "100.00" and copy[-1] == "ahead" and copy[-2] == "1"
    for row, label in ((copy, "copy"), (shuffled, "shuffled")):
        theirs = compare_runs(run_a="base", run_b=label, results=results, n_boot=200)
        delta = float(theirs[theirs["metric"] == "bleu"]["delta"].iloc[0]) * 100  # BLEU stored in [0, 1]
        assert float(row[4].split(" ")[0]) == pytest.approx(delta, abs=0.006)
    # the empty reference scores 0 on every resample, so any n-gram match puts the row ahead
    assert float(shuffled[3]) > 0 and shuffled[-1] == "ahead"


@pytest.mark.parametrize(("ci", "lower_is_better", "reading"), [
    ((0.5, 2.0), False, "ahead"), ((-2.0, -0.5), False, "behind"), ((-1.0, 1.0), False, "level (interval holds 0)"),
    ((0.5, 2.0), True, "behind"), ((-2.0, -0.5), True, "ahead"), ((-1.0, 1.0), True, "level (interval holds 0)"),
])
def test_reading_follows_the_interval_and_the_metric_direction(ci: tuple[float, float], lower_is_better: bool,
                                                                reading: str) -> None:
    from bench.report.paired import _reading

    assert _reading(ci, lower_is_better) == reading


def test_no_compare_entry_no_section(reported: tuple[Path, Path, str], tmp_path: Path) -> None:
    suite, results, _ = reported
    plain = tmp_path / "paired.yaml"
    plain.write_text(suite.read_text().replace("compare: {reference: base, metrics: [bleu]}\n", ""))
    rc, err = cli(["report", plain, "--results", results, "--out", tmp_path / "rep"])
    assert rc == 0, err
    assert "Paired comparisons" not in (tmp_path / "rep" / "paired.md").read_text()


@pytest.mark.parametrize(("entry", "says"), [
    ("compare: {reference: bsae}", 'compare.reference: no method row labelled \'bsae\' (did you mean "base"?)'),
    ("compare: {reference: base, metrics: [blue]}", "compare.metrics: no dataset of the suite scores 'blue'"),
    ("compare: {reference: base, metric: [bleu]}", "compare: unknown key 'metric'"),
    ("compare: base", "compare: expected a mapping"),
])
def test_a_wrong_compare_entry_is_one_line(entry: str, says: str, tmp_path: Path) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(SUITE.replace("compare: {reference: base, metrics: [bleu]}", entry))
    rc, err = cli(["validate", suite])
    assert rc == 2 and says in err and "Traceback" not in err, err
