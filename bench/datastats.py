"""Dataset statistics: what ``bench data ls`` and ``bench data describe`` print.

``describe`` gives, per split, the quantities of the paper's Table 1 (Li & Liang 2021): number
of examples, unique sources, references per source, and mean source / target length in tokens
of a given tokenizer. The paper counted GPT-2 tokens (E2E: 50K examples, 28.5 input and 27.8
output tokens); GPT-2's tokenizer needs the hub, so the default here is the embedded model's
tokenizer, and the output says which one was used. Texts are tokenized as training sees them:
``" " + text`` without special tokens.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from bench.datasets.paths import dataset_dir
from bench.errors import BenchError, DataError, did_you_mean
from bench.interfaces import Example
from bench.registry import DATASETS

DEFAULT_TOKENIZER = "smollm2-135m"

# The paper's Table 1 where our brief states it (GPT-2 tokens; train+dev+test examples).
PAPER_TABLE1: Mapping[str, str] = {
    "e2e": "paper Table 1 (GPT-2 tokenizer, all splits): 50K examples, 28.5 input / 27.8 output tokens",
}

_CHUNK = 2000  # texts per tokenizer call: big enough to be fast, small enough for a progress bar


def location(name: str, data_dir: Path | None) -> str:
    """Where dataset ``name`` loads from: its own ``location()`` if it has one, else the usual
    ``<data_dir>/<name>/`` folder or, without it, the hub."""
    builder = DATASETS.get(name)()
    own = getattr(builder, "location", None)
    if callable(own):
        return str(own(data_dir))
    folder = dataset_dir(data_dir, name)
    if folder is not None:
        return str(folder)
    if data_dir is None:
        return "hub (no data directory)"
    return f"hub (no {name}/ in {data_dir})"


def load_examples(name: str, split: str, *, data_dir: Path | None, options: Mapping[str, Any]) -> list[Example]:
    """A split's examples; a damaged compressed file is a DataError naming it (the zlib module's
    error names no file), like every other unreadable data file."""
    import zlib

    try:
        return DATASETS.get(name)().load(split, data_dir=data_dir, options=dict(options))
    except zlib.error as e:
        raise DataError(f"{_failing_file(e) or f'{name} {split}'}: damaged compressed data ({e}); "
                        "replace the file with an intact copy") from None


def _failing_file(error: BaseException) -> str | None:
    """The ``path`` the innermost frame of ``error``'s traceback was reading, if it had one."""
    tb, path = error.__traceback__, None
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("path")
        if isinstance(candidate, (str, Path)):
            path = str(candidate)
        tb = tb.tb_next
    return path


def list_datasets(*, data_dir: Path | None) -> pd.DataFrame:
    """One row per registered dataset: task, splits, options, where it loads from."""
    rows = []
    for name in DATASETS.names():
        builder = DATASETS.get(name)()
        rows.append(
            {
                "dataset": name,
                "task": builder.task,
                "splits": ", ".join(builder.splits),
                "options": ", ".join(f"{k}={v}" for k, v in builder.options.items()) or "-",
                "source": location(name, data_dir),
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "task", "splits", "options", "source"])


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Any:
    """The tokenizer of model ``name`` (any name ``bench.models.load_model`` accepts)."""
    from bench.models import load_model

    return load_model(name).tokenizer


def token_lengths(tokenizer: Any, texts: Sequence[str], *, progress: bool = False) -> list[int]:
    """Token count of ``" " + text`` for each text (no special tokens), in batches."""
    from tqdm import tqdm

    lengths: list[int] = []
    # delay=2: the bar appears only when tokenizing takes more than two seconds.
    with tqdm(total=len(texts), desc="tokenizing", unit="text", delay=2, disable=not progress,
              file=sys.stderr) as bar:  # fmt: skip
        for start in range(0, len(texts), _CHUNK):
            chunk = [" " + t for t in texts[start : start + _CHUNK]]
            ids = tokenizer(chunk, add_special_tokens=False)["input_ids"]
            lengths.extend(len(x) for x in ids)
            bar.update(len(chunk))
    return lengths


def _mean_length(tokenizer: Any, texts: Sequence[str], *, progress: bool) -> float:
    # Tokenize each distinct text once (an E2E MR repeats ~9 times), weight by its count.
    counts = Counter(texts)
    unique = list(counts)
    lengths = token_lengths(tokenizer, unique, progress=progress)
    return sum(n * counts[t] for t, n in zip(unique, lengths)) / max(len(texts), 1)


def describe(
    name: str,
    *,
    split: str | None = None,
    tokenizer: str | None = None,
    data_dir: Path | None = None,
    options: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per split: examples, unique sources, references per source, mean token lengths.

    A split whose files are missing or broken (a DataError) gets a row with its error in
    ``note`` when all splits are asked for (DART's train file or XSum's documents may be
    absent); asking for that one split raises the error, as does any other mistake. ``df.attrs["tokenizer"]`` names the tokenizer used.
    """
    builder = DATASETS.get(name)()
    if split is not None and split not in builder.splits:
        raise BenchError(f"{name} has no split {split!r}{did_you_mean(split, builder.splits)}")
    tok_name = tokenizer or DEFAULT_TOKENIZER
    tok = load_tokenizer(tok_name)
    rows = []
    for s in [split] if split else list(builder.splits):
        try:
            examples = load_examples(name, s, data_dir=data_dir, options=dict(options or {}))
        except DataError as e:
            # A missing or broken file is reported per split; an option or name mistake
            # (BenchError) stops everything: it would be the same for every split.
            if split:
                raise
            rows.append({"split": s, "note": str(e).splitlines()[0]})
            continue
        n_sources = len({e.source_id for e in examples})
        rows.append(
            {
                "split": s,
                "examples": len(examples),
                "sources": n_sources,
                "refs_per_source": len(examples) / max(n_sources, 1),
                "source_tokens": _mean_length(tok, [e.source for e in examples], progress=progress),
                "target_tokens": _mean_length(tok, [e.target for e in examples], progress=progress),
                "note": "",
            }
        )
    columns = [
        "split",
        "examples",
        "sources",
        "refs_per_source",
        "source_tokens",
        "target_tokens",
        "note",
    ]
    df = pd.DataFrame(rows, columns=columns)
    df["note"] = df["note"].fillna("")
    for col in ("examples", "sources"):
        df[col] = df[col].astype("Int64")  # stays integer beside a failed split's NA
    df.insert(0, "dataset", name)
    df.attrs["tokenizer"] = tok_name
    return df
