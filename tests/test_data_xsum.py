"""XSum loader: project-written split file and .summary documents, topics, bad files, real ids."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from bench.datasets.xsum import XSum, bbc_topic, load_split_ids
from bench.errors import BenchError, DataError
from bench.interfaces import DatasetBuilder
from bench.registry import DATASETS
from bench.splits import EXTRAPOLATION_PRESETS, apply_filter


def real_data_dir() -> Path:
    """$BENCH_DATA_DIR, else the shared data folder beside the repo; skip when absent."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get("BENCH_DATA_DIR") or default)
    if not (path / "xsum").is_dir():
        pytest.skip(f"XSum split file not found under {path} (set BENCH_DATA_DIR)")
    return path


def summary_file(url: str, first: str, body: list[str], title: str = "A title") -> str:
    return (
        f"[SN]URL[SN]\n{url}\n\n[SN]TITLE[SN]\n{title}\n\n[SN]FIRST-SENTENCE[SN]\n{first}\n\n"
        "[SN]RESTBODY[SN]\n" + "\n".join(body) + "\n"
    )


ARCHIVE = "http://web.archive.org/web/20161130152938/"
DOCS = {
    "101": (ARCHIVE + "http://www.bbc.com/news/world-europe-101", "Talks resumed in Paris.",
            ["Ministers met on Monday.", "Share this with", "Email", "They agreed a plan."]),
    "102": (ARCHIVE + "http://www.bbc.co.uk/sport/0/football/102", "City won the cup.",
            ["The final ended 2-1."]),
    "103": (ARCHIVE + "http://www.bbc.co.uk/news/health-103", "A new vaccine was approved.",
            ["Regulators said it was safe."]),
    "104": (ARCHIVE + "http://www.bbc.co.uk/news/uk-scotland-glasgow-west-104", "Roads closed.",
            ["Snow fell overnight."]),
    "105": (ARCHIVE + "http://www.bbc.co.uk/news/business-105", "Shares fell.", ["Markets slid."]),
}
SPLIT = {"train": ["101", "102", "104", "105"], "validation": ["103"], "test": ["103", "102"]}


def write_xsum(root: Path, split: dict = SPLIT, docs: dict = DOCS) -> Path:
    xsum = root / "xsum"
    (xsum / "bbc-summary-data").mkdir(parents=True)
    (xsum / "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json.gz").write_bytes(
        gzip.compress(json.dumps(split).encode())
    )
    for bbc_id, (url, first, body) in docs.items():
        (xsum / "bbc-summary-data" / f"{bbc_id}.summary").write_text(
            summary_file(url, first, body), encoding="utf-8"
        )
    return root


def test_registered_and_protocol() -> None:
    builder = DATASETS.get("xsum")()
    assert isinstance(builder, DatasetBuilder)
    assert builder.task == "summarization"
    assert builder.metrics == {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL"}


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://web.archive.org/web/2016/http://www.bbc.co.uk/news/world-europe-29604402",
         ("news", "world", "world-europe")),
        ("http://www.bbc.com/news/uk-scotland-glasgow-west-38161386",
         ("news", "uk", "uk-scotland-glasgow-west")),
        ("http://www.bbc.com/news/business-123", ("news", "business", "business")),
        ("http://www.bbc.com/news/entertainment-arts-123",
         ("news", "entertainment", "entertainment-arts")),
        ("http://www.bbc.co.uk/sport/0/football/25459427", ("sport", "football", "football")),
        ("http://www.bbc.com/sport/cricket/36543658?x=1#a", ("sport", "cricket", "cricket")),
        ("http://www.bbc.com/news/10604117", ("news", "unknown", "unknown")),
        ("http://example.org/news/world-1", ("unknown", "unknown", "unknown")),
    ],
)
def test_bbc_topic_rule(url: str, expected: tuple[str, str, str]) -> None:
    assert bbc_topic(url) == expected


def test_sample_load(tmp_path: Path) -> None:
    data = write_xsum(tmp_path)
    train = XSum().load("train", data_dir=data, options={})
    assert [e.source_id for e in train] == ["101", "102", "104", "105"]  # split-file order
    first = train[0]
    # Share-panel lines dropped; paragraphs joined by one space; the first sentence is the target.
    assert first.source == "Ministers met on Monday. They agreed a plan."
    assert first.target == "Talks resumed in Paris."
    assert first.fields == {"section": "news", "topic": "world", "subtopic": "world-europe"}
    assert train[1].fields["section"] == "sport"
    dev = XSum().load("dev", data_dir=data, options={})
    assert [e.example_id for e in dev] == ["103"]
    with pytest.raises(BenchError, match="unknown option 'truncate'"):
        XSum().load("dev", data_dir=data, options={"truncate": 512})


def test_extrapolation_presets_on_sample(tmp_path: Path) -> None:
    data = write_xsum(tmp_path)
    train = XSum().load("train", data_dir=data, options={})
    news = EXTRAPOLATION_PRESETS["xsum"]["news_to_sports"]
    assert [e.source_id for e in apply_filter(train, news["train"])] == ["101", "104", "105"]
    test = XSum().load("test", data_dir=data, options={})
    assert [e.source_id for e in apply_filter(test, news["eval"])] == ["102"]
    within = EXTRAPOLATION_PRESETS["xsum"]["within_news"]
    assert [e.source_id for e in apply_filter(train, within["train"])] == ["101", "104", "105"]
    assert [e.source_id for e in apply_filter(test, within["eval"])] == ["103"]  # health


# ------------------------------------------------------------------------- bad data


def test_missing_documents_folder(tmp_path: Path) -> None:
    data = write_xsum(tmp_path)
    (data / "xsum" / "bbc-summary-data").rename(data / "xsum" / "elsewhere")
    with pytest.raises(DataError, match="xsum: the documents are absent: no folder .*bbc-summary"):
        XSum().load("test", data_dir=data, options={})


def test_missing_one_document_is_an_error_not_a_smaller_split(tmp_path: Path) -> None:
    data = write_xsum(tmp_path, docs={k: v for k, v in DOCS.items() if k != "104"})
    with pytest.raises(DataError, match=r"xsum train: 1 of 4 documents missing .*104\.summary"):
        XSum().load("train", data_dir=data, options={})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[SN]URL[SN]\nhttp://www.bbc.com/news/a-1\n\n[SN]RESTBODY[SN]\nBody.\n",
         "missing section [SN]FIRST-SENTENCE[SN]"),
        (summary_file("http://www.bbc.com/news/a-1", "", ["Body."]),
         "empty [SN]FIRST-SENTENCE[SN]"),
        (summary_file("http://www.bbc.com/news/a-1", "Sum.", ["Share this with", "Email"]),
         "empty [SN]RESTBODY[SN]"),
        ("stray text\n" + summary_file("http://www.bbc.com/news/a-1", "S.", ["B."]),
         "line 1: text before the first [SN]...[SN] marker"),
    ],
)
def test_bad_summary_files(tmp_path: Path, text: str, expected: str) -> None:
    data = write_xsum(tmp_path)
    (data / "xsum" / "bbc-summary-data" / "103.summary").write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        XSum().load("dev", data_dir=data, options={})
    assert "103.summary" in str(err.value) and expected in str(err.value)


def test_bad_split_file(tmp_path: Path) -> None:
    data = write_xsum(tmp_path, split={"train": ["101"], "test": ["103"]})
    with pytest.raises(DataError, match="field 'validation' must be a list of BBC id strings"):
        XSum().load("dev", data_dir=data, options={})
    path = data / "xsum" / "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json.gz"
    path.write_bytes(gzip.compress(b'{"train": ["1",\n "2" "3"]}'))
    with pytest.raises(DataError, match=r"SPLIT-90-5-5.json.gz, line 2, column \d+: JSON"):
        XSum().load("train", data_dir=data, options={})


def test_no_data_dir_tries_hub_then_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchError) as err:
        XSum().load("test", data_dir=None, options={})
    msg = str(err.value)
    assert msg.startswith("xsum: no data directory given and the Hugging Face hub copy")
    assert msg.endswith("pass --data-dir or set BENCH_DATA_DIR to a folder holding xsum/")


# ------------------------------------------------------------------------- real data


def test_real_split_ids() -> None:
    ids = load_split_ids(real_data_dir() / "xsum")
    assert {k: len(v) for k, v in ids.items()} == {
        "train": 204045, "validation": 11332, "test": 11334}
    every = [i for v in ids.values() for i in v]
    assert len(set(every)) == len(every) == 226711  # disjoint splits
    assert all(i.isdigit() for i in every)


def test_real_documents_absent_is_one_line() -> None:
    data = real_data_dir()
    if (data / "xsum" / "bbc-summary-data").is_dir():
        pytest.skip("the XSum documents are present here")
    with pytest.raises(DataError) as err:
        XSum().load("test", data_dir=data, options={})
    assert "documents are absent" in str(err.value) and "\n" not in str(err.value)
