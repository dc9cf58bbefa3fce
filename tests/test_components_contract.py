"""The contract of every registered metric and every registered dataset (methods have
tests/test_methods_contract.py). Parametrised over the registries: a new component is tested
by writing it, nothing else.

Metric: the Metric protocol; stats of shape [n, k], finite and repeatable; the corpus score
``bench score`` / ``bench run`` store (scoring.score_predictions) is aggregate(stats); a
subset's rows of the corpus stats give the subset's score (recomputing the subset alone gives
the same rows, except for metrics whose per-item stats use corpus statistics: CIDEr-D's and
MoverScore's IDF, NIST's information weights); summed rows give the same score (the bootstrap's shortcut); identical
hypotheses score at least as well as a real system and empty ones no better, both finite.

Dataset: the DatasetBuilder protocol; its metrics are registered; ``load`` on a small fixture
returns Examples with the interface's fields; the score groups cover every item ("all" is
every item; the other groups do not overlap); default options pass, an unknown option and a
bad value fail with one line naming them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError, ModelUnavailableError
from bench.interfaces import DatasetBuilder, EvalItem, Example, Metric, group_references
from bench.registry import DATASETS, METRICS
from bench.scoring import group_mask, score_predictions

# Five sources, several references each, one hypothesis from a plausible system.
REFS = [
    ["The Eagle is a cheap coffee shop near Burger King.", "Near Burger King is The Eagle, a cheap coffee shop."],
    ["Alimo is a French restaurant in the city centre.", "In the city centre there is a French restaurant, Alimo."],
    ["Zizzi is a family friendly pub.", "Zizzi, a pub, is family friendly.", "Zizzi is a pub for families."],
    ["The Mill serves Italian food and has a low rating.", "The Mill is an Italian place rated low."],
    ["Aromi is a coffee shop by the river with high prices.", "By the river, Aromi is an expensive coffee shop."],
]
HYPS = [
    "The Eagle is a coffee shop near Burger King.",
    "Alimo is a restaurant serving French food.",
    "Zizzi is a pub that is family friendly.",
    "The Mill is an Italian restaurant with low rating.",
    "Aromi is an expensive coffee shop near the river.",
]
# Per-item stats that use statistics of the whole scored corpus (documented in their files):
# NIST's information weights, CIDEr-D's and MoverScore's IDF.
CORPUS_STATS = {"e2e_nist", "e2e_nist_perl", "e2e_cider", "dart_moverscore"}


def _metric(metric_id: str) -> Metric:
    return METRICS.get(metric_id)()


def _stats(metric: Metric, hyps: list[str], refs: list[list[str]]) -> np.ndarray:
    try:
        return np.asarray(metric.stats(hyps, refs), dtype=np.float64)
    except ModelUnavailableError as e:  # learned metrics: their weights cannot be downloaded here
        pytest.skip(f"{metric.name}: {e}")


@pytest.fixture(scope="module")
def corpus_stats() -> dict[str, np.ndarray]:
    return {}


def _corpus(metric_id: str, cache: dict[str, np.ndarray]) -> np.ndarray:
    if metric_id not in cache:
        cache[metric_id] = _stats(_metric(metric_id), HYPS, REFS)
    return cache[metric_id]


def _better_or_equal(metric: Metric, a: float, b: float) -> bool:
    return a >= b - 1e-9 if metric.higher_is_better else a <= b + 1e-9


@pytest.mark.parametrize("metric_id", METRICS.names())
def test_metric_interface(metric_id: str) -> None:
    m = _metric(metric_id)
    assert isinstance(m, Metric)
    assert isinstance(m.higher_is_better, bool)
    assert str(m.VERSION) in m.signature()


@pytest.mark.parametrize("metric_id", METRICS.names())
def test_metric_stats_and_corpus_score(metric_id: str, corpus_stats: dict[str, np.ndarray]) -> None:
    m = _metric(metric_id)
    stats = _corpus(metric_id, corpus_stats)
    assert stats.ndim == 2 and stats.shape[0] == len(HYPS) and stats.shape[1] >= 1
    assert np.isfinite(stats).all()
    assert np.array_equal(_stats(m, HYPS, REFS), stats)  # repeatable
    score = m.aggregate(stats)
    assert math.isfinite(score)
    items = [EvalItem(str(i), f"src {i}", tuple(r)) for i, r in enumerate(REFS)]
    rows = score_predictions(hypotheses=HYPS, items=items, metrics={"x": metric_id}, groups={"all": {}}, n_boot=0)
    assert rows[0]["value"] == pytest.approx(score, abs=1e-12)


@pytest.mark.parametrize("metric_id", METRICS.names())
def test_metric_subsets_add_up(metric_id: str, corpus_stats: dict[str, np.ndarray]) -> None:
    m = _metric(metric_id)
    stats = _corpus(metric_id, corpus_stats)
    subset = [0, 2, 3]
    rows = stats[subset]
    if metric_id not in CORPUS_STATS:
        alone = _stats(m, [HYPS[i] for i in subset], [REFS[i] for i in subset])
        np.testing.assert_allclose(alone, rows, rtol=1e-9, atol=1e-12)
    # Two disjoint parts stacked are the whole: the score does not depend on row order.
    parts = np.concatenate([stats[[1, 4]], stats[[0, 2, 3]]])
    assert m.aggregate(parts) == pytest.approx(m.aggregate(stats), rel=1e-9, abs=1e-12)
    sums = getattr(m, "aggregate_sums", None)
    if sums is not None:  # the bootstrap's shortcut: aggregate from the column sums of rows
        idx = np.array([[0, 0, 3, 4, 1], [2, 2, 2, 1, 0]])
        got = np.asarray(sums(stats[idx].sum(axis=1), len(idx[0])))
        want = [m.aggregate(stats[row]) for row in idx]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("metric_id", METRICS.names())
def test_metric_identical_and_empty_hypotheses(metric_id: str, corpus_stats: dict[str, np.ndarray]) -> None:
    m = _metric(metric_id)
    system = m.aggregate(_corpus(metric_id, corpus_stats))
    identical = m.aggregate(_stats(m, [r[0] for r in REFS], REFS))
    empty = m.aggregate(_stats(m, [""] * len(REFS), REFS))
    assert math.isfinite(identical) and math.isfinite(empty)
    assert _better_or_equal(m, identical, system), (identical, system)
    assert _better_or_equal(m, system, empty), (system, empty)
    assert identical != empty


# ----------------------------------------------------------------------------- datasets


def _write_xsum(root: Path) -> Path:
    from tests.test_data_xsum import write_xsum

    return write_xsum(root)


# Datasets whose shared data cannot be loaded here (XSum: no documents) get a written fixture.
WRITTEN = {"xsum": _write_xsum}
SMALL_OPTIONS = {"synthetic_e2e": {"n_train_mrs": 6, "n_dev_mrs": 3, "n_test_mrs": 4}}
# Datasets of one's own read the files their options name: the example committed under tests/data.
_CUSTOM = {"dev": str(Path(__file__).parent / "data" / "custom_d2t" / "dev.jsonl"), "source": "data", "target": "text",
           "id": "id", "fields": ["category"]}
SMALL_OPTIONS |= {"custom": _CUSTOM, "custom_summarization": _CUSTOM}
# Options whose every string is valid on its own (a path, a field name, a hub id): a value of the
# wrong type is their invalid value.
_CUSTOM_FREE = ("train", "dev", "test", "hf", "hf_config", "hf_revision", "source", "target", "references", "id")
FREE_TEXT_OPTIONS = {"custom": _CUSTOM_FREE, "custom_summarization": _CUSTOM_FREE}


def _small_split(name: str, tmp_path: Path) -> tuple[str, list[Example]]:
    builder = DATASETS.get(name)()
    if name in WRITTEN:
        data_dir = WRITTEN[name](tmp_path)
    else:
        from tests.conftest import shared_data_dir

        data_dir = shared_data_dir()
        if data_dir is None and name != "synthetic_e2e":
            pytest.skip("official data folder absent (set BENCH_DATA_DIR)")
    split = next(s for s in ("dev", "test", "train") if s in builder.splits)
    return split, builder.load(split, data_dir=data_dir, options=SMALL_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_interface(name: str) -> None:
    builder = DATASETS.get(name)()
    assert isinstance(builder, DatasetBuilder)
    assert builder.name == name and isinstance(builder.VERSION, str)
    assert builder.splits and "all" in builder.score_groups and builder.score_groups["all"] == {}
    for column, metric_id in builder.metrics.items():
        assert metric_id in METRICS, f"{name}: column {column} names unregistered metric {metric_id}"
    assert builder.check_options({}) == dict(builder.options)


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_loads_examples_and_groups_cover_items(name: str, tmp_path: Path) -> None:
    builder = DATASETS.get(name)()
    split, examples = _small_split(name, tmp_path)
    assert examples and all(isinstance(e, Example) for e in examples)
    for e in examples:
        assert all(isinstance(getattr(e, f), str) for f in ("example_id", "source_id", "source", "target"))
        assert e.source.strip() and all(isinstance(k, str) and isinstance(v, str) for k, v in e.fields.items())
    assert len({e.example_id for e in examples}) == len(examples)
    items = group_references(examples)
    assert len(items) == len({e.source_id for e in examples})
    masks = {g: group_mask(items, g, spec) for g, spec in builder.score_groups.items()}
    assert masks["all"].all()
    others = [m for g, m in masks.items() if g != "all"]
    if others:
        assert (np.sum(others, axis=0) <= 1).all(), f"{name} {split}: score groups overlap"


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_bad_options_fail_with_one_line(name: str) -> None:
    builder = DATASETS.get(name)()
    with pytest.raises(BenchError) as e:
        builder.check_options({"no_such_option": 1})
    assert "no_such_option" in str(e.value) and "\n" not in str(e.value)
    for option in builder.options:
        bad = 12345 if option in FREE_TEXT_OPTIONS.get(name, ()) else "not-a-valid-value"
        with pytest.raises(BenchError) as e:
            builder.check_options({option: bad})
        assert option in str(e.value) and "\n" not in str(e.value)
