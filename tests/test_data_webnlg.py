"""WebNLG 2017 loader: small project-written XML samples, bad files, and the real release."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from bench.datasets._triples import linearize
from bench.datasets.webnlg import WebNLG, read_entries
from bench.errors import BenchError, DataError
from bench.interfaces import DatasetBuilder, group_references
from bench.registry import DATASETS


def real_data_dir() -> Path:
    """$BENCH_DATA_DIR, else the shared data folder beside the repo; skip when absent."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get("BENCH_DATA_DIR") or default)
    if not (path / "webnlg" / "webnlg_challenge_2017").is_dir():
        pytest.skip(f"WebNLG 2017 release not found under {path} (set BENCH_DATA_DIR)")
    return path


def entry_xml(eid: str, category: str, triples: list[str], lexes: list[tuple[str, str]]) -> str:
    mt = "".join(f"<mtriple>{t}</mtriple>" for t in triples)
    lx = "".join(f'<lex comment="{c}" lid="Id{i}">{t}</lex>' for i, (c, t) in enumerate(lexes, 1))
    return (
        f'<entry category="{category}" eid="{eid}" size="{len(triples)}">'
        f"<originaltripleset><otriple>{triples[0]}</otriple></originaltripleset>"
        f"<modifiedtripleset>{mt}</modifiedtripleset>{lx}</entry>"
    )


def write_release(root: Path, files: dict[str, list[str]]) -> Path:
    """A data dir holding webnlg/webnlg_challenge_2017/<relpath> files of the given entries."""
    for rel, entries in files.items():
        path = root / "webnlg" / "webnlg_challenge_2017" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "<benchmark><entries>" + "".join(entries) + "</entries></benchmark>", encoding="utf-8"
        )
    return root


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return write_release(tmp_path, {
        "train/1triples/1triple_allSolutions_Airport_train_challenge.xml": [
            entry_xml("Id1", "Airport", ["Aarhus_Airport | cityServed | Aarhus"],
                      [("good", "Aarhus airport serves Aarhus."), ("toFix", "aarhus airport")]),
            entry_xml("Id2", "Airport", ["Aarhus_Airport | elevation | 25.0"],
                      [("toFix", "only a bad one")]),
        ],
        "train/2triples/2triples_City_train_challenge.xml": [
            entry_xml("Id1", "City", ["Aarhus | country | Denmark", "Aarhus | leaderName | J_B"],
                      [("good", "Aarhus is in Denmark, led by J B."),
                       ("good", "J B leads Aarhus.")]),
        ],
        "test/testdata_with_lex.xml": [
            entry_xml("Id1", "Airport", ["A_Port | runwayLength | 3000"],
                      [("good", "Long runway.")]),
            entry_xml("Id2", "Artist", ["Bob_Dylan | genre | Folk"],
                      [("good", "Dylan plays folk.")]),
        ],
    })


def test_registered_and_protocol() -> None:
    builder = DATASETS.get("webnlg")()
    assert isinstance(builder, DatasetBuilder)
    assert builder.metrics == {"bleu": "webnlg_bleu", "meteor": "webnlg_meteor",
                               "ter": "webnlg_ter", "chrf": "chrf_pp"}
    assert builder.score_groups["unseen"] == {"seen": ["no"]}


def test_sample_train_good_only_and_linearization(sample: Path) -> None:
    ex = WebNLG().load("train", data_dir=sample, options={})
    # The toFix lexicalisations go; the entry with only a toFix one disappears.
    assert [e.target for e in ex] == [
        "Aarhus airport serves Aarhus.", "Aarhus is in Denmark, led by J B.", "J B leads Aarhus."
    ]
    assert ex[0].source == "Aarhus_Airport : cityServed : Aarhus"
    assert ex[1].source == "Aarhus : country : Denmark | Aarhus : leaderName : J_B"
    assert ex[1].source_id == ex[2].source_id != ex[0].source_id  # ids restart per file
    assert ex[1].fields == {"category": "City", "seen": "yes", "size": "2", "eid": "Id1"}
    everything = WebNLG().load("train", data_dir=sample, options={"good_only": False})
    assert len(everything) == 5


def test_sample_options(sample: Path) -> None:
    ex = WebNLG().load("train", data_dir=sample, options={"underscores_to_spaces": True})
    assert ex[0].source == "Aarhus Airport : cityServed : Aarhus"
    with pytest.raises(BenchError, match="unknown option 'good_onl'.*good_only"):
        WebNLG().load("train", data_dir=sample, options={"good_onl": True})
    with pytest.raises(BenchError, match="must be bool"):
        WebNLG().load("train", data_dir=sample, options={"good_only": "yes"})
    with pytest.raises(BenchError, match="unknown split 'tset'.*test"):
        WebNLG().load("tset", data_dir=sample, options={})


def test_sample_test_seen_unseen(sample: Path) -> None:
    items = group_references(WebNLG().load("test", data_dir=sample, options={}))
    assert [i.source_id for i in items] == ["test/Id1", "test/Id2"]
    assert [i.fields["seen"] for i in items] == ["yes", "no"]


def test_linearize_flags() -> None:
    triples = [("A_b", "NICKNAME", "C_d"), ("E", "Type", "F")]
    assert linearize(triples) == "A_b : NICKNAME : C_d | E : Type : F"
    assert linearize(triples, lowercase_relations=True, underscores_to_spaces=True) == (
        "A b : nickname : C d | E : type : F"
    )


# ------------------------------------------------------------------------- bad data


def test_broken_xml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "webnlg" / "webnlg_challenge_2017" / "test" / "testdata_with_lex.xml"
    path.parent.mkdir(parents=True)
    path.write_text("<benchmark><entries>\n<entry category='Airport' eid='Id1'>\n</entries>")
    with pytest.raises(DataError) as err:
        WebNLG().load("test", data_dir=tmp_path, options={})
    msg = str(err.value)
    assert "testdata_with_lex.xml, line 3" in msg and "does not parse" in msg
    assert "\n" not in msg


MT = "<modifiedtripleset><mtriple>a | b | c</mtriple></modifiedtripleset>"
GOOD = '<lex comment="good" lid="Id1">x</lex>'


@pytest.mark.parametrize(
    "entry, expected",
    [
        (f'<entry eid="Id1">{MT}</entry>', "entry 1 (eid=Id1): missing attribute 'category'"),
        (f'<entry category="Airport" eid="Id1">{GOOD}</entry>',
         "entry 1 (eid=Id1): missing <modifiedtripleset>"),
        ('<entry category="Airport" eid="Id1"><modifiedtripleset><mtriple>a | b</mtriple>'
         + "</modifiedtripleset></entry>", "expected a triple 'subject | property | object'"),
        (f'<entry category="Airport" eid="Id1">{MT}<lex comment="good" lid="Id7"> </lex></entry>',
         "entry 1 (eid=Id1), lex Id7: empty reference text"),
        (f'<entry category="Airprt" eid="Id1">{MT}{GOOD}</entry>',
         "unknown WebNLG 2017 category 'Airprt' (did you mean \"Airport\"?)"),
    ],
)
def test_bad_entries(tmp_path: Path, entry: str, expected: str) -> None:
    write_release(tmp_path, {"test/testdata_with_lex.xml": [entry]})
    with pytest.raises(DataError, match=re.escape(expected)) as err:
        WebNLG().load("test", data_dir=tmp_path, options={})
    assert "testdata_with_lex.xml" in str(err.value) and "\n" not in str(err.value)


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no folder 'webnlg' in data directory"):
        WebNLG().load("train", data_dir=tmp_path, options={})
    (tmp_path / "webnlg").mkdir()
    with pytest.raises(DataError, match=r"no train files .*\*triples/\*\.xml"):
        WebNLG().load("train", data_dir=tmp_path, options={})
    with pytest.raises(DataError, match="missing test file"):
        WebNLG().load("test", data_dir=tmp_path, options={})


def test_no_data_dir_tries_hub_then_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real hub code runs, made to fail fast: offline mode instead of DNS retries.
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchError) as err:
        WebNLG().load("test", data_dir=None, options={})
    msg = str(err.value)
    assert msg.startswith("webnlg: no data directory given and the Hugging Face hub copy")
    assert msg.endswith("pass --data-dir or set BENCH_DATA_DIR to a folder holding webnlg/")
    assert "\n" not in msg


# ------------------------------------------------------------------------- real data


def test_real_counts() -> None:
    data = real_data_dir()
    webnlg = data / "webnlg"
    # Entries in the release, before the good-only filter (README: 6,940 / 872 / 1,862).
    assert len(read_entries(webnlg, "train")) == 6940
    assert len(read_entries(webnlg, "dev")) == 872
    test = group_references(WebNLG().load("test", data_dir=data, options={}))
    assert len(test) == 1862
    assert [i.source_id for i in test[:3]] == ["test/Id1", "test/Id2", "test/Id3"]
    assert test[-1].source_id == "test/Id1862"
    assert sum(i.fields["seen"] == "no" for i in test) == 891
    assert {i.fields["category"] for i in test if i.fields["seen"] == "no"} == {
        "Artist", "Politician", "MeanOfTransportation", "Athlete", "CelestialBody"}
    assert sum(len(i.references) for i in test) == 4928
    # Good-only: 18,102 lexicalisations minus 77 toFix; 5 entries keep none.
    train = WebNLG().load("train", data_dir=data, options={})
    assert len(train) == 18025
    assert len(group_references(train)) == 6935
    assert {e.fields["seen"] for e in train} == {"yes"}


def test_real_dev_matches_authors_json() -> None:
    """Our dev split equals the paper's own dev JSON: sources, good references and categories."""
    data = real_data_dir()
    path = data / "webnlg" / "prefix_tuning_format" / "dev.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    entries = json.loads(gzip.decompress(path.read_bytes()))["entries"]
    expected = []
    for i, wrapped in enumerate(entries, start=1):
        e = wrapped[str(i)]
        refs = tuple(x["lex"] for x in e["lexicalisations"] if x["comment"] == "good")
        triples = [(t["subject"], t["property"], t["object"]) for t in e["modifiedtripleset"]]
        src = linearize(triples)
        if refs:
            expected.append((src, refs, e["category"]))
    got = [(i.source, i.references, i.fields["category"])
           for i in group_references(WebNLG().load("dev", data_dir=data, options={}))]
    assert len(got) == 871
    assert got == expected
