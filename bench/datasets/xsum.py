"""XSum (Narayan, Cohen & Lapata, 2018), as used by Li & Liang (2021), Section 5.

Source: the official 90/5/5 split of BBC ids (``XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json``,
optionally gzipped: train 204,045 / validation 11,332 / test 11,334) and the preprocessed
release, a folder ``bbc-summary-data/`` with one ``<id>.summary`` per article::

    [SN]URL[SN]            the archived BBC URL
    [SN]TITLE[SN]          the headline (unused)
    [SN]FIRST-SENTENCE[SN] the reference summary
    [SN]RESTBODY[SN]       the document, one paragraph per line

That folder is distributed by the XSum authors on request (EdinburghNLP/XSum); the shared
data folder has the split file only, so loading from files says the documents are missing.
With no data directory, the hub copy ``EdinburghNLP/xsum`` (document, summary, id) is tried;
it has no URL, so its examples carry no topic fields.

- Source: the document, its non-empty lines joined by one space (the form of the seq2seq
  files the authors trained on); the BBC share-panel lines ("Share this with", "Email", ...)
  are removed, as the hub copy does. Truncation to 512 tokens is the training loop's job.
- Target: the first sentence. One reference per document.
- Fields (from the URL, rule in ``bbc_topic``): ``section`` ("news", "sport", ...),
  ``topic`` ("world", "uk", "business", "politics", "health", "technology", ... for news;
  "football", "cricket", ... for sport) and ``subtopic`` (the full slug, "world-europe").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.datasets._triples import check_options, folder, hub_split, load_json, read_bytes
from bench.errors import BenchError, DataError, did_you_mean
from bench.interfaces import Example
from bench.registry import DATASETS

SPLIT_FILE = "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json"
DOCS_FOLDER = "bbc-summary-data"
HUB_ID = "EdinburghNLP/xsum"
SPLIT_KEYS = {"train": "train", "dev": "validation", "test": "test"}
# Lines of the BBC page's share panel that the extraction kept inside RESTBODY.
SHARE_PANEL = frozenset({
    "Share this with", "Email", "Facebook", "Messenger", "Twitter", "Pinterest", "WhatsApp",
    "Linkedin", "LinkedIn", "Copy this link",
    "These are external links and will open in a new window",
})
_SECTION = re.compile(r"^\[SN\]([A-Z-]+)\[SN\]\s*$")
_BBC = re.compile(r"bbc\.(?:co\.uk|com)/([^?#\s]*)")


def bbc_topic(url: str) -> tuple[str, str, str]:
    """(section, topic, subtopic) of a BBC article URL (the Wayback prefix is ignored).

    Rule: take the path after ``bbc.co.uk/`` or ``bbc.com/``; drop empty and all-digit
    segments (the ``0`` of old sport URLs, a bare article id); the first segment is the
    section; the next one, less a trailing ``-<digits>`` article id, is the subtopic, and
    its first ``-``-separated word the topic. So ``.../news/world-europe-123`` gives
    ("news", "world", "world-europe"), ``.../news/uk-scotland-glasgow-west-123`` gives
    ("news", "uk", "uk-scotland-glasgow-west"), ``.../sport/0/football/123`` gives
    ("sport", "football", "football"). Missing parts are "unknown".
    """
    match = None
    for match in _BBC.finditer(url):
        pass  # the last BBC host in the string is the article (the first may be the archive's)
    if match is None:
        return "unknown", "unknown", "unknown"
    segments = [s for s in match.group(1).split("/") if s and not s.isdigit()]
    if not segments:
        return "unknown", "unknown", "unknown"
    section = segments[0]
    if len(segments) < 2:
        return section, "unknown", "unknown"
    subtopic = re.sub(r"-\d+$", "", segments[1])
    if not subtopic or subtopic.isdigit():
        return section, "unknown", "unknown"
    return section, subtopic.split("-")[0], subtopic


def parse_summary_file(path: Path) -> tuple[str, str, str]:
    """(url, summary, document) of one ``<id>.summary`` file; DataError if a part is missing."""
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line.strip())
        elif line.strip():
            raise DataError(f"{path}, line {lineno}: text before the first [SN]...[SN] marker")
    for name in ("URL", "FIRST-SENTENCE", "RESTBODY"):
        if name not in sections:
            raise DataError(f"{path}: missing section [SN]{name}[SN]")
    url = " ".join(x for x in sections["URL"] if x)
    summary = " ".join(x for x in sections["FIRST-SENTENCE"] if x)
    document = " ".join(x for x in sections["RESTBODY"] if x and x not in SHARE_PANEL)
    if not summary:
        raise DataError(f"{path}: empty [SN]FIRST-SENTENCE[SN] (the reference summary)")
    if not document:
        raise DataError(f"{path}: empty [SN]RESTBODY[SN] (the document)")
    return url, summary, document


def split_path(xsum_dir: Path) -> Path:
    for name in (SPLIT_FILE, SPLIT_FILE + ".gz"):
        if (xsum_dir / name).is_file():
            return xsum_dir / name
    raise DataError(f"xsum: missing split file {xsum_dir / SPLIT_FILE}(.gz)")


def load_split_ids(xsum_dir: Path) -> dict[str, list[str]]:
    """The official split: {"train", "validation", "test"} -> BBC ids, in file order."""
    path = split_path(xsum_dir)
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object with keys train, validation, test")
    out: dict[str, list[str]] = {}
    for key in SPLIT_KEYS.values():
        ids = data.get(key)
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise DataError(f"{path}: field {key!r} must be a list of BBC id strings")
        out[key] = ids
    return out


@DATASETS.register("xsum")
class XSum:
    """XSum: BBC article -> its one-sentence summary; topic and section from the URL."""

    name: ClassVar[str] = "xsum"
    VERSION: ClassVar[str] = "1"
    task: ClassVar[str] = "summarization"
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    metrics: ClassVar[Mapping[str, str]] = {
        "rouge1": "rouge1",
        "rouge2": "rouge2",
        "rougeL": "rougeL",
    }
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = {"all": {}}
    options: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; a BenchError names a bad key or value (the suite
        calls this at validation time, so `bench validate` catches what a run would)."""
        return check_options(cls.name, options, cls.options)

    def load(
        self, split: str, *, data_dir: Path | None, options: Mapping[str, Any]
    ) -> list[Example]:
        if split not in self.splits:
            raise BenchError(f"xsum: unknown split {split!r}{did_you_mean(split, self.splits)}")
        self.check_options(options)
        if data_dir is None:
            return self._from_hub(split)
        xsum_dir = folder(data_dir, self.name)
        ids = load_split_ids(xsum_dir)[SPLIT_KEYS[split]]
        docs = xsum_dir / DOCS_FOLDER
        if not docs.is_dir():
            raise DataError(
                f"xsum: the documents are absent: no folder {docs} (one <id>.summary per "
                "article; the XSum authors share it on request, see EdinburghNLP/XSum); only "
                "the split file is here"
            )
        missing = [i for i in ids if not (docs / f"{i}.summary").is_file()]
        if missing:
            raise DataError(
                f"xsum {split}: {len(missing)} of {len(ids)} documents missing from {docs} "
                f"(first: {missing[0]}.summary)"
            )
        out = []
        for bbc_id in ids:
            url, summary, document = parse_summary_file(docs / f"{bbc_id}.summary")
            section, topic, subtopic = bbc_topic(url)
            fields = {"section": section, "topic": topic, "subtopic": subtopic}
            out.append(Example(bbc_id, bbc_id, document, summary, fields))
        return out

    def _from_hub(self, split: str) -> list[Example]:
        data = hub_split(self.name, HUB_ID, None, SPLIT_KEYS[split])
        out = []
        for i, rec in enumerate(data):
            document = " ".join(x.strip() for x in rec["document"].splitlines() if x.strip())
            summary = rec["summary"].strip()
            if not document or not summary:
                raise DataError(f"hub {HUB_ID} {split} row {i} (id={rec['id']}): empty "
                                f"{'document' if not document else 'summary'}")
            out.append(Example(rec["id"], rec["id"], document, summary, {}))
        return out
