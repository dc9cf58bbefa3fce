"""DART v1.1.1 (Nan et al., 2021), as used by Li & Liang (2021), Section 5.

Source: ``dart-v1.1.1-full-{train,dev,test}.json`` (a list of ``{"tripleset": [[s, p, o]..],
"annotations": [{"source", "text"}..]}``), or, where a split's JSON is absent, the XML file of
the same release (WebNLG layout; ``<lex comment=source>``), optionally gzipped. With no data
directory, the Hugging Face hub copy (``Yale-LILY/dart``) is tried.

- Input: ``s1 : r1 : o1 | s2 : r2 : o2`` with relations lower-cased, as the authors' code did
  (``rela.lower()``; option ``lowercase_relations``). ``[TABLECONTEXT]``/``[TITLE]`` stay.
- Targets: one training example per annotation. An annotation with empty text (the current
  test XML has one: eid Id116, lid Id2) carries no reference; it is left out, as the authors'
  evaluation code and DART's official reference files do (option
  ``drop_empty_annotations``; with it off, an empty text is a DataError). A tripleset left
  with no reference at all is always a DataError.
- Fields: ``origin`` (the annotation sources, ``|``-joined: WikiSQL_lily, webnlg, e2e...).

Test-version caveat: upstream rewrote v1.1.1's test set in place on 2021-04-20. The files
here (and, per its card, the hub's current copy) hold the *current* test set (5,097
triplesets, 12,552 annotations); the paper used the 2020 version (6,959 triplesets, also in
older hub snapshots). Scores on the two are not comparable. The dev set (2,768 triplesets) is the same in both. The train JSON (30,526
triplesets / 62,659 annotations; over 4 MiB) is not in the shared data folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.datasets._triples import (
    check_options,
    folder,
    hub_split,
    linearize,
    load_json,
    parse_entries_xml,
)
from bench.errors import BenchError, DataError, did_you_mean
from bench.interfaces import Example
from bench.registry import DATASETS

log = logging.getLogger(__name__)

FILE_STEM = "dart-v1.1.1-full-{split}"
HUB_ID = "Yale-LILY/dart"
WHERE_TO_GET = (
    "get it from https://github.com/Yale-LILY/dart (data/v1.1.1/) or the Hugging Face hub "
    f"({HUB_ID})"
)

# One tripleset: (where, triples, [(annotation index, source, text)]).
Record = tuple[str, list[tuple[str, str, str]], list[tuple[int, str, str]]]


def split_file(dart_dir: Path, split: str) -> Path:
    """The JSON file of ``split`` if present, else its XML (plain or gzipped)."""
    stem = FILE_STEM.format(split=split)
    for name in (f"{stem}.json", f"{stem}.json.gz", f"{stem}.xml", f"{stem}.xml.gz"):
        if (dart_dir / name).is_file():
            return dart_dir / name
    raise DataError(
        f"dart: the {split} split is missing: no {stem}.json or {stem}.xml(.gz) in {dart_dir}; "
        + WHERE_TO_GET
    )


def _records_json(path: Path) -> list[Record]:
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: top level is {type(data).__name__}; expected a JSON list")
    records: list[Record] = []
    for i, item in enumerate(data, start=1):
        where = f"{path}, tripleset {i}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object with 'tripleset' and 'annotations'")
        for key in ("tripleset", "annotations"):
            if key not in item:
                raise DataError(f"{where}: missing field {key!r}")
        triples = item["tripleset"]
        if (
            not isinstance(triples, list)
            or not triples
            or not all(
                isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) and x for x in t)
                for t in triples
            )
        ):
            raise DataError(f"{where}: 'tripleset' must be a non-empty list of [s, p, o] strings")
        if not isinstance(item["annotations"], list):
            raise DataError(f"{where}: 'annotations' must be a list of {{source, text}} objects")
        anns = []
        for j, ann in enumerate(item["annotations"], start=1):
            if not isinstance(ann, dict) or "text" not in ann:
                raise DataError(f"{where}, annotation {j}: missing field 'text'")
            if not isinstance(ann["text"], str):
                raise DataError(f"{where}, annotation {j}: 'text' must be a string")
            anns.append((j, str(ann.get("source", "")), ann["text"].strip()))
        records.append((where, [tuple(t) for t in triples], anns))
    return records


def _records_xml(path: Path) -> list[Record]:
    return [
        (
            f"{path}, entry {e.position} (eid={e.eid})",
            list(e.triples),
            [(j, lex.comment or "", lex.text) for j, lex in enumerate(e.lexes, start=1)],
        )
        for e in parse_entries_xml(path, dataset="DART")
    ]


@DATASETS.register("dart")
class DART:
    """DART v1.1.1: open-domain triple sets (tables, WikiSQL, WebNLG, E2E) -> text."""

    name: ClassVar[str] = "dart"
    VERSION: ClassVar[str] = "1"
    task: ClassVar[str] = "table_to_text"
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    metrics: ClassVar[Mapping[str, str]] = {
        "bleu": "dart_bleu",
        "meteor": "dart_meteor",
        "ter": "dart_ter",
    }
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = {"all": {}}
    options: ClassVar[Mapping[str, Any]] = {
        "lowercase_relations": True,
        "drop_empty_annotations": True,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; a BenchError names a bad key or value (the suite
        calls this at validation time, so `bench validate` catches what a run would)."""
        return check_options(cls.name, options, cls.options)

    def load(
        self, split: str, *, data_dir: Path | None, options: Mapping[str, Any]
    ) -> list[Example]:
        if split not in self.splits:
            raise BenchError(f"dart: unknown split {split!r}{did_you_mean(split, self.splits)}")
        opts = self.check_options(options)
        if data_dir is None:
            return self._examples(split, self._hub_records(split), opts)
        path = split_file(folder(data_dir, self.name), split)
        is_json = path.name.endswith((".json", ".json.gz"))
        records = _records_json(path) if is_json else _records_xml(path)
        return self._examples(split, records, opts)

    def _hub_records(self, split: str) -> list[Record]:
        data = hub_split(self.name, HUB_ID, None, {"dev": "validation"}.get(split, split))
        records: list[Record] = []
        for i, rec in enumerate(data, start=1):
            anns = rec["annotations"]
            records.append((
                f"hub {HUB_ID} {split} row {i}",
                [tuple(t) for t in rec["tripleset"]],
                [(j, src, text.strip())
                 for j, (src, text) in enumerate(zip(anns["source"], anns["text"]), start=1)],
            ))
        return records

    def _examples(
        self, split: str, records: list[Record], opts: Mapping[str, Any]
    ) -> list[Example]:
        out: list[Example] = []
        dropped: list[str] = []
        for position, (where, triples, anns) in enumerate(records, start=1):
            source_id = f"{split}/{position}"
            source = linearize(triples, lowercase_relations=opts["lowercase_relations"])
            fields = {"origin": "|".join(sorted({src for _, src, _ in anns if src}))}
            kept = 0
            for j, _src, text in anns:
                if not text:
                    if opts["drop_empty_annotations"]:
                        dropped.append(f"{where}, annotation {j}")
                        continue
                    raise DataError(f"{where}, annotation {j}: empty reference text")
                out.append(Example(f"{source_id}/{j}", source_id, source, text, fields))
                kept += 1
            if kept == 0:
                raise DataError(f"{where}: no non-empty annotation; expected a reference")
        if dropped:
            log.warning("dart %s: %d empty annotations left out (first: %s)",
                        split, len(dropped), dropped[0])
        return out
