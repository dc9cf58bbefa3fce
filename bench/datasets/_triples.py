"""Shared helpers for the triple-set datasets (WebNLG 2017, DART v1.1.1).

Both releases ship the WebNLG challenge XML layout (``<benchmark><entries><entry>`` with
``<modifiedtripleset><mtriple>s | p | o</mtriple>`` and ``<lex comment=.. lid=..>text</lex>``),
and both are linearized as in Li & Liang (2021), Section 5.1: ``s1 : r1 : o1 | s2 : r2 : o2``.
The leading space the authors put in front of the source (`` s : p : o ...``) is added by the
shared training loop and decoder (``" " + source``), not here.

Every reading error becomes one ``DataError`` line naming the file, the entry and what was
expected; nothing here returns a partly read file.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.datasets.paths import dataset_dir
from bench.errors import BenchError, DataError, did_you_mean

Triple = tuple[str, str, str]


@dataclass(frozen=True)
class Lex:
    """One reference text of an XML entry; ``comment`` is WebNLG's quality mark or DART's source."""

    lid: str
    comment: str | None
    text: str


@dataclass(frozen=True)
class XmlEntry:
    """One ``<entry>`` of a WebNLG-layout XML file, in file order (``position`` is 1-based)."""

    position: int
    eid: str
    category: str
    triples: tuple[Triple, ...]
    lexes: tuple[Lex, ...]


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read file ({type(exc).__name__}: {exc})") from None


def load_json(path: Path) -> Any:
    """Parse a JSON file (optionally gzipped); a syntax error names the line and column."""
    data = read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}); expected a JSON file") from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}, line {exc.lineno}, column {exc.colno}: JSON does not parse ({exc.msg})"
        ) from None


def parse_triple(text: str | None, *, where: str) -> Triple:
    """Split ``"s | p | o"`` into its three parts; anything else is a DataError naming ``where``."""
    parts = [p.strip() for p in (text or "").split(" | ")]
    if len(parts) != 3 or not all(parts):
        raise DataError(f"{where}: expected a triple 'subject | property | object', got {text!r}")
    return parts[0], parts[1], parts[2]


def linearize(
    triples: Sequence[Sequence[str]],
    *,
    lowercase_relations: bool = False,
    underscores_to_spaces: bool = False,
) -> str:
    """``s1 : r1 : o1 | s2 : r2 : o2`` (Li & Liang 2021; the authors' code for WebNLG and DART).

    ``lowercase_relations`` reproduces the authors' DART preprocessing (``rela.lower()``).
    ``underscores_to_spaces`` turns DBpedia's ``Aarhus_Airport`` into ``Aarhus Airport``; the
    authors did not (their WebNLG JSON and code keep the underscores), so it is off by default.
    """
    out = []
    for s, r, o in triples:
        if lowercase_relations:
            r = r.lower()
        if underscores_to_spaces:
            s, r, o = (x.replace("_", " ") for x in (s, r, o))
        out.append(f"{s} : {r} : {o}")
    return " | ".join(out)


def check_options(dataset: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """Defaults overlaid with ``options``; an unknown key or a mistyped value is a BenchError."""
    for key, value in options.items():
        if key not in defaults:
            raise BenchError(f"{dataset}: unknown option {key!r}{did_you_mean(key, defaults)}")
        want = type(defaults[key])
        if not isinstance(value, want):
            raise BenchError(
                f"{dataset}: option {key!r} must be {want.__name__}, got {value!r}"
            )
    return {**defaults, **options}


def folder(data_dir: Path, dataset: str) -> Path:
    """``<data_dir>/<dataset>``, or a BenchError saying which folder is missing."""
    found = dataset_dir(data_dir, dataset)
    if found is None:
        raise BenchError(
            f"{dataset}: no folder {dataset!r} in data directory {str(data_dir)!r}; expected "
            f"{Path(data_dir) / dataset} laid out as the shared data/{dataset}/ (see its README)"
        )
    return found


def hub_split(dataset: str, hub_id: str, config: str | None, split: str) -> Any:
    """One split of a Hugging Face hub dataset, or one BenchError line when it cannot be had.

    Used only when no data directory is given; offline (as on the project machines) this
    fails, and the message says how to point the loader at local files instead.
    """
    try:
        import datasets as hf_datasets

        return hf_datasets.load_dataset(hub_id, config, split=split)
    except Exception as exc:  # noqa: BLE001 - network, auth and format errors all mean "not here"
        reason = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise BenchError(
            f"{dataset}: no data directory given and the Hugging Face hub copy {hub_id!r} "
            f"could not be loaded ({type(exc).__name__}: {reason}); pass --data-dir or set "
            f"BENCH_DATA_DIR to a folder holding {dataset}/"
        ) from None


def parse_entries_xml(path: Path, *, dataset: str) -> list[XmlEntry]:
    """All ``<entry>`` elements of one WebNLG-layout XML file, validated, in file order."""
    try:
        root = ET.fromstring(read_bytes(path))
    except ET.ParseError as exc:
        line, col = exc.position
        raise DataError(
            f"{path}, line {line}, column {col}: XML does not parse; expected a {dataset} "
            "<benchmark><entries><entry> file"
        ) from None
    if root.tag != "benchmark" or root.find("entries") is None:
        raise DataError(f"{path}: root element is <{root.tag}>; expected <benchmark><entries>")
    entries: list[XmlEntry] = []
    for position, entry in enumerate(root.iter("entry"), start=1):
        eid = entry.get("eid")
        where = f"{path}, entry {position}" + (f" (eid={eid})" if eid else "")
        if not eid:
            raise DataError(f"{where}: missing attribute 'eid' on <entry>")
        category = entry.get("category")
        if not category:
            raise DataError(f"{where}: missing attribute 'category' on <entry>")
        mset = entry.find("modifiedtripleset")
        if mset is None:
            raise DataError(f"{where}: missing <modifiedtripleset>")
        triples = tuple(parse_triple(m.text, where=where) for m in mset.iter("mtriple"))
        if not triples:
            raise DataError(f"{where}: <modifiedtripleset> holds no <mtriple>")
        lexes = tuple(
            Lex(lid=lex.get("lid", ""), comment=lex.get("comment"), text=(lex.text or "").strip())
            for lex in entry.iter("lex")
        )
        entries.append(XmlEntry(position, eid, category, triples, lexes))
    if not entries:
        raise DataError(f"{path}: no <entry> elements; expected a {dataset} XML file")
    return entries
