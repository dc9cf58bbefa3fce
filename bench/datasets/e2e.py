"""e2e: the E2E NLG Challenge data (Novikova, Dušek & Rieser 2017), as in Li & Liang (2021).

Source: the official CSV files of ``tuetschek/e2e-dataset`` (header ``mr,ref``; one row per
reference, several rows per MR): ``trainset.csv`` (train), ``devset.csv`` (dev),
``testset_w_refs.csv`` (test), each plain or gzipped, from ``<data_dir>/e2e/``. Without that
folder, the Hugging Face hub copy ``e2e_nlg`` (columns ``meaning_representation``,
``human_reference``) is tried; where neither is available the error says how to point here.

- Input: the MR linearized as ``name : The Eagle | eatType : coffee shop | ...`` (slot names
  and values as given, in MR order). ``source_id`` is the MR string itself, so the references
  of one MR group together even in the shuffled train file; ``example_id`` is
  ``<split>-<row>`` (0-based data row), stable as long as the file is.
- Option ``format``: ``official`` (the CSV text as is) or ``paper``: the authors' own
  preprocessed form (``src1_{train,valid,test}.txt`` in XiangLi1999/PrefixTuning): slots
  renamed (``eatType`` -> ``Type``, ``familyFriendly`` -> ``family friendly``, ``priceRange``
  -> ``price``), prices tokenized (``£20-25`` -> ``£ 20 - 25``), references tokenized. Checked
  line by line against their dev and test files (one line each differs, see the tests);
  the paper scored against these tokenized references.
- Scored with the five E2E challenge metrics, references grouped per MR.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from bench.datasets._e2e_format import (
    E2E_METRICS,
    SCORE_GROUPS,
    MRSyntaxError,
    linearize,
    paper_reference,
    parse_mr,
)
from bench.datasets.paths import dataset_dir
from bench.errors import BenchError, DataError, did_you_mean
from bench.interfaces import Example
from bench.registry import DATASETS

FOLDER = "e2e"
FILES: Mapping[str, str] = {"train": "trainset", "dev": "devset", "test": "testset_w_refs"}
HUB_ID = "e2e_nlg"
HUB_SPLITS: Mapping[str, str] = {"train": "train", "dev": "validation", "test": "test"}
FORMATS = ("official", "paper")

# One data row: (line or row number, for error messages; MR string; reference text).
Row = tuple[int, str, str]


def split_file(folder: Path, split: str) -> Path:
    """``<folder>/<official name>.csv`` or ``.csv.gz``; a DataError naming both when absent."""
    stem = FILES[split]
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder / (stem + '.csv')}: file not found (nor {stem}.csv.gz); expected the official "
        f"E2E {split} file with header mr,ref"
    )


def read_csv(path: Path) -> list[Row]:
    """All (line, mr, ref) rows of one official CSV file; DataError on anything malformed."""
    key = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
    return list(_read_csv_cached(key))


@functools.lru_cache(maxsize=8)
def _read_csv_cached(key: tuple[str, int, int]) -> tuple[Row, ...]:
    # Cached per file version: the runner loads the same split once per run.
    path = Path(key[0])
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path}: cannot read ({type(e).__name__}: {e}); expected a CSV file"
        ) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: byte {e.start} is not UTF-8; expected UTF-8 CSV text") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file; expected a header line mr,ref")
        columns = [c.strip().lower() for c in header]
        missing = [c for c in ("mr", "ref") if c not in columns]
        if missing:
            raise DataError(
                f"{path}, line 1: no column {missing[0]!r} in header {','.join(header)!r}; "
                "expected columns mr,ref"
            )
        i_mr, i_ref = columns.index("mr"), columns.index("ref")
        rows: list[Row] = []
        for row in reader:
            if not row:
                continue  # a blank line (e.g. at the end of the file) holds no row
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(row)} field(s); expected "
                    f"{len(header)} ({','.join(header)})"
                )
            rows.append((reader.line_num, row[i_mr], row[i_ref]))
    except csv.Error as e:
        raise DataError(f"{path}, line {reader.line_num}: {e}; expected a CSV row mr,ref") from None
    if not rows:
        raise DataError(f"{path}: header only; expected rows mr,ref")
    return tuple(rows)


def hub_rows(split: str) -> list[Row]:
    """The split from the Hugging Face hub (``e2e_nlg``), or a one-line BenchError."""
    try:
        import datasets as hf_datasets

        data = hf_datasets.load_dataset(HUB_ID, split=HUB_SPLITS[split])
        return [
            (i, rec["meaning_representation"], rec["human_reference"])
            for i, rec in enumerate(data, start=1)
        ]
    except Exception as e:  # noqa: BLE001 - offline, auth, missing package: all mean "not here"
        reason = (str(e).splitlines() or [""])[0][:160]
        raise BenchError(
            f"e2e: no local data and the Hugging Face hub copy {HUB_ID!r} could not be loaded "
            f"({type(e).__name__}: {reason}); pass --data-dir or set BENCH_DATA_DIR to a folder "
            "holding e2e/ (the official CSV files)"
        ) from None


def check_options(options: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict:
    given = dict(options or {})
    for key in given:
        if key not in defaults:
            raise BenchError(f"e2e: unknown option {key!r}{did_you_mean(key, defaults)}")
    opts = {**defaults, **given}
    if opts["format"] not in FORMATS:
        raise BenchError(
            f"e2e option 'format': unknown value {opts['format']!r}{did_you_mean(str(opts['format']), FORMATS)}"
        )
    return opts


def to_examples(split: str, rows: Sequence[Row], fmt: str, where: str) -> list[Example]:
    """Rows -> Examples; a malformed MR or an empty reference is a DataError naming the row.

    ``where`` prefixes a row number in messages (``"<file>, line"``, ``"hub e2e_nlg dev row"``).
    """
    style = "paper" if fmt == "paper" else "official"
    sources: dict[str, str] = {}  # MR string -> linearized source, parsed once per MR
    out: list[Example] = []
    for i, (line, mr, ref) in enumerate(rows):
        if not ref.strip():
            raise DataError(f"{where} {line}: empty reference (column ref); expected a sentence")
        source = sources.get(mr)
        if source is None:
            try:
                source = sources[mr] = linearize(parse_mr(mr), style)
            except MRSyntaxError as e:
                raise DataError(f"{where} {line}: {e} (column mr)") from None
        target = paper_reference(ref, split) if style == "paper" else ref
        out.append(Example(example_id=f"{split}-{i}", source_id=mr, source=source, target=target))
    return out


@DATASETS.register("e2e")
class E2E:
    """E2E restaurant MRs -> descriptions; ~42K/4.7K/4.7K references, 4,862/547/630 MRs."""

    name: ClassVar[str] = "e2e"
    VERSION: ClassVar[str] = "1"
    task: ClassVar[str] = "table_to_text"
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    metrics: ClassVar[Mapping[str, str]] = E2E_METRICS
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = SCORE_GROUPS
    options: ClassVar[Mapping[str, Any]] = {"format": "official"}

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; a BenchError names a bad key or value (the suite
        calls this at validation time, so `bench validate` catches what a run would)."""
        return check_options(options, cls.options)

    def load(
        self, split: str, *, data_dir: Path | None, options: Mapping[str, Any] | None = None
    ) -> list[Example]:
        """All examples of ``split`` in file order (train rows are shuffled in the file)."""
        if split not in self.splits:
            raise BenchError(f"e2e has no split {split!r}{did_you_mean(split, self.splits)}")
        opts = self.check_options(options or {})
        folder = dataset_dir(data_dir, FOLDER)
        if folder is None:
            return to_examples(split, hub_rows(split), opts["format"], f"hub {HUB_ID} {split} row")
        path = split_file(folder, split)
        return to_examples(split, read_csv(path), opts["format"], f"{path}, line")

    def location(self, data_dir: Path | None) -> str:
        """Where ``load`` would read from, for ``bench data ls``."""
        folder = dataset_dir(data_dir, FOLDER)
        if folder is None:
            why = "no data directory" if data_dir is None else f"no {FOLDER}/ in {data_dir}"
            return f"hub {HUB_ID} ({why})"
        present = [
            s
            for s in self.splits
            if any((folder / f"{FILES[s]}{x}").is_file() for x in (".csv", ".csv.gz"))
        ]
        return f"{folder} (splits found: {', '.join(present) or 'none'})"
