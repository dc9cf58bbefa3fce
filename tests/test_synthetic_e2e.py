"""The embedded synthetic E2E data: deterministic, disjoint, several varied references per MR,
learnable but not trivial (copying the MR scores far below a human-like reference)."""

from __future__ import annotations

import time

import pytest
import sacrebleu

from bench.datasets import synthetic_e2e
from bench.datasets._e2e_format import SLOTS, parse_mr
from bench.errors import BenchError
from bench.interfaces import DatasetBuilder, group_references
from bench.registry import DATASETS

SMALL = {"n_train_mrs": 300, "n_dev_mrs": 60, "n_test_mrs": 60}


def load(split: str, **options: object) -> list:
    return DATASETS.get("synthetic_e2e")().load(split, data_dir=None, options={**SMALL, **options})


def test_registered_with_the_dataset_contract() -> None:
    ds = DATASETS.get("synthetic_e2e")()
    assert isinstance(ds, DatasetBuilder)
    assert ds.splits == ("train", "dev", "test")
    assert ds.task == "table_to_text"
    assert dict(ds.metrics) == {
        "bleu": "e2e_bleu", "nist": "e2e_nist", "meteor": "e2e_meteor",
        "rouge_l": "e2e_rouge_l", "cider": "e2e_cider",
    }  # fmt: skip
    assert set(ds.options) == {"seed", "n_train_mrs", "n_dev_mrs", "n_test_mrs", "refs_per_mr"}


def test_deterministic_from_seed_and_seed_matters() -> None:
    a = load("train", seed=3)
    synthetic_e2e.generate.cache_clear()  # really regenerate, not the cached tuple
    b = load("train", seed=3)
    assert a == b
    c = load("train", seed=4)
    assert [e.target for e in a] != [e.target for e in c]


def test_default_sizes_and_speed() -> None:
    synthetic_e2e.generate.cache_clear()
    start = time.perf_counter()
    splits = {s: group_references(DATASETS.get("synthetic_e2e")().load(s, data_dir=None, options={}))
              for s in ("train", "dev", "test")}  # fmt: skip
    elapsed = time.perf_counter() - start
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [2000, 100, 100]
    # ~0.3 s alone; generous because the test machine is shared.
    assert elapsed < 3.0, f"generation took {elapsed:.2f} s"


def test_splits_have_disjoint_mrs_and_dev_test_do_not_depend_on_train_size() -> None:
    ids = {s: {e.source_id for e in load(s)} for s in ("train", "dev", "test")}
    assert len(ids["train"]) == 300 and len(ids["dev"]) == 60 and len(ids["test"]) == 60
    assert not ids["train"] & ids["dev"]
    assert not ids["train"] & ids["test"]
    assert not ids["dev"] & ids["test"]
    assert load("test") == load("test", n_train_mrs=50)


def test_mrs_are_e2e_shaped_and_linearized_like_e2e() -> None:
    for ex in load("dev"):
        pairs = parse_mr(ex.source_id)
        assert pairs[0][0] == "name" and len(pairs) >= 3
        assert [s for s, _ in pairs] == [s for s in SLOTS if s in dict(pairs)]  # MR order
        assert ex.source == " | ".join(f"{s} : {v}" for s, v in pairs)


def test_several_distinct_references_per_mr() -> None:
    items = group_references(load("train"))
    counts = [len(i.references) for i in items]
    assert min(counts) >= 2 and max(counts) <= 5
    assert 3.0 < sum(counts) / len(counts) < 4.0  # uniform over 2..5
    assert all(len(set(i.references)) == len(i.references) for i in items)
    assert [len(i.references) for i in group_references(load("dev", refs_per_mr=1))] == [1] * 60


def test_references_realize_the_literal_values() -> None:
    # Names, foods, areas, landmarks and types are always copied verbatim (case aside for a
    # sentence-initial "The"): the content is learnable from the MR.
    for item in group_references(load("dev")):
        values = dict(parse_mr(item.source_id))
        for ref in item.references:
            for slot in ("name", "eatType", "food", "area", "near"):
                if slot in values:
                    assert values[slot].lower() in ref.lower(), (slot, values[slot], ref)


def test_wording_is_diverse() -> None:
    refs = [e.target for e in load("train")]
    assert len(set(refs)) == len(refs)
    openings = {" ".join(r.split()[:1]) for r in refs} | {" ".join(r.split()[2:4]) for r in refs}
    assert len(openings) > 100
    # Many distinct word 3-grams once names are removed: not a handful of templates.
    trigrams = set()
    for r in refs:
        words = r.lower().split()
        trigrams.update(zip(words, words[1:], words[2:]))
    assert len(trigrams) > 3000


def test_copying_the_mr_scores_far_below_a_reference() -> None:
    items = [i for i in group_references(load("train")) if len(i.references) >= 3]
    # Score against the 2nd and 3rd reference of each MR (same number of refs for all).
    refs = [[i.references[1] for i in items], [i.references[2] for i in items]]
    human = sacrebleu.corpus_bleu([i.references[0] for i in items], refs).score
    copy = sacrebleu.corpus_bleu([i.source for i in items], refs).score
    assert copy < 15, copy
    assert 20 < human < 80, human  # learnable, yet far from trivially predictable
    assert human - copy > 15


@pytest.mark.parametrize(
    "options, match",
    [
        ({"n_train_mr": 5}, 'did you mean "n_train_mrs"'),
        ({"refs_per_mr": [3, 2]}, "refs_per_mr"),
        ({"refs_per_mr": "many"}, "refs_per_mr"),
        ({"n_dev_mrs": 0}, "n_dev_mrs"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, match: str) -> None:
    with pytest.raises(BenchError, match=match) as info:
        load("train", **options)
    assert "\n" not in str(info.value)


def test_unknown_split() -> None:
    with pytest.raises(BenchError, match='did you mean "test"'):
        load("tets")
