"""`bench data ls` / `bench data describe` and the library functions behind them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.datastats import describe, list_datasets, token_lengths
from bench.errors import BenchError, DataError

SMALL = {"n_train_mrs": 40, "n_dev_mrs": 10, "n_test_mrs": 12, "refs_per_mr": [2, 3]}
DEV_CSV = (
    "mr,ref\n"
    '"name[The Eagle], eatType[pub]",The Eagle is a pub.\n'
    '"name[The Eagle], eatType[pub]",A pub called The Eagle.\n'
    '"name[Zizzi], area[riverside]",Zizzi is by the river.\n'
)


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "devset.csv").write_text(DEV_CSV, encoding="utf-8")
    return tmp_path


def byte_len(text: str) -> int:
    # The tiny models' tokenizer has one token per UTF-8 byte.
    return len((" " + text).encode("utf-8"))


def test_list_datasets_says_where_each_loads_from(data_dir: Path) -> None:
    df = list_datasets(data_dir=data_dir).set_index("dataset")
    assert {"e2e", "synthetic_e2e"} <= set(df.index)
    assert df.loc["e2e", "splits"] == "train, dev, test"
    assert df.loc["e2e", "source"] == f"{data_dir / 'e2e'} (splits found: dev)"
    assert df.loc["synthetic_e2e", "source"].startswith("embedded")
    assert list_datasets(data_dir=None).set_index("dataset").loc["e2e", "source"].startswith("hub")


def test_describe_counts_and_byte_lengths_on_synthetic() -> None:
    from bench.registry import DATASETS

    df = describe("synthetic_e2e", tokenizer="tiny-gpt2", options=SMALL).set_index("split")
    assert list(df.index) == ["train", "dev", "test"]
    assert df.attrs["tokenizer"] == "tiny-gpt2"
    assert list(df["sources"]) == [40, 10, 12]
    for split in ("train", "dev", "test"):
        examples = DATASETS.get("synthetic_e2e")().load(split, data_dir=None, options=SMALL)
        row = df.loc[split]
        assert row["examples"] == len(examples)
        assert row["refs_per_source"] == pytest.approx(len(examples) / row["sources"])
        assert row["source_tokens"] == pytest.approx(
            sum(byte_len(e.source) for e in examples) / len(examples)
        )
        assert row["target_tokens"] == pytest.approx(
            sum(byte_len(e.target) for e in examples) / len(examples)
        )


def test_token_lengths_batches_and_keeps_order() -> None:
    from bench.datastats import load_tokenizer

    texts = [f"x{'y' * (i % 7)}" for i in range(4500)]  # more than one batch
    assert token_lengths(load_tokenizer("tiny-gpt2"), texts, progress=True) == [
        byte_len(t) for t in texts
    ]


def test_describe_reports_missing_splits_and_raises_for_one(data_dir: Path) -> None:
    df = describe("e2e", tokenizer="tiny-gpt2", data_dir=data_dir).set_index("split")
    assert df.loc["dev", "examples"] == 3 and df.loc["dev", "sources"] == 2
    assert df.loc["dev", "refs_per_source"] == pytest.approx(1.5)
    assert df.loc["dev", "note"] == ""
    assert "trainset.csv: file not found" in df.loc["train", "note"]
    assert df["examples"].isna().sum() == 2
    with pytest.raises(DataError, match="trainset.csv: file not found"):
        describe("e2e", split="train", tokenizer="tiny-gpt2", data_dir=data_dir)
    with pytest.raises(BenchError, match='did you mean "test"'):
        describe("e2e", split="tset", tokenizer="tiny-gpt2", data_dir=data_dir)


def test_cli_data_ls(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "ls", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "synthetic_e2e" in out and f"{data_dir / 'e2e'} (splits found: dev)" in out


def test_cli_data_describe(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["data", "describe", "e2e", "--split", "dev", "--tokenizer", "tiny-gpt2",
            "--data-dir", str(data_dir), "-o", "format=paper"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "e2e (format=paper)"
    assert lines[1].split() == ["split", "examples", "sources", "refs_per_source",
                                "source_tokens", "target_tokens"]  # fmt: skip
    assert lines[2].split()[:4] == ["dev", "3", "2", "1.5"]
    assert "tiny-gpt2's tokenizer" in out
    assert "paper Table 1" in out and "50K examples" in out


def test_cli_describe_lists_missing_splits_below_the_table(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["data", "describe", "e2e", "--tokenizer", "tiny-gpt2", "--data-dir", str(data_dir)]
    assert main(argv) == 2  # printed what loaded, but a script must see that two splits did not
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 2 and "e2e train: did not load" in errors[0] and "e2e test: did not load" in errors[1]
    lines = captured.out.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ["train", "dev", "test"]
    assert lines[2].split()[1:] == ["-"] * 5
    assert lines[5].startswith("train: ") and "trainset.csv: file not found" in lines[5]
    assert lines[6].startswith("test: ") and "testset_w_refs.csv: file not found" in lines[6]


def test_cli_mistakes_are_one_line_exit_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["data", "describe", "synthetic_e2e", "--tokenizer", "tiny-gpt2"]
    assert main([*base, "-o", "n_train_mrs"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bench: error: --option 'n_train_mrs': expected KEY=VALUE"
    )
    assert main([*base, "-o", "n_trian_mrs=5"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("bench: error:") and 'did you mean "n_train_mrs"' in err[-1]
    assert main(["data", "describe", "e2ee", "--tokenizer", "tiny-gpt2"]) == 2
    assert capsys.readouterr().err.strip().startswith("bench: error: unknown dataset 'e2ee'")
    assert main(["data", "ls", "--data-dir", str(data_dir / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: data directory") and "--data-dir" in err
    monkeypatch.setenv("BENCH_DATA_DIR", str(data_dir))
    assert main(["data", "ls"]) == 0  # the environment variable is used without the flag
    assert "(splits found: dev)" in capsys.readouterr().out


@pytest.mark.slow
def test_describe_real_e2e_with_the_embedded_tokenizer() -> None:
    data = Path(
        os.environ.get("BENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    if not (data / "e2e").is_dir():
        pytest.skip(f"E2E data not found in {data}")
    df = describe("e2e", data_dir=data).set_index("split")
    assert df.attrs["tokenizer"] == "smollm2-135m"
    assert int(df["examples"].sum()) == 42_061 + 4_672 + 4_693  # the paper's "50K"
    # The paper's GPT-2 counts are 28.5 / 27.8 over all splits; another BPE lands near them.
    assert 20 < df.loc["train", "source_tokens"] < 40
    assert 20 < df.loc["train", "target_tokens"] < 40


def test_resolve_data_dir_flag_then_env_then_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.datasets.paths import dataset_dir, resolve_data_dir

    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    assert resolve_data_dir(None) is None
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("BENCH_DATA_DIR", str(other))
    assert resolve_data_dir(None) == other
    assert resolve_data_dir(str(tmp_path)) == tmp_path  # the flag wins
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(BenchError, match=r"\(from BENCH_DATA_DIR\) does not exist"):
        resolve_data_dir(None)
    (tmp_path / "e2e").mkdir()
    assert dataset_dir(tmp_path, "e2e") == tmp_path / "e2e"
    assert dataset_dir(tmp_path, "webnlg") is None
    assert dataset_dir(None, "e2e") is None
