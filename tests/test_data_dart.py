"""DART v1.1.1 loader: project-written JSON/XML samples, bad files, and the real release."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

import bench.datasets.dart as dart_module
from bench.datasets.dart import DART
from bench.errors import BenchError, DataError
from bench.interfaces import DatasetBuilder, group_references
from bench.registry import DATASETS


def real_data_dir() -> Path:
    """$BENCH_DATA_DIR, else the shared data folder beside the repo; skip when absent."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get("BENCH_DATA_DIR") or default)
    if not (path / "dart").is_dir():
        pytest.skip(f"DART v1.1.1 not found under {path} (set BENCH_DATA_DIR)")
    return path


DEV = [
    {"tripleset": [["Mars Hill College", "JOINED", "1973"],
                   ["Mars Hill College", "LOCATION", "Mars Hill, North Carolina"]],
     "subtree_was_extended": True,
     "annotations": [{"source": "WikiSQL_decl_sents", "text": "A school joined in 1973."},
                     {"source": "WikiSQL_decl_sents", "text": "Mars Hill joined in 1973."}]},
    {"tripleset": [["[TABLECONTEXT]", "[TITLE]", "Jeff Daniels"]],
     "annotations": [{"source": "WikiTableQuestions_lily", "text": "Jeff Daniels."}]},
]

TEST_XML = """<?xml version='1.0' encoding='utf-8'?>
<benchmark>
  <entries>
    <entry category="MISC" eid="Id1" size="1">
      <modifiedtripleset>
        <mtriple>Newberry College | NICKNAME | Wolves</mtriple>
      </modifiedtripleset>
      <lex comment="WikiSQL_decl_sents" lid="Id1">Newberry College's nickname is the wolves.</lex>
    </entry>
    <entry category="MISC" eid="Id9" size="2">
      <modifiedtripleset>
        <mtriple>reserved | NO._OF_CHANNELS | 1</mtriple>
        <mtriple>reserved | TYPE | audio</mtriple>
      </modifiedtripleset>
      <lex comment="WikiTableQuestions_lily" lid="Id1">reserved has an audio type</lex>
      <lex comment="WikiTableQuestions_lily" lid="Id2" />
    </entry>
  </entries>
</benchmark>
"""


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    dart = tmp_path / "dart"
    dart.mkdir()
    (dart / "dart-v1.1.1-full-dev.json").write_text(json.dumps(DEV), encoding="utf-8")
    (dart / "dart-v1.1.1-full-test.xml.gz").write_bytes(gzip.compress(TEST_XML.encode()))
    return tmp_path


def test_registered_and_protocol() -> None:
    builder = DATASETS.get("dart")()
    assert isinstance(builder, DatasetBuilder)
    assert builder.metrics == {"bleu": "dart_bleu", "meteor": "dart_meteor", "ter": "dart_ter"}
    # The test-version caveat is part of the loader's documentation.
    assert "5,097" in (dart_module.__doc__ or "") and "6,959" in (dart_module.__doc__ or "")


def test_json_one_example_per_annotation(sample: Path) -> None:
    ex = DART().load("dev", data_dir=sample, options={})
    assert [e.target for e in ex] == [
        "A school joined in 1973.", "Mars Hill joined in 1973.", "Jeff Daniels."]
    # Relations lower-cased as the authors' code did, placeholders included.
    assert ex[0].source == (
        "Mars Hill College : joined : 1973"
        " | Mars Hill College : location : Mars Hill, North Carolina"
    )
    assert ex[2].source == "[TABLECONTEXT] : [title] : Jeff Daniels"
    assert ex[0].source_id == ex[1].source_id == "dev/1" and ex[2].source_id == "dev/2"
    assert ex[2].fields == {"origin": "WikiTableQuestions_lily"}
    kept = DART().load("dev", data_dir=sample, options={"lowercase_relations": False})
    assert kept[2].source == "[TABLECONTEXT] : [TITLE] : Jeff Daniels"


def test_xml_test_split_and_empty_annotation(sample: Path) -> None:
    items = group_references(DART().load("test", data_dir=sample, options={}))
    assert [i.source_id for i in items] == ["test/1", "test/2"]
    assert items[1].source == "reserved : no._of_channels : 1 | reserved : type : audio"
    # The empty <lex/> is left out by default, as DART's own reference files do ...
    assert items[1].references == ("reserved has an audio type",)
    # ... and is a DataError when asked to keep every annotation.
    with pytest.raises(DataError, match=r"entry 2 \(eid=Id9\), annotation 2: empty reference"):
        DART().load("test", data_dir=sample, options={"drop_empty_annotations": False})


def test_missing_train_names_what_and_where(sample: Path) -> None:
    with pytest.raises(DataError) as err:
        DART().load("train", data_dir=sample, options={})
    msg = str(err.value)
    assert "the train split is missing" in msg and "dart-v1.1.1-full-train.json" in msg
    assert "github.com/Yale-LILY/dart" in msg and "\n" not in msg


# ------------------------------------------------------------------------- bad data


def write_dev(root: Path, text: str) -> Path:
    (root / "dart").mkdir(exist_ok=True)
    (root / "dart" / "dart-v1.1.1-full-dev.json").write_text(text, encoding="utf-8")
    return root


def test_json_that_does_not_parse(tmp_path: Path) -> None:
    write_dev(tmp_path, '[\n  {"tripleset": [["a", "b", "c"]],\n   "annotations": [}\n]')
    with pytest.raises(DataError, match=r"dart-v1.1.1-full-dev.json, line 3, column \d+: JSON"):
        DART().load("dev", data_dir=tmp_path, options={})


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"annotations": [{"text": "x"}]}, "tripleset 2: missing field 'tripleset'"),
        ({"tripleset": [["a", "b", "c"]]}, "tripleset 2: missing field 'annotations'"),
        ({"tripleset": [["a", "b"]], "annotations": [{"text": "x"}]},
         "tripleset 2: 'tripleset' must be a non-empty list of [s, p, o] strings"),
        ({"tripleset": [["a", "b", "c"]], "annotations": [{"source": "e2e"}]},
         "tripleset 2, annotation 1: missing field 'text'"),
        ({"tripleset": [["a", "b", "c"]], "annotations": [{"text": "  "}]},
         "tripleset 2: no non-empty annotation"),
        ({"tripleset": [["a", "b", "c"]], "annotations": []},
         "tripleset 2: no non-empty annotation"),
    ],
)
def test_bad_records(tmp_path: Path, record: dict, expected: str) -> None:
    write_dev(tmp_path, json.dumps([DEV[1], record]))
    with pytest.raises(DataError) as err:
        DART().load("dev", data_dir=tmp_path, options={})
    assert expected in str(err.value) and "dart-v1.1.1-full-dev.json" in str(err.value)


def test_broken_gzip_and_xml(tmp_path: Path) -> None:
    (tmp_path / "dart").mkdir()
    bad = tmp_path / "dart" / "dart-v1.1.1-full-test.xml.gz"
    bad.write_bytes(gzip.compress(TEST_XML.encode())[:60])
    with pytest.raises(DataError, match="dart-v1.1.1-full-test.xml.gz: cannot read file"):
        DART().load("test", data_dir=tmp_path, options={})
    bad.write_bytes(gzip.compress(TEST_XML.replace("</mtriple>", "", 1).encode()))
    with pytest.raises(DataError, match=r"test.xml.gz, line 7, column \d+: XML does not parse"):
        DART().load("test", data_dir=tmp_path, options={})


def test_no_data_dir_tries_hub_then_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchError) as err:
        DART().load("dev", data_dir=None, options={})
    msg = str(err.value)
    assert msg.startswith("dart: no data directory given and the Hugging Face hub copy")
    assert msg.endswith("pass --data-dir or set BENCH_DATA_DIR to a folder holding dart/")


# ------------------------------------------------------------------------- real data


def test_real_dev_and_test() -> None:
    data = real_data_dir()
    dev = DART().load("dev", data_dir=data, options={})
    assert len(group_references(dev)) == 2768
    assert len(dev) == 6980
    test = group_references(DART().load("test", data_dir=data, options={}))
    assert len(test) == 5097  # the current upstream test set, not the paper's 6,959
    assert sum(len(i.references) for i in test) == 12552 - 1  # one empty <lex/> left out


def test_real_test_matches_official_references() -> None:
    """Our test references, in order, are the official first three per entry (modulo the
    official files' lowercasing and tokenization)."""
    data = real_data_dir()
    ref0 = data / "dart" / "dart_reference" / "all-delex-reference0.lex"
    if not ref0.is_file():
        pytest.skip(f"{ref0} not found")
    official = ref0.read_text(encoding="utf-8").splitlines()
    test = group_references(DART().load("test", data_dir=data, options={}))
    assert len(official) == len(test)

    def words(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    same = sum(words(i.references[0]) == words(o) for i, o in zip(test, official))
    assert same / len(test) > 0.99, same
