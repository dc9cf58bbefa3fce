"""Score any system's output file with a dataset's official metric set (``bench score``).

The file holds one hypothesis per unique source of the split, in the dataset's order (the
order of ``group_references`` over ``DatasetBuilder.load``; for WebNLG the test eids Id1..,
for E2E the MRs in order of first appearance). The scores use the dataset's own columns
(``bleu``, ``nist``, ``meteor``, ``rouge_l``, ``cider``, ``ter``, ``chrf``, ``rouge1``...) on
the official scripts' scales, which are the metrics' own: E2E BLEU, METEOR, ROUGE-L in 0-1
with NIST and CIDEr raw; WebNLG and DART BLEU 0-100, METEOR and TER 0-1; chrF++ and ROUGE
0-100. A dataset with several score groups (WebNLG: all / seen / unseen) nests the columns
under each group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.interfaces import EvalItem, group_references
from bench.registry import DATASETS


def read_hypotheses(path: Path) -> list[str]:
    """Lines of a UTF-8 text file; a final newline does not make an extra (empty) line.

    Universal newlines as the official Python scripts read them (``\\n``, ``\\r\\n``,
    ``\\r``); an empty line in the middle is an empty hypothesis.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BenchError(f"hypothesis file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise BenchError(f"hypothesis file {str(path)!r} is a directory") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise BenchError(f"{path}, line {line}: not UTF-8 text ({e.reason})") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def load_items(
    *, dataset: str, split: str, data_dir: Path | None, options: Mapping[str, Any] | None = None
) -> list[EvalItem]:
    """The unique sources of a split with their references, in the dataset's order."""
    from bench.datastats import load_examples

    return group_references(load_examples(dataset, split, data_dir=data_dir, options=dict(options or {})))


def _json_value(x: float) -> float | None:
    # JSON has no NaN: an empty score group (no unseen item in the split) is null.
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def score_file(
    *,
    dataset: str,
    split: str,
    hyp: Path,
    data_dir: Path | None = None,
    ci: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of ``hyp`` on ``dataset``/``split`` as a JSON-ready dict.

    ``{"bleu": 0.56, ...}`` for a dataset with one score group, else
    ``{"all": {...}, "seen": {...}, "unseen": {...}}``. With ``ci`` every column gets a
    ``<column>_ci95`` pair, the 95% percentile bootstrap interval (``n_boot`` resamples).
    """
    from bench.scoring import score_predictions

    builder = DATASETS.get(dataset)()
    items = load_items(dataset=dataset, split=split, data_dir=data_dir, options=options)
    hypotheses = read_hypotheses(hyp)
    if len(hypotheses) != len(items):
        raise BenchError(
            f"{hyp}: {len(hypotheses)} lines, expected {len(items)} (one per unique source of "
            f"{dataset} {split}, in the dataset's order)"
        )
    rows = score_predictions(
        hypotheses=hypotheses,
        items=items,
        metrics=builder.metrics,
        groups=builder.score_groups,
        n_boot=n_boot if ci else 0,
        seed=seed,
    )
    by_group: dict[str, dict[str, Any]] = {group: {} for group in builder.score_groups}
    for row in rows:
        out = by_group[row["group"]]
        out[row["metric"]] = _json_value(row["value"])
        if ci:
            out[f"{row['metric']}_ci95"] = [_json_value(row["ci_low"]), _json_value(row["ci_high"])]
    if len(by_group) == 1:
        return next(iter(by_group.values()))
    return by_group
