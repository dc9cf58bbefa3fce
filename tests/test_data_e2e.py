"""The real E2E loader: official counts, linearization, the paper's preprocessed form (checked
line by line against the authors' files), and one-line DataErrors for every kind of bad file."""

from __future__ import annotations

import gzip
import os
import sys
import types
from pathlib import Path

import pytest

from bench.datasets import e2e as e2e_module
from bench.datasets._e2e_format import paper_reference, parse_mr
from bench.errors import BenchError, DataError
from bench.interfaces import DatasetBuilder, group_references
from bench.registry import DATASETS

DATA_DIR = Path(
    os.environ.get("BENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
HEADER = "mr,ref\n"
GOOD_ROW = '"name[The Eagle], eatType[pub], area[riverside]","The Eagle is a pub by the river."\n'


def real_data() -> Path:
    if not (DATA_DIR / "e2e" / "devset.csv").is_file():
        pytest.skip(f"E2E data not found in {DATA_DIR}/e2e (set BENCH_DATA_DIR to the data folder)")
    return DATA_DIR


def load(split: str, data_dir: Path, **options: object) -> list:
    return DATASETS.get("e2e")().load(split, data_dir=data_dir, options=options)


def write_e2e(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "e2e"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return tmp_path


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize(
    "split, n_examples, n_mrs",
    [("train", 42_061, 4_862), ("dev", 4_672, 547), ("test", 4_693, 630)],
)
def test_official_counts(split: str, n_examples: int, n_mrs: int) -> None:
    examples = load(split, real_data())
    assert len(examples) == n_examples
    assert len(group_references(examples)) == n_mrs
    assert len({e.example_id for e in examples}) == n_examples


def test_linearization_and_grouping_on_dev() -> None:
    examples = load("dev", real_data())
    first = examples[0]
    assert first.source_id == "name[Alimentum], area[city centre], familyFriendly[no]"
    assert first.source == "name : Alimentum | area : city centre | familyFriendly : no"
    assert first.target.startswith("There is a place in the city centre, Alimentum")
    assert first.example_id == "dev-0"
    for ex in examples:
        assert ex.source == " | ".join(f"{s} : {v}" for s, v in parse_mr(ex.source_id))
    items = group_references(examples)
    assert sum(len(i.references) for i in items) == len(examples)
    assert items[0].references[1].startswith("In the city centre there is a venue")


@pytest.mark.parametrize(
    "split, authors_file",
    [("dev", "src1_valid.txt.gz"), ("test", "src1_test.txt.gz")],
)
def test_paper_format_matches_the_authors_files(split: str, authors_file: str) -> None:
    data_dir = real_data()
    path = data_dir / "e2e" / "prefix_tuning_format" / authors_file
    if not path.is_file():
        pytest.skip(f"{path} not found")
    expected = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    assert expected[-1] == ""  # the file ends with a newline
    expected = expected[:-1]
    ours = [f"{e.source}||{e.target} " for e in load(split, data_dir, format="paper")]
    assert len(ours) == len(expected)
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(ours, expected)) if a != b]
    for i, a, b in differ:
        print(f"{authors_file} line {i + 1} differs:\n  ours:    {a!r}\n  authors: {b!r}")
    assert len(differ) <= 0.005 * len(expected), f"{len(differ)} lines differ"
    # The one residual line each (see the report): a period kept in "5. in" (dev) and "thats"
    # split as "that s" (test); both are one-off behaviours of the authors' tokenizers.
    assert len(differ) <= 1


def test_paper_tokenizers_on_their_distinguishing_cases() -> None:
    dev = "It isn't family-friendly, prices £20-£25.. The 5-star 'Aromi' is here."
    assert paper_reference(dev, "dev") == (
        "It isn 't family - friendly , prices £ 20- £ 25 .. The 5 - star ' Aromi ' is here ."
    )
    assert paper_reference(dev, "test") == (
        "It is n't family - friendly , prices £ 20-£25 .. The 5-star ' Aromi ' is here ."
    )


# --------------------------------------------------------------------------- bad files


def test_accepts_gzipped_and_plain_csv(tmp_path: Path) -> None:
    folder = tmp_path / "e2e"
    folder.mkdir()
    (folder / "trainset.csv.gz").write_bytes(gzip.compress((HEADER + GOOD_ROW * 3).encode()))
    (folder / "devset.csv").write_text(HEADER + GOOD_ROW, encoding="utf-8")
    train = load("train", tmp_path)
    assert [e.example_id for e in train] == ["train-0", "train-1", "train-2"]
    assert train[0].source == "name : The Eagle | eatType : pub | area : riverside"
    assert len(load("dev", tmp_path)) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        (HEADER + GOOD_ROW + '"name[X]",a ref,extra\n', r"devset\.csv, line 3: 3 field\(s\); expected 2"),
        (HEADER + '"name[X]","unterminated\n', r"devset\.csv, line \d+: .*expected a CSV row"),
        ("mr,text\n" + GOOD_ROW, r"devset\.csv, line 1: no column 'ref' in header 'mr,text'"),
        (HEADER + GOOD_ROW + '"name[X], area[riverside]",  \n', r"devset\.csv, line 3: empty reference"),
        (HEADER + '"name[X], area[riverside",A ref.\n', r"devset\.csv, line 2: expected slot\[value\]"),
        (HEADER + '"name[X], aera[riverside]",A ref.\n', r"line 2: unknown MR slot 'aera' \(did you mean \"area\"\?\)"),
        (HEADER + '"eatType[pub], area[riverside]",A ref.\n', r"line 2: MR has no name"),
        ("", r"devset\.csv: empty file"),
        (HEADER, r"devset\.csv: header only"),
    ],
    ids=["extra-field", "unterminated-quote", "missing-column", "empty-ref", "bad-mr",
         "unknown-slot", "no-name", "empty-file", "header-only"],
)  # fmt: skip
def test_bad_files_are_one_line_data_errors(tmp_path: Path, text: str, message: str) -> None:
    data_dir = write_e2e(tmp_path, "devset.csv", text)
    with pytest.raises(DataError, match=message) as info:
        load("dev", data_dir)
    assert "\n" not in str(info.value)


def test_missing_file_and_not_utf8(tmp_path: Path) -> None:
    data_dir = write_e2e(tmp_path, "devset.csv", HEADER + GOOD_ROW)
    with pytest.raises(DataError, match=r"testset_w_refs\.csv: file not found \(nor testset_w_refs\.csv\.gz\)"):
        load("test", data_dir)
    (tmp_path / "e2e" / "trainset.csv").write_bytes(HEADER.encode() + b'"name[Caf\xe9]",ref\n')
    with pytest.raises(DataError, match=r"trainset\.csv: byte \d+ is not UTF-8"):
        load("train", data_dir)
    (tmp_path / "e2e" / "trainset.csv").unlink()
    (tmp_path / "e2e" / "trainset.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"trainset\.csv\.gz: cannot read"):
        load("train", data_dir)


def test_file_edits_are_seen_despite_the_cache(tmp_path: Path) -> None:
    data_dir = write_e2e(tmp_path, "devset.csv", HEADER + GOOD_ROW)
    assert len(load("dev", data_dir)) == 1
    path = tmp_path / "e2e" / "devset.csv"
    path.write_text(HEADER + GOOD_ROW * 2, encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert len(load("dev", data_dir)) == 2


# --------------------------------------------------------------------------- hub and options


def fake_datasets(monkeypatch: pytest.MonkeyPatch, load_dataset) -> None:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hub_copy_is_used_without_a_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name: str, split: str) -> list[dict]:
        calls.append((name, split))
        mr = "name[The Eagle], priceRange[£20-25]"
        return [{"meaning_representation": mr, "human_reference": "It's £20-25."}] * 2

    fake_datasets(monkeypatch, load_dataset)
    examples = load("dev", None, format="paper")
    assert calls == [("e2e_nlg", "validation")]
    assert [e.source for e in examples] == ["name : The Eagle | price : £ 20 - 25"] * 2
    assert examples[0].target == "It 's £ 20 - 25 ."


def test_no_data_anywhere_is_one_line_saying_what_to_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def load_dataset(name: str, split: str) -> None:
        raise ConnectionError("Couldn't reach 'e2e_nlg' on the Hub\nsecond line")

    fake_datasets(monkeypatch, load_dataset)
    for data_dir in (None, tmp_path):  # no directory, or one without e2e/
        with pytest.raises(BenchError, match="pass --data-dir or set BENCH_DATA_DIR") as info:
            load("train", data_dir)
        assert "\n" not in str(info.value)


def test_options_and_splits_are_checked(tmp_path: Path) -> None:
    ds = DATASETS.get("e2e")()
    assert isinstance(ds, DatasetBuilder)
    assert ds.metrics == e2e_module.E2E_METRICS and ds.score_groups == {"all": {}}
    data_dir = write_e2e(tmp_path, "devset.csv", HEADER + GOOD_ROW)
    with pytest.raises(BenchError, match='did you mean "format"'):
        load("dev", data_dir, fromat="paper")
    with pytest.raises(BenchError, match='did you mean "paper"'):
        load("dev", data_dir, format="papre")
    with pytest.raises(BenchError, match='did you mean "dev"'):
        load("devv", data_dir)
