"""custom: a dataset of your own, declared in the suite alone (no code).

One file per split (JSON lines, a JSON array of objects, CSV, TSV or parquet; the format
follows the extension, or option ``format``), or a Hugging Face dataset id read with the
``datasets`` library. The options name the fields::

    datasets:
      - name: custom
        options:
          train: data/train.jsonl   # relative paths start at the suite file's folder
          dev: data/dev.jsonl
          test: data/test.jsonl
          source: table             # the input: text, an object ({slot: value}) or a list of triples
          target: text              # one reference per row ...
          # references: refs        # ... or a list of references per row
          id: entry                 # optional: rows sharing an id are one source with several references
          fields: [category]        # optional: for train_filter / eval_filter
        metrics: {bleu: bleu, chrF: chrf, rougeL: rougeL}   # column: registered metric id (the default)

    # or: hf: owner/name, hf_config: ..., hf_revision: ..., hf_splits: {dev: validation}

``custom_summarization`` is the same dataset for summarization: reports show it in the paper's
Table 3 layout (``custom`` in Table 2's) and it scores ROUGE-1/2/L unless the suite says otherwise.

- Source: text as given; an object is linearized ``key : value | key : value`` (the E2E form),
  a list of ``[s, p, o]`` triples ``s : p : o | s : p : o`` (the WebNLG form), a list of
  texts joined by `` | ``.
- Grouping: rows with one ``id`` are one source (their sources must agree); without ``id``,
  rows with identical source text are one source, as E2E groups its MRs.
- Identity: the files' paths are not part of a run key (``path_options``); the sha256 of their
  bytes is (option ``fingerprint``, filled when the suite is read): a changed file is a new
  run, and a file changed between planning and running is refused. A hub dataset is keyed by
  its id, config and ``hf_revision`` (pin one for a reproducible key).
- Every bad row is one DataError naming the file, the line (or parquet row) and the problem.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.errors import BenchError, DataError, did_you_mean
from bench.identity import content_digest
from bench.interfaces import Example
from bench.registry import DATASETS

SPLITS = ("train", "dev", "test")
NO_DATA = ("custom: no data: give a file per split (options train, dev, test) or a Hugging Face dataset id "
           "(option hf)")
FORMATS: Mapping[str, str] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
    ".parquet": "parquet",
}
HF_SPLITS: Mapping[str, str] = {"train": "train", "dev": "validation", "test": "test"}
# Column -> metric id when the suite names none. "chrF", not "chrf": reports call a "chrf"
# column chrF++ (WebNLG's), which sacrebleu's default chrF is not.
DEFAULT_METRICS: Mapping[str, str] = {"bleu": "bleu", "chrF": "chrf", "rougeL": "rougeL"}
SUMMARIZATION_METRICS: Mapping[str, str] = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL"}

# One data row: (where it is, for messages: "<file>, line 7"; the record's fields).
Row = tuple[str, Mapping[str, Any]]


# --------------------------------------------------------------------------- options


def _check_name(opts: Mapping[str, Any], key: str, *, required: bool = False) -> None:
    value = opts[key]
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise BenchError(f"custom: option {key!r}: expected a field name, got {value!r}")


def check_options(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``options``; one BenchError line for an unknown key or bad value."""
    for key in options:
        if key not in defaults:
            raise BenchError(f"custom: unknown option {key!r}{did_you_mean(str(key), defaults)}")
    opts = {**defaults, **options}
    files = [s for s in SPLITS if opts[s] is not None]
    for s in files:
        if not isinstance(opts[s], str) or not opts[s].strip():
            raise BenchError(f"custom: option {s!r}: expected a file path, got {opts[s]!r}")
    if opts["hf"] is not None and (not isinstance(opts["hf"], str) or not opts["hf"].strip()):
        raise BenchError(f"custom: option 'hf': expected a Hugging Face dataset id, got {opts['hf']!r}")
    if opts["hf"] and files:
        raise BenchError(
            f"custom: options {', '.join(files)} and 'hf' both given; read the splits from files or from "
            "a Hugging Face dataset, not both"
        )
    for key in ("hf_config", "hf_revision"):
        if opts[key] is not None and not isinstance(opts[key], str):
            raise BenchError(f"custom: option {key!r}: expected a string, got {opts[key]!r}")
    if opts["hf_splits"] is not None:
        hs = opts["hf_splits"]
        if not isinstance(hs, Mapping) or not all(isinstance(v, str) for v in hs.values()):
            raise BenchError(f"custom: option 'hf_splits': expected a mapping split -> hub split name, got {hs!r}")
        for k in hs:
            if k not in SPLITS:
                raise BenchError(f"custom: option 'hf_splits': unknown split {k!r}{did_you_mean(str(k), SPLITS)}")
    if opts["format"] is not None and opts["format"] not in set(FORMATS.values()):
        choices = sorted(set(FORMATS.values()))
        raise BenchError(f"custom: option 'format': unknown value {opts['format']!r}"
                         f"{did_you_mean(str(opts['format']), choices)}")
    _check_name(opts, "source", required=True)
    _check_name(opts, "target")
    _check_name(opts, "references")
    _check_name(opts, "id")
    if opts["target"] is not None and opts["references"] is not None:
        raise BenchError("custom: options 'target' and 'references' both given; name one field: target "
                         "(one reference per row) or references (a list per row)")
    fields = opts["fields"]
    if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) and f for f in fields):
        raise BenchError(f"custom: option 'fields': expected a list of field names, got {fields!r}")
    fp = opts["fingerprint"]
    if fp is not None and not (isinstance(fp, Mapping) and all(isinstance(v, str) for v in fp.values())):
        raise BenchError(f"custom: option 'fingerprint': filled when the suite is read; leave it unset (got {fp!r})")
    opts["fields"] = list(fields)
    return opts


def target_field(opts: Mapping[str, Any]) -> str:
    """The field holding the reference(s): ``references`` if named, else ``target`` (default "target")."""
    return str(opts["references"] or opts["target"] or "target")


def needed_fields(opts: Mapping[str, Any]) -> list[str]:
    """Every field the options name, in a stable order (source, target, id, extra fields)."""
    names = [opts["source"], target_field(opts), *([opts["id"]] if opts["id"] else []), *opts["fields"]]
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- reading files


def file_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise DataError(f"{path}: unknown file type {path.suffix or '(no extension)'!r}; expected "
                        f"{', '.join(FORMATS)} (or set option format)")
    return found


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: byte {e.start} is not UTF-8 ({e.reason}); expected UTF-8 text") from None


def _jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # a blank line (e.g. at the end) holds no row
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {n}: not valid JSON ({e.msg} at column {e.colno}); expected one "
                            "JSON object per line") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}, line {n}: a JSON {type(rec).__name__}, expected an object "
                            "{\"field\": value, ...}")
        yield f"{path}, line {n}", rec


def _json_rows(path: Path, text: str) -> Iterator[Row]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: a JSON {type(data).__name__}, expected a list of objects (or use .jsonl)")
    for i, rec in enumerate(data, start=1):
        if not isinstance(rec, dict):
            raise DataError(f"{path}, entry {i}: a JSON {type(rec).__name__}, expected an object")
        yield f"{path}, entry {i}", rec


def _csv_rows(path: Path, text: str, delimiter: str) -> Iterator[Row]:
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file; expected a header line naming the fields")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{path}, line 1: column {dupes[0]!r} appears twice in the header")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}, line {reader.line_num}: {len(row)} field(s); expected "
                                f"{len(header)} ({delimiter.join(header)})")
            yield f"{path}, line {reader.line_num}", dict(zip(header, row))
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: {e}; expected a {kind} row") from None


def _parquet_rows(path: Path, data: bytes) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(pa.BufferReader(data)).to_pylist()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {str(e)[:120]})") from None
    for i, rec in enumerate(records, start=1):
        yield f"{path}, row {i}", rec


def read_file(path: Path, fmt: str | None) -> tuple[str, tuple[Row, ...]]:
    """(fingerprint, rows) of one split file; the rows are parsed from the bytes hashed."""
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return _read_cached(str(path), fmt, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _read_cached(name: str, fmt: str | None, mtime_ns: int, size: int) -> tuple[str, tuple[Row, ...]]:
    # Keyed by the file's version: validation, the run and its eval splits read it once.
    path = Path(name)
    kind = file_format(path, fmt)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if kind == "parquet":
        rows = tuple(_parquet_rows(path, data))
    else:
        text = _text(path, data)
        if kind == "jsonl":
            rows = tuple(_jsonl_rows(path, text))
        elif kind == "json":
            rows = tuple(_json_rows(path, text))
        else:
            rows = tuple(_csv_rows(path, text, "\t" if kind == "tsv" else ","))
    if not rows:
        raise DataError(f"{path}: no rows; expected one example per row")
    return content_digest(data), rows


def hub_rows(opts: Mapping[str, Any], split: str) -> list[Row]:
    """The split from the Hugging Face dataset ``opts["hf"]``, or one BenchError line."""
    hub_split = {**HF_SPLITS, **(opts["hf_splits"] or {})}[split]
    hub_id = opts["hf"]
    what = f"{hub_id!r}" + (f" config {opts['hf_config']!r}" if opts["hf_config"] else "")
    # The hub client logs each failed retry; the one line below says it all.
    quiet = [logging.getLogger(n) for n in ("huggingface_hub", "datasets")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        import datasets as hf_datasets

        data = hf_datasets.load_dataset(hub_id, opts["hf_config"], split=hub_split, revision=opts["hf_revision"])
        return [(f"hub {hub_id} {hub_split} row {i}", rec) for i, rec in enumerate(data)]
    except Exception as e:  # noqa: BLE001 - offline, unknown id, auth, format: all one line for the user
        reason = (str(e).splitlines() or [""])[0][:160]
        raise BenchError(
            f"custom: Hugging Face dataset {what} (split {hub_split!r}) could not be loaded "
            f"({type(e).__name__}: {reason}); download it and name its files per split (options train, dev, "
            "test) instead"
        ) from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


# --------------------------------------------------------------------------- rows -> examples


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _missing(name: str, have: Sequence[str]) -> str:
    """`` (did you mean "x"?)`` for a near name, else the fields there are."""
    close = difflib.get_close_matches(name, have, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else f"; its fields: {', '.join(have) or 'none'}"


def _field(where: str, rec: Mapping[str, Any], name: str, role: str) -> Any:
    if name not in rec:
        raise DataError(f"{where}: no field {name!r} (the {role}){_missing(name, [str(k) for k in rec])}")
    value = rec[name]
    if value is None:
        raise DataError(f"{where}: field {name!r} (the {role}) is null; expected a value")
    return value


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    return None


def linearize(value: Any) -> str | None:
    """The source text of a field value, or None when it has no text form here."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        parts = [(str(k), _scalar(v)) for k, v in value.items()]
        if any(v is None for _, v in parts):
            return None
        return " | ".join(f"{k} : {v}" for k, v in parts)
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if isinstance(item, (list, tuple)):
                words = [_scalar(x) for x in item]
                if not words or any(w is None for w in words):
                    return None
                items.append(" : ".join(w for w in words if w is not None))
            elif isinstance(item, str):
                items.append(item)
            else:
                return None
        return " | ".join(items)
    return None


def to_examples(split: str, rows: Sequence[Row], opts: Mapping[str, Any]) -> list[Example]:
    """Rows -> Examples, one per reference; a bad row is a DataError naming it and the problem."""
    src_name, tgt_name, id_name = opts["source"], target_field(opts), opts["id"]
    many = opts["references"] is not None
    first: dict[str, tuple[str, str]] = {}  # id -> (source, where first seen)
    out: list[Example] = []
    for i, (where, rec) in enumerate(rows):
        raw = _field(where, rec, src_name, "source")
        source = linearize(raw)
        if source is None:
            raise DataError(f"{where}: field {src_name!r} (the source) is {_kind(raw)}; expected text, an object "
                            "of slot values or a list of [subject, relation, object] triples")
        if not source.strip():
            raise DataError(f"{where}: empty source (field {src_name!r}); expected text")
        value = _field(where, rec, tgt_name, "references" if many else "target")
        if many:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                hint = " (in CSV/TSV use option target with id: one row per reference)" if isinstance(value, str) else ""
                raise DataError(f"{where}: field {tgt_name!r} (the references) is {_kind(value) if not isinstance(value, str) else 'text'}; "
                                f"expected a list of texts{hint}")
            if not value:
                raise DataError(f"{where}: field {tgt_name!r} (the references) is an empty list; expected at least one text")
            targets = list(value)
        else:
            targets = [value]
        for k, t in enumerate(targets):
            label = f"reference {k + 1} of field {tgt_name!r}" if many else f"field {tgt_name!r}"
            if not isinstance(t, str):
                raise DataError(f"{where}: {label} (the target) is {_kind(t)}; expected text")
            if not t.strip():
                raise DataError(f"{where}: empty target ({label}); expected text")
        if id_name:
            sid = _scalar(_field(where, rec, id_name, "id"))
            if sid is None:
                raise DataError(f"{where}: field {id_name!r} (the id) is {_kind(rec[id_name])}; expected text or a number")
            seen = first.setdefault(sid, (source, where))
            if seen[0] != source:
                raise DataError(f"{where}: id {sid!r} has another source than at {seen[1]}; rows of one id "
                                "are references of one source")
        else:
            sid = source
        fields: dict[str, str] = {}
        for name in opts["fields"]:
            v = _field(where, rec, name, "extra field")
            text = _scalar(v)
            if text is None:
                raise DataError(f"{where}: field {name!r} is {_kind(v)}; expected text or a number (filters compare text)")
            fields[name] = text
        for k, t in enumerate(targets):
            eid = f"{split}-{i}-{k}" if many else f"{split}-{i}"
            out.append(Example(example_id=eid, source_id=sid, source=source, target=t, fields=fields))
    return out


def _columns(rows: Sequence[Row]) -> list[str]:
    """The fields of a file: its header (CSV/TSV, parquet) or the first record's keys (JSON)."""
    return [str(k) for k in rows[0][1]]


# --------------------------------------------------------------------------- the dataset


@DATASETS.register("custom")
class Custom:
    """Your own data-to-text data: a file per split or a Hugging Face id."""

    name: ClassVar[str] = "custom"
    VERSION: ClassVar[str] = "1"
    task: ClassVar[str] = "table_to_text"
    splits: ClassVar[tuple[str, ...]] = SPLITS
    metrics: ClassVar[Mapping[str, str]] = DEFAULT_METRICS
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = {"all": {}}
    options: ClassVar[Mapping[str, Any]] = {
        "train": None, "dev": None, "test": None, "format": None,
        "hf": None, "hf_config": None, "hf_revision": None, "hf_splits": None,
        "source": "source", "target": None, "references": None, "id": None, "fields": [],
        "fingerprint": None,
    }
    # Options that say where the data is, not what it is: left out of the run keys, which hold
    # the files' content hashes (option fingerprint) instead.
    path_options: ClassVar[tuple[str, ...]] = SPLITS

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; a BenchError names a bad key or value."""
        return check_options(options, cls.options)

    @classmethod
    def resolve_options(
        cls, options: Mapping[str, Any], *, base_dir: Path, splits: Sequence[str]
    ) -> dict[str, Any]:
        """The options a run uses: paths made absolute (relative ones start at ``base_dir``, the
        suite's folder), every file read and checked (a bad row or a field the file lacks is a
        DataError), and their content hashes in ``fingerprint``. ``splits``: those the suite uses."""
        opts = cls.check_options(options)
        if opts["hf"]:
            return opts  # read when a run starts: validation never touches the network
        if all(opts[s] is None for s in SPLITS):
            raise BenchError(NO_DATA)
        for s in dict.fromkeys(splits):
            if opts.get(s) is None:
                raise BenchError(f"custom: the suite uses split {s!r} but option {s!r} names no file")
        prints: dict[str, str] = {}
        for s in SPLITS:
            if opts[s] is None:
                continue
            path = Path(opts[s]).expanduser()
            path = (path if path.is_absolute() else Path(base_dir) / path).resolve()
            if not path.is_file():
                raise BenchError(f"custom: option {s!r}: file not found: {path}")
            opts[s] = str(path)
            digest, rows = read_file(path, opts["format"])
            columns = _columns(rows)
            for name in needed_fields(opts):
                if name not in columns:
                    raise DataError(f"{path}: no field {name!r} (named in the options){_missing(name, columns)}")
            to_examples(s, rows, opts)  # every row checked now, not when a run is half done
            prints[s] = digest
        given = opts["fingerprint"]
        if given is not None and dict(given) != prints:
            raise BenchError("custom: option 'fingerprint' does not match the files (it is filled when the suite "
                             "is read; leave it unset)")
        opts["fingerprint"] = prints
        return opts

    def load(
        self, split: str, *, data_dir: Path | None, options: Mapping[str, Any]
    ) -> list[Example]:
        """All examples of ``split`` in file order (``data_dir`` is not used: the options name the files)."""
        if split not in self.splits:
            raise BenchError(f"custom: unknown split {split!r}{did_you_mean(split, self.splits)}")
        opts = self.check_options(options)
        if opts["hf"]:
            return to_examples(split, hub_rows(opts, split), opts)
        if all(opts[s] is None for s in SPLITS):
            raise BenchError(NO_DATA)  # an option mistake, the same for every split
        if opts[split] is None:
            raise DataError(f"custom: no file for split {split!r} (option {split!r})")
        path = Path(opts[split]).expanduser()
        digest, rows = read_file(path, opts["format"])
        planned = (opts["fingerprint"] or {}).get(split)
        if planned is not None and planned != digest:
            raise DataError(f"{path}: changed since the suite was read (now {digest}, planned {planned}); run the "
                            "suite again: a changed file is a new run")
        return to_examples(split, rows, opts)

    def location(self, data_dir: Path | None) -> str:
        """Where ``load`` reads from, for ``bench data ls``."""
        return "the files (or hf id) named in a suite's options"


@DATASETS.register("custom_summarization")
class CustomSummarization(Custom):
    """Your own summarization data: ``custom`` with the summarization task (reports show it in the
    Table 3 layout) and ROUGE-1/2/L by default."""

    name: ClassVar[str] = "custom_summarization"
    task: ClassVar[str] = "summarization"
    metrics: ClassVar[Mapping[str, str]] = SUMMARIZATION_METRICS
