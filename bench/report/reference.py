"""The paper's published numbers (Li & Liang 2021, ACL Tables 2-9; arXiv v1 Table 1) and the
display conventions that put our stored metric values on the paper's scale.

``paper_reference.csv`` beside this file is a copy of the project's reference table: one row
per published cell (source, model, method, dataset, split, metric, value). ACL 2021 is the
canonical source; arXiv v1 is kept as a second source where it reports a different number.
A paper value is shown beside one of our cells only when model, dataset, split, method label
and metric are the same, and our run trained on the full split (the tables' setting).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchError

REFERENCE_CSV = Path(__file__).with_name("paper_reference.csv")
CANONICAL_PREFIX = "acl2021_"
SECOND_SOURCE = "arxiv_v1_table1"

# Stored value x factor = the paper's scale. The E2E challenge script reports BLEU, METEOR and
# ROUGE-L in [0, 1] and the paper prints them x100. Everything else is stored on the paper's
# scale already (multi-bleu BLEU 0-100, XSUM ROUGE x100 -- their signatures say "scale:100" --
# NIST, CIDEr, METEOR/TER fractions). A metric class may declare its own ``display_scale``,
# which wins over this table.
DISPLAY_SCALE: Mapping[str, float] = {
    "e2e_bleu": 100.0,
    "e2e_meteor": 100.0,
    "e2e_rouge_l": 100.0,
}

# Column name -> header in the paper's style; TER-like columns get a "↓" from the stored
# higher_is_better flag, not from this table.
DISPLAY_NAME: Mapping[str, str] = {
    "bleu": "BLEU",
    "nist": "NIST",
    "meteor": "METEOR",
    "rouge_l": "ROUGE-L",
    "cider": "CIDEr",
    "ter": "TER",
    "chrf": "chrF++",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "moverscore": "MoverScore",
    "bertscore": "BERTScore",
    "bleurt": "BLEURT",
}

# The paper's column order; metrics it does not print come after, alphabetically.
METRIC_ORDER: tuple[str, ...] = (
    "bleu", "nist", "meteor", "rouge_l", "cider", "ter", "chrf", "moverscore", "bertscore",
    "bleurt", "rouge1", "rouge2", "rougeL",
)

GROUP_ORDER: tuple[str, ...] = ("seen", "unseen", "all")
GROUP_SHORT: Mapping[str, str] = {"seen": "S", "unseen": "U", "all": "A"}

# Our split names -> the reference table's (the paper's dev-set tables say "validation").
SPLIT_NAMES: Mapping[str, str] = {"dev": "validation"}


def display_name(metric: str) -> str:
    return DISPLAY_NAME.get(metric, metric)


def metric_sort_key(metric: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def group_sort_key(group: str) -> tuple[int, str]:
    return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER), group)


def display_scale(metric_id: str, signature: str | None = None) -> float:
    """The factor from our stored value to the paper's scale for registered metric ``metric_id``.

    A metric that says in its signature that it already stores x100 (``|scale:100|``) is shown
    as stored, whatever the table below assumes."""
    declared = _declared_scale(metric_id)
    if declared is not None:
        return declared
    if signature and "|scale:100|" in f"{signature}|":
        return 1.0
    return DISPLAY_SCALE.get(metric_id, 1.0)


def _declared_scale(metric_id: str) -> float | None:
    from bench.registry import METRICS

    if metric_id not in METRICS:
        return None
    value = getattr(METRICS.get(metric_id), "display_scale", None)
    return float(value) if value is not None else None


@dataclass(frozen=True)
class PaperValue:
    """One published cell: the canonical (ACL) number, where from, and arXiv v1's if different."""

    value: float
    source: str
    second: float | None = None


@functools.lru_cache(maxsize=4)
def load_reference(path: Path = REFERENCE_CSV) -> pd.DataFrame:
    """The reference table; raises BenchError naming the file and row when it is malformed."""
    if not path.exists():
        raise BenchError(f"paper reference table not found: {path}")
    df = pd.read_csv(path, comment="#", dtype={"value": float})
    expected = ["source", "model", "method", "dataset", "split", "metric", "value"]
    if list(df.columns) != expected:
        raise BenchError(f"{path}: columns {list(df.columns)}, expected {expected}")
    bad = df["value"].isna()
    if bad.any():
        raise BenchError(f"{path}: row {int(bad.idxmax()) + 1} of the data has no value")
    return df


@functools.lru_cache(maxsize=4)
def _index(path: Path = REFERENCE_CSV) -> dict[tuple[str, str, str, str, str], PaperValue]:
    df = load_reference(path)
    out: dict[tuple[str, str, str, str, str], PaperValue] = {}
    canonical = df[df["source"].str.startswith(CANONICAL_PREFIX)]
    # Table order: the first ACL table that prints a cell is where we cite it from (Table 2
    # and Table 5 repeat the same prefix row).
    for r in canonical.sort_values("source", kind="stable").itertuples():
        key = (r.model, r.method, r.dataset, r.split, r.metric)
        out.setdefault(key, PaperValue(float(r.value), str(r.source)))
    for r in df[df["source"] == SECOND_SOURCE].itertuples():
        key = (r.model, r.method, r.dataset, r.split, r.metric)
        if key in out and out[key].value != float(r.value):
            out[key] = PaperValue(out[key].value, out[key].source, float(r.value))
    return out


# Extrapolation presets (bench.splits) whose published numbers sit under another split name:
# WebNLG's training split holds only the seen categories, so "train seen, score unseen" is
# exactly the setting of Table 2's U column.
SCENARIO_SPLITS: Mapping[tuple[str, str], str] = {("seen_to_unseen", "test"): "test_unseen"}


def reference_splits(split: str, group: str, scenario: str | None) -> list[str]:
    """The reference table's split names that one of our (split, score group) may match."""
    if scenario:
        mapped = SCENARIO_SPLITS.get((scenario, split))
        if mapped is not None:
            return [mapped] if group in ("all", "unseen") else []
        return [scenario]  # an extrapolation preset is its own column in the paper (Table 4)
    base = SPLIT_NAMES.get(split, split)
    return [f"{base}_{group}", base] if group == "all" else [f"{base}_{group}"]


def paper_value(
    *, model: str, method_label: str, dataset: str, split: str, group: str, metric: str,
    scenario: str | None = None, path: Path = REFERENCE_CSV,
) -> PaperValue | None:
    """The published number for this exact setting, or None when the paper has none."""
    index = _index(path)
    for ref_split in reference_splits(split, group, scenario):
        hit = index.get((model, method_label, dataset, ref_split, metric))
        if hit is not None:
            return hit
    return None


def reference_settings(path: Path = REFERENCE_CSV) -> tuple[list[str], list[str]]:
    """The models and datasets the paper reports (for the one-line "why no paper value")."""
    df = load_reference(path)
    return sorted(df["model"].unique()), sorted(df["dataset"].unique())
