"""WebNLG Challenge 2017 (Gardent et al., 2017), as used by Li & Liang (2021), Section 5.

Source: the challenge XML release (``webnlg_challenge_2017/{train,dev}/*triples/*.xml`` and
``test/testdata_with_lex.xml``), or the Hugging Face hub copy (``webnlg-challenge/web_nlg``,
config ``webnlg_challenge_2017``) when no data directory is given.

- Input: the *modified* triples linearized ``s1 : r1 : o1 | s2 : r2 : o2``. Entities keep
  DBpedia's ``_`` for spaces by default, as the authors' JSON and code did (option
  ``underscores_to_spaces``). The authors' code also put `` | `` before the first triple (a
  quirk of ``temp_triples += ' | '``); the paper's stated format, used here, does not.
- Targets: one example per lexicalisation, keeping only those the release marks
  ``comment="good"`` (the authors' filter; option ``good_only``). An entry left with no
  reference is dropped, with a warning: 5 train and 1 dev entries of the release.
- Test: the 1,862 entries of ``testdata_with_lex.xml`` in file order (``Id1``..``Id1862``),
  scored on ALL, SEEN (10 training categories, 971) and UNSEEN (5 new categories, 891).
- Fields: ``category``, ``seen`` ("yes"/"no"), ``size`` (number of triples), ``eid``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.datasets._triples import (
    XmlEntry,
    check_options,
    folder,
    hub_split,
    linearize,
    parse_entries_xml,
    parse_triple,
)
from bench.errors import BenchError, DataError, did_you_mean
from bench.interfaces import Example
from bench.registry import DATASETS

log = logging.getLogger(__name__)

# The five test categories absent from train/dev (the paper's "U" column).
UNSEEN_CATEGORIES = frozenset(
    {"Artist", "Politician", "MeanOfTransportation", "Athlete", "CelestialBody"}
)
SEEN_CATEGORIES = frozenset(
    {"Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
     "SportsTeam", "University", "WrittenWork"}
)
RELEASE = "webnlg_challenge_2017"
TEST_FILE = "testdata_with_lex.xml"
HUB_ID = "webnlg-challenge/web_nlg"


def release_files(webnlg_dir: Path, split: str) -> list[Path]:
    """The XML files of ``split`` in sorted path order (the order of the authors' JSON)."""
    root = webnlg_dir / RELEASE
    if split == "test":
        path = root / "test" / TEST_FILE
        if not path.is_file():
            raise DataError(f"webnlg: missing test file {path}")
        return [path]
    files = sorted((root / split).glob("*triples/*.xml"))
    if not files:
        raise DataError(f"webnlg: no {split} files {root / split}/*triples/*.xml")
    return files


def read_entries(webnlg_dir: Path, split: str) -> list[tuple[Path, XmlEntry]]:
    """Every entry of ``split`` with the file it came from, before any lexicalisation filter."""
    return [
        (path, entry)
        for path in release_files(webnlg_dir, split)
        for entry in parse_entries_xml(path, dataset="WebNLG")
    ]


@DATASETS.register("webnlg")
class WebNLG:
    """WebNLG 2017: DBpedia triple sets -> English text; 10 seen + 5 unseen test categories."""

    name: ClassVar[str] = "webnlg"
    VERSION: ClassVar[str] = "1"
    task: ClassVar[str] = "table_to_text"
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    metrics: ClassVar[Mapping[str, str]] = {
        "bleu": "webnlg_bleu",
        "meteor": "webnlg_meteor",
        "ter": "webnlg_ter",
        "chrf": "chrf_pp",
    }
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = {
        "all": {},
        "seen": {"seen": ["yes"]},
        "unseen": {"seen": ["no"]},
    }
    options: ClassVar[Mapping[str, Any]] = {"good_only": True, "underscores_to_spaces": False}

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; a BenchError names a bad key or value (the suite
        calls this at validation time, so `bench validate` catches what a run would)."""
        return check_options(cls.name, options, cls.options)

    def load(
        self, split: str, *, data_dir: Path | None, options: Mapping[str, Any]
    ) -> list[Example]:
        if split not in self.splits:
            raise BenchError(f"webnlg: unknown split {split!r}{did_you_mean(split, self.splits)}")
        opts = self.check_options(options)
        if data_dir is None:
            return self._from_hub(split, opts)
        entries = read_entries(folder(data_dir, self.name), split)
        rows = []
        for path, entry in entries:
            # Entry ids restart in every train/dev file; the test file's ids are unique.
            stem = "" if split == "test" else f"{path.stem}/"
            where = f"{path}, entry {entry.position} (eid={entry.eid})"
            lexes = [(lex.lid, lex.comment, lex.text, where) for lex in entry.lexes]
            rows.append((f"{split}/{stem}{entry.eid}", entry.category, entry.triples, lexes))
        return self._examples(split, rows, opts)

    def _from_hub(self, split: str, opts: Mapping[str, Any]) -> list[Example]:
        hub_split_name = {"train": "train", "dev": "dev", "test": "test"}[split]
        data = hub_split(self.name, HUB_ID, RELEASE, hub_split_name)
        rows = []
        for i, rec in enumerate(data):
            # The hub's test split concatenates three files; keep the one the paper scores.
            if split == "test" and rec["test_category"] != TEST_FILE.removesuffix(".xml"):
                continue
            where = f"hub {HUB_ID} {split} row {i} (eid={rec['eid']})"
            triples = tuple(
                parse_triple(t, where=where) for t in rec["modified_triple_sets"]["mtriple_set"][0]
            )
            lex = rec["lex"]
            lexes = [
                (lid, comment or None, text.strip(), where)
                for lid, comment, text in zip(lex["lid"], lex["comment"], lex["text"])
            ]
            size = rec["size"]
            sid = f"{split}/{rec['eid']}" if split == "test" else f"{split}/{size}triples/{i}"
            rows.append((sid, rec["category"], triples, lexes))
        return self._examples(split, rows, opts)

    def _examples(
        self, split: str, rows: list[tuple[str, str, tuple, list]], opts: Mapping[str, Any]
    ) -> list[Example]:
        """Examples from (source_id, category, triples, lexes) rows; the shared filtering."""
        out: list[Example] = []
        dropped = 0
        for source_id, category, triples, lexes in rows:
            if category not in SEEN_CATEGORIES | UNSEEN_CATEGORIES:
                raise DataError(
                    f"{lexes[0][3] if lexes else source_id}: unknown WebNLG 2017 category "
                    f"{category!r}{did_you_mean(category, SEEN_CATEGORIES | UNSEEN_CATEGORIES)}"
                )
            source = linearize(triples, underscores_to_spaces=opts["underscores_to_spaces"])
            fields = {
                "category": category,
                "seen": "no" if category in UNSEEN_CATEGORIES else "yes",
                "size": str(len(triples)),
                "eid": source_id.rsplit("/", 1)[-1],
            }
            kept = 0
            for lid, comment, text, where in lexes:
                if opts["good_only"] and comment is not None and comment != "good":
                    continue
                if not text:
                    raise DataError(f"{where}, lex {lid or '?'}: empty reference text")
                out.append(Example(f"{source_id}/{lid}", source_id, source, text, fields))
                kept += 1
            if kept == 0:
                dropped += 1
        if dropped:
            log.warning("webnlg %s: %d entries have no good lexicalisation and are left out",
                        split, dropped)
        if not out:
            raise DataError(f"webnlg {split}: no examples were read")
        return out
