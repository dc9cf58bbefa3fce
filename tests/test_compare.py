"""`bench compare` on two tiny hand-written run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.compare import compare_runs, resolve_run
from bench.errors import BenchError
from bench.store import run_dir, write_json, write_parquet

METRICS_USED = {"bleu": "multi_bleu", "ter": "ter"}
REFS = [
    ("s1", ["the cat sat on the mat", "a cat was sitting on the mat"], "yes"),
    ("s2", ["john lives in paris", "john is a resident of paris"], "yes"),
    ("s3", ["the river flows into the sea", "the river ends in the sea"], "no"),
    ("s4", ["alan bean was born in texas", "texas is where alan bean was born"], "no"),
    ("s5", ["the airport serves the city", "the city is served by the airport"], "yes"),
    ("s6", ["mars is a planet", "the planet mars"], "no"),
]
GOOD = [refs[0] for _, refs, _ in REFS]
BAD = ["the dog", "paris", "a sea", "born", "airport city", "planet"]


def _write_run(results: Path, key: str, hyps: list[str], refs=REFS, split: str = "test") -> Path:
    folder = run_dir(results, key)
    folder.mkdir(parents=True)
    spec = {
        "train_key": key,
        "decode_key": "d1",
        "method": "full",
        "data": {"name": "webnlg", "version": "1", "metrics": METRICS_USED},
    }
    write_json(folder / "spec.json", {"spec": spec})
    rows = [
        {
            "decode_key": "d1",
            "split": split,
            "source_id": sid,
            "source": f"source of {sid}",
            "prediction": hyp,
            "references": list(r),
            "fields": json.dumps({"seen": seen}),
        }
        for hyp, (sid, r, seen) in zip(hyps, refs)
    ]
    write_parquet(folder / "predictions.parquet", pd.DataFrame(rows))
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    _write_run(out, "aaaa1111", BAD)
    # The second run stores its rows in another order: aligned by source id.
    folder = _write_run(out, "bbbb2222", GOOD[::-1], refs=REFS[::-1])
    assert folder.is_dir()
    return out


def test_paired_comparison(results: Path) -> None:
    table = compare_runs(run_a="aaaa", run_b="bbbb", results=results, n_boot=300)
    assert set(table["group"]) == {"all", "seen", "unseen"}
    assert set(table["metric"]) == {"bleu", "ter"}
    row = table[(table["group"] == "all") & (table["metric"] == "bleu")].iloc[0]
    assert row["n"] == 6 and row["score_b"] == pytest.approx(100.0)
    assert row["delta"] == pytest.approx(row["score_b"] - row["score_a"]) and row["delta"] > 50
    assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
    assert row["p_value"] < 0.01  # B is better on every resample
    ter = table[(table["group"] == "all") & (table["metric"] == "ter")].iloc[0]
    assert ter["delta"] < 0 and not ter["higher_is_better"] and ter["p_value"] < 0.01
    # Reversed, A is the better one: B (the bad run) is never better.
    rev = compare_runs(run_a="bbbb", run_b="aaaa", results=results, n_boot=300)
    rrow = rev[(rev["group"] == "all") & (rev["metric"] == "bleu")].iloc[0]
    assert rrow["delta"] == pytest.approx(-row["delta"]) and rrow["p_value"] == 1.0


def test_identical_runs_are_not_different(tmp_path: Path) -> None:
    res = tmp_path / "r"
    _write_run(res, "k1", GOOD[:3] + BAD[3:])
    _write_run(res, "k2", GOOD[:3] + BAD[3:])
    table = compare_runs(run_a="k1", run_b="k2", results=res, n_boot=100)
    assert (table["delta"] == 0).all() and (table["p_value"] == 1.0).all()


def test_refuses_different_examples(results: Path) -> None:
    other = list(REFS)
    other[2] = ("s99", other[2][1], "no")
    _write_run(results, "cccc3333", GOOD, refs=other)
    with pytest.raises(BenchError, match=r"different examples on split 'test': 1 sources only in the first, 1 only in the second"):
        compare_runs(run_a="aaaa", run_b="cccc", results=results)
    changed = list(REFS)
    changed[0] = ("s1", ["another reference"], "yes")
    _write_run(results, "dddd4444", GOOD, refs=changed)
    with pytest.raises(BenchError, match="different references for source 's1'"):
        compare_runs(run_a="aaaa", run_b="dddd", results=results)
    _write_run(results, "eeee5555", GOOD, split="dev")
    with pytest.raises(BenchError, match="share no split"):
        compare_runs(run_a="aaaa", run_b="eeee", results=results)


def test_run_names(results: Path, tmp_path: Path) -> None:
    assert resolve_run("aaaa1111", results).name == "aaaa1111"
    assert resolve_run("aa", results).name == "aaaa1111"
    folder = run_dir(results, "bbbb2222")
    assert resolve_run(str(folder), tmp_path / "elsewhere") == folder
    _write_run(results, "aaaa9999", GOOD)
    with pytest.raises(BenchError, match="ambiguous"):
        resolve_run("aaaa", results)
    with pytest.raises(BenchError, match='did you mean "bbbb2222"'):
        resolve_run("bbbb2223", results)


def test_cli(results: Path, capsys) -> None:
    assert main(["compare", "aaaa", "bbbb", "--results", str(results), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "p(B not better)" in out and "unseen" in out
    assert main(["compare", "aaaa", "bbbb", "--results", str(results), "--n-boot", "50", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 6 and {r["metric"] for r in records} == {"bleu", "ter"}
    assert main(["compare", "aaaa", "zzzz", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zzzz" in err[0]
