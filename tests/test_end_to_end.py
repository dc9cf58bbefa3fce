"""End to end through the command line: the smoke suite run twice (the second run trains
nothing), a report, and the one-line errors that leave results/ untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.store import load_runs

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "suites" / "smoke.yaml"


def test_smoke_twice_then_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(SMOKE), "--results", str(results), "--quiet"]) == 0
    runs = load_runs(results)
    assert len(runs) == 5 and set(runs["status"]) == {"done"}
    stamps = {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", str(SMOKE), "--results", str(results), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "5 runs: 0 done, 5 cached, 0 failed" in err
    # Nothing was retrained, re-decoded or rewritten.
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file()} == stamps
    assert main(["report", str(SMOKE), "--results", str(results), "--out", str(reports)]) == 0
    md = (reports / "smoke.md").read_text()
    for label in ("finetune", "ft_top2", "adapter", "prefix", "lora"):
        assert label in md
    assert list(reports.glob("smoke*.png"))


def test_changing_one_method_redoes_only_its_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    text = SMOKE.read_text().replace("max_steps: 120", "max_steps: 2")
    suite.write_text(text)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--quiet", "--only", "adapter", "prefix"]) == 0
    suite.write_text(text.replace("config: {length: 4, mlp_width: 16}", "config: {length: 3, mlp_width: 16}"))
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results), "--quiet", "--only", "adapter", "prefix"]) == 0
    assert "2 runs: 1 done, 1 cached, 0 failed" in capsys.readouterr().err


def test_broken_suite_is_one_line_per_problem_and_touches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text(SMOKE.read_text().replace("method: top_k", "method: topk").replace("beam_size", "beam_sise"))
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("bench: error: ") and str(suite) in line for line in err)
    assert any('"top_k"' in line for line in err) and any('"beam_size"' in line for line in err)
    assert not results.exists()


def test_unavailable_model_fails_fast_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("bench.models._HUB_REACHABLE", None)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached copy
    results = tmp_path / "results"
    code = main(["run", str(REPO / "suites" / "table_to_text.yaml"), "--results", str(results)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "gpt2-medium" in err[0] and "--local-dir" in err[0] and "model: DIR" in err[0]
    assert not results.exists()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
