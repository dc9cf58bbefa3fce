"""`bench score`: any output file, the dataset's metric set, official numbers as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.score_file import read_hypotheses, score_file


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | None, str]:
    code = main(["score", *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def _e2e_official(data_dir: Path, system: str) -> dict:
    scores = json.loads((data_dir / "e2e" / "fixtures" / "official_scores.json").read_text())
    return scores["fixtures"][system]


def _check_official(scores: dict, official: dict) -> None:
    full = official["full_precision"]
    # measure_scores.py -p, the Prefix-Tuning setting; same scales (BLEU 0-1, NIST raw...).
    want = {
        "bleu": ("BLEU", full["BLEU_python_mteval"]),
        "nist": ("NIST", full["NIST_python_mteval"]),
        "meteor": ("METEOR", full["METEOR"]),
        "rouge_l": ("ROUGE_L", full["ROUGE_L"]),
        "cider": ("CIDEr", full["CIDEr"]),
    }
    assert {k for k in scores if not k.endswith("_ci95")} == set(want)
    for key, (printed, value) in want.items():
        assert scores[key] == pytest.approx(value, abs=1e-6), key
        assert round(scores[key], 4) == official["python_mteval (-p)"][printed]


def test_e2e_fixture_prints_the_official_numbers(data_dir: Path, capsys) -> None:
    """The E2E template system: the five official numbers, plus 95% intervals with --ci."""
    hyp = data_dir / "e2e" / "fixtures" / "template.txt"
    code, scores, _ = _run(
        capsys, "--dataset", "e2e", "--split", "dev", "--hyp", str(hyp),
        "--data-dir", str(data_dir), "--ci", "--n-boot", "200",
    )
    assert code == 0 and scores is not None
    _check_official(scores, _e2e_official(data_dir, "template.txt"))
    for key in ("bleu", "nist", "meteor", "rouge_l", "cider"):
        lo, hi = scores[f"{key}_ci95"]
        assert lo < scores[key] < hi, key


@pytest.mark.slow  # the E2E metric set again (METEOR through Java); the template run covers the path
def test_e2e_oracle(data_dir: Path, capsys) -> None:
    hyp = data_dir / "e2e" / "fixtures" / "oracle_first_ref.txt"
    code, scores, _ = _run(
        capsys, "--dataset", "e2e", "--split", "dev", "--hyp", str(hyp), "--data-dir", str(data_dir)
    )
    assert code == 0 and scores is not None
    _check_official(scores, _e2e_official(data_dir, "oracle_first_ref.txt"))


def test_wrong_line_count_is_one_line(data_dir: Path, tmp_path: Path, capsys) -> None:
    hyp = tmp_path / "short.txt"
    hyp.write_text("one\ntwo\n", encoding="utf-8")
    code, _, err = _run(
        capsys, "--dataset", "e2e", "--split", "dev", "--hyp", str(hyp), "--data-dir", str(data_dir)
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(hyp) in lines[0] and "2 lines" in lines[0] and "547" in lines[0]


def test_bad_inputs(data_dir: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _run(
        capsys, "--dataset", "e2ee", "--split", "dev", "--hyp", "x", "--data-dir", str(data_dir)
    )
    assert code == 2 and 'did you mean "e2e"' in err
    code, _, err = _run(
        capsys, "--dataset", "e2e", "--split", "dev", "--hyp", str(tmp_path / "missing.txt"),
        "--data-dir", str(data_dir),
    )
    assert code == 2 and "missing.txt" in err and "does not exist" in err
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(BenchError, match=r"latin1.txt, line 2: not UTF-8"):
        read_hypotheses(latin)


# A committed real-data run (E2E test, `format: paper`, Figure 4's length 40) of the replication suite.
COMMITTED_E2E_RUN = Path(__file__).resolve().parents[1] / "results/replication_cpu/runs/48d95e3009ff6f7b"


def test_dataset_options_score_a_run_as_the_suite_did(data_dir: Path, tmp_path: Path, capsys) -> None:
    """`-o format=paper` scores against the references a `format: paper` run was scored with, so a
    committed run's predictions give back its stored metrics; the raw references give others."""
    import pandas as pd

    predictions = pd.read_parquet(COMMITTED_E2E_RUN / "predictions.parquet")
    stored = pd.read_parquet(COMMITTED_E2E_RUN / "metrics.parquet").query("split == 'test' and group == 'all'")
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("\n".join(predictions["prediction"]) + "\n", encoding="utf-8")
    argv = ["--dataset", "e2e", "--split", "test", "--hyp", str(hyp), "--data-dir", str(data_dir)]
    code, scores, _ = _run(capsys, *argv, "--option", "format=paper")
    assert code == 0 and scores is not None
    assert scores == pytest.approx(dict(zip(stored["metric"], stored["value"])), abs=1e-9)
    code, raw, _ = _run(capsys, *argv)
    assert code == 0 and raw is not None and abs(raw["bleu"] - scores["bleu"]) > 0.01
    code, _, err = _run(capsys, *argv, "-o", "formt=paper")
    assert code == 2 and err.strip() == 'bench: error: e2e: unknown option \'formt\' (did you mean "format"?)'


def test_read_hypotheses_lines(tmp_path: Path) -> None:
    path = tmp_path / "h.txt"
    path.write_bytes(b"a\r\n\r\nc")  # CRLF, an empty hypothesis, no final newline
    assert read_hypotheses(path) == ["a", "", "c"]
    path.write_bytes(b"a\n")
    assert read_hypotheses(path) == ["a"]
    path.write_bytes(b"\n")
    assert read_hypotheses(path) == [""]


@pytest.mark.slow  # TER and METEOR on 1,862 outputs: about a minute
def test_webnlg_nests_groups_with_official_numbers(data_dir: Path) -> None:
    scores = score_file(
        dataset="webnlg",
        split="test",
        hyp=data_dir / "webnlg" / "fixtures" / "bart-large_webnlg-all.txt",
        data_dir=data_dir,
    )
    official = json.loads(
        (data_dir / "webnlg" / "fixtures" / "official_scores_real_systems.json").read_text()
    )["data/webnlg/fixtures/bart-large_webnlg-all.txt"]
    assert set(scores) == {"all", "seen", "unseen"}
    for group in ("all", "seen", "unseen"):
        got, want = scores[group], official[group]
        assert set(got) == {"bleu", "meteor", "ter", "chrf"}
        assert round(got["bleu"], 2) == want["BLEU_multi-bleu"]["BLEU"]
        assert got["ter"] == pytest.approx(want["TER"]["TER"], abs=1e-9)
        assert got["meteor"] == pytest.approx(want["METEOR"], abs=0.005)
        assert 0 < got["chrf"] < 100
