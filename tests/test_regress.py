"""`bench regress`: the CI gate against a stored baseline, on results trees written directly
with the store (no training): pass, doctored metric, missing / failed runs, empty comparison,
version changes, seed-std widening, and the --update path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_report import e2e_scores, mini_suite, write_spec_run  # the shared results-tree writers

from bench import SCHEMA_VERSION, store
from bench.cli import main
from bench.errors import BenchError
from bench.regress import read_baseline, regress, write_baseline

# mini suite: finetune seeds 0, 1; prefix seeds 0, 1; tolerances {bleu: 0.01}, stored units.
BLEU = {"finetune": (0.30, 0.30), "prefix": (0.40, 0.40)}


def build(tmp_path: Path, name: str, bleu: dict[str, tuple[float, float]] = BLEU, *, skip: int | None = None,
          fail: int | None = None) -> tuple[Path, Path]:
    suite, specs = mini_suite(tmp_path)
    results = tmp_path / name
    for i, spec in enumerate(specs):
        if i == skip:
            continue
        if i == fail:
            write_spec_run(results, spec, {}, status="failed", error="RuntimeError: loss is NaN")
            continue
        write_spec_run(results, spec, e2e_scores(bleu[spec.method_label][spec.seed]))
    return suite, results


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    suite, results = build(tmp_path, "base")
    path = tmp_path / "baselines" / "ci.parquet"
    regress(baseline=path, results=results, suite=suite, update=True)
    return path


def test_unchanged_results_pass(tmp_path: Path, baseline: Path) -> None:
    suite, results = build(tmp_path, "again")
    result, text = regress(baseline=baseline, results=results, suite=suite)
    assert result is not None and result.passed and result.exit_code == 0
    assert result.compared == 4 * 5 and result.counts()["same"] == 20
    assert text.startswith("**bench regress: PASS**")


def test_lowered_metric_fails_and_is_named(tmp_path: Path, baseline: Path) -> None:
    suite, results = build(tmp_path, "worse", {"finetune": (0.30, 0.30), "prefix": (0.40 - 0.02, 0.40)})
    result, text = regress(baseline=baseline, results=results, suite=suite)
    assert result is not None and not result.passed
    worse = result.rows[result.rows["outcome"] == "worse"]
    assert list(zip(worse["method_label"], worse["seed"], worse["metric"])) == [
        ("prefix", 0, "bleu"), ("prefix", 0, "nist"), ("prefix", 0, "rouge_l")]
    # bleu has the suite's tolerance; nist / rouge_l (derived from bleu here) the exact default.
    assert worse.iloc[0]["tolerance"] == 0.01 and worse.iloc[0]["delta"] == pytest.approx(-0.02)
    assert "| **worse** | prefix | synthetic_e2e test (full) | 0 | bleu | 0.4 | 0.38 | -0.02 | 0.01 |" in text
    # Within tolerance is "same"; beyond it upwards is "better" and does not fail.
    suite, results = build(tmp_path, "better", {"finetune": (0.305, 0.30), "prefix": (0.40, 0.42)})
    result, _ = regress(baseline=baseline, results=results, suite=suite)
    rows = result.rows.set_index(["method_label", "seed", "metric"])
    assert rows.loc[("finetune", 0, "bleu"), "outcome"] == "same"
    assert rows.loc[("prefix", 1, "bleu"), "outcome"] == "better"
    assert rows.loc[("finetune", 0, "nist"), "outcome"] == "better"  # default tolerance is exact


def test_missing_run_fails(tmp_path: Path, baseline: Path) -> None:
    suite, results = build(tmp_path, "missing", skip=3)
    result, _text = regress(baseline=baseline, results=results, suite=suite)
    assert not result.passed and result.counts()["missing"] == 5
    assert set(result.rows.loc[result.rows["outcome"] == "missing", "note"]) == {
        "not in the results cache (not run yet)"}


def test_failed_run_fails(tmp_path: Path, baseline: Path) -> None:
    suite, results = build(tmp_path, "failed", fail=0)
    result, text = regress(baseline=baseline, results=results, suite=suite)
    assert not result.passed and result.counts()["failed"] == 5
    assert "loss is NaN" in text


def test_empty_comparison_fails(tmp_path: Path, baseline: Path) -> None:
    suite, _ = mini_suite(tmp_path)
    result, text = regress(baseline=baseline, results=tmp_path / "empty", suite=suite)
    assert result.compared == 0 and not result.passed
    assert "(no metric was compared)" in text
    # A baseline that holds nothing of this suite compares nothing either.
    other = tmp_path / "other.parquet"
    base = read_baseline(baseline)
    write_baseline(other, base.assign(suite="another"), replace_suites=["another"])
    _, results = build(tmp_path, "again")
    result, _ = regress(baseline=other, results=results, suite=suite)
    assert result.compared == 0 and not result.passed and result.counts()["new"] == 20


def test_version_change_is_not_comparable(tmp_path: Path, baseline: Path) -> None:
    # The baseline was made with an older metric version of BLEU and an older prefix method.
    base = read_baseline(baseline)
    base.loc[base["metric"] == "bleu", "metric_version"] = "0"
    prefix = base["method_label"] == "prefix"
    base.loc[prefix, "method_version"] = "0"
    base.loc[prefix, "train_key"] = "old" + base.loc[prefix, "train_key"]  # a version is part of the key
    doctored = tmp_path / "doctored.parquet"
    write_baseline(doctored, base, replace_suites=["mini"])
    suite, results = build(tmp_path, "again")
    result, _text = regress(baseline=doctored, results=results, suite=suite)
    nc = result.rows[result.rows["outcome"] == "not comparable"]
    assert len(nc) == 2 + 10  # finetune's two BLEU rows + every prefix row
    assert set(nc.loc[nc["method_label"] == "finetune", "note"]) == {"metric version 0 -> 1"}
    assert "method version 0 -> 1" in set(nc.loc[nc["method_label"] == "prefix", "note"])
    assert result.passed  # the rest compared "same"; not comparable alone is no failure
    # When nothing is left to compare, it fails.
    base["metric_version"] = "0"
    write_baseline(doctored, base, replace_suites=["mini"])
    result, _ = regress(baseline=doctored, results=results, suite=suite)
    assert result.compared == 0 and not result.passed


def test_seed_std_widens_tolerance(tmp_path: Path) -> None:
    noisy = {"finetune": (0.30, 0.34), "prefix": (0.40, 0.40)}  # std 0.0283: 2 x std = 0.0566 > 0.01
    suite, results = build(tmp_path, "base", noisy)
    path = tmp_path / "noisy.parquet"
    regress(baseline=path, results=results, suite=suite, update=True)
    suite, results = build(tmp_path, "within", {"finetune": (0.27, 0.34), "prefix": (0.40, 0.40)})
    result, _ = regress(baseline=path, results=results, suite=suite)
    row = result.rows.set_index(["method_label", "seed", "metric"]).loc[("finetune", 0, "bleu")]
    assert row["outcome"] == "same" and row["tolerance"] == pytest.approx(2 * 0.0282843, rel=1e-4)
    assert "2 x seed std" in row["note"]
    suite, results = build(tmp_path, "beyond", {"finetune": (0.24, 0.34), "prefix": (0.40, 0.40)})
    result, _ = regress(baseline=path, results=results, suite=suite)
    row = result.rows.set_index(["method_label", "seed", "metric"]).loc[("finetune", 0, "bleu")]
    assert row["outcome"] == "worse" and not result.passed
    # Prefix seeds agree (std 0): its tolerance stays the suite's.
    row = result.rows.set_index(["method_label", "seed", "metric"]).loc[("prefix", 0, "bleu")]
    assert row["tolerance"] == 0.01


def test_update_is_schema_versioned_and_refuses_failed_runs(tmp_path: Path, baseline: Path) -> None:
    meta = pq.read_schema(baseline).metadata
    assert meta[b"schema_version"] == str(SCHEMA_VERSION).encode()
    assert len(read_baseline(baseline)) == 20
    assert not list(baseline.parent.glob(".*tmp"))  # written to a temporary name and renamed
    suite, results = build(tmp_path, "failed", fail=1)
    with pytest.raises(BenchError, match="refusing to --update .* 1 run\\(s\\) failed"):
        regress(baseline=baseline, results=results, suite=suite, update=True)
    suite, results = build(tmp_path, "missing", skip=1)
    with pytest.raises(BenchError, match="1 run\\(s\\) missing"):
        regress(baseline=baseline, results=results, suite=suite, update=True)
    with pytest.raises(BenchError, match="baseline not found"):
        regress(baseline=tmp_path / "nope.parquet", results=results, suite=suite)


def test_cli_exit_status(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite, results = build(tmp_path, "again")
    args = ["regress", "--baseline", str(baseline), "--results", str(results), "--suite", str(suite)]
    assert main(args) == 0
    assert "PASS" in capsys.readouterr().out
    shutil.rmtree(store.run_dir(results, read_baseline(baseline)["train_key"].iloc[0]))
    assert main(args) == 1
    assert "**missing**" in capsys.readouterr().out
    assert main(["regress", "--baseline", str(tmp_path / "nope.parquet"), "--results", str(results)]) == 2
