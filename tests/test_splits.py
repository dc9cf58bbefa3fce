"""Low-data subsets, field filters and extrapolation presets (bench.splits)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.interfaces import Example
from bench.splits import EXTRAPOLATION_PRESETS, apply_filter, exclude, sample_subset

ROOT = Path(__file__).resolve().parents[1]


def pool(n_sources: int = 300, refs: int = 3) -> list[Example]:
    """E2E-like: each source has several references; fields for filtering."""
    cats = ["Airport", "City", "Food"]
    return [
        Example(f"s{s}/r{r}", f"s{s}", f"src {s}", f"ref {s}.{r}",
                {"category": cats[s % 3], "seen": "yes" if s % 2 else "no"})
        for s in range(n_sources)
        for r in range(refs)
    ]


def ids(examples: list[Example]) -> list[str]:
    return [e.example_id for e in examples]


def test_deterministic_and_sized() -> None:
    data = pool()
    a = sample_subset(data, size=50, subset=0, key="e2e@1#x")
    b = sample_subset(list(data), size=50, subset=0, key="e2e@1#x")
    assert ids(a[0]) == ids(b[0]) and ids(a[1]) == ids(b[1])
    assert len(a[0]) == 50 and len(a[1]) == 15  # round(0.3 * 50)
    assert len(set(ids(a[0]))) == 50  # without replacement
    train, dev = sample_subset(data, size=100, subset=0, key="e2e@1#x", dev_fraction=0.25)
    assert len(train) == 100 and len(dev) == 25


def test_same_in_a_fresh_process() -> None:
    """Seeded from sha256, not Python's salted hash(): another interpreter draws the same."""
    code = (
        "from tests.test_splits import pool, ids\n"
        "from bench.splits import sample_subset\n"
        "print(ids(sample_subset(pool(), size=20, subset=3, key='k')[0]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == str(ids(sample_subset(pool(), size=20, subset=3, key="k")[0]))


def test_subsets_and_keys_differ() -> None:
    data = pool()
    draws = [ids(sample_subset(data, size=50, subset=i, key="k")[0]) for i in range(5)]
    assert len({tuple(d) for d in draws}) == 5
    other = ids(sample_subset(data, size=50, subset=0, key="k2")[0])
    assert other != draws[0]


@pytest.mark.parametrize("nested", [False, True])
def test_dev_never_overlaps_train(nested: bool) -> None:
    data = pool()
    for size in (50, 100, 200):
        for subset in range(5):
            train, dev = sample_subset(data, size=size, subset=subset, key="k", nested=nested)
            assert not {e.source_id for e in train} & {e.source_id for e in dev}
            assert len(dev) == round(0.3 * size)


def test_nested_prefix_and_not_nested_independent() -> None:
    data = pool()
    small = ids(sample_subset(data, size=50, subset=2, key="k", nested=True)[0])
    big = ids(sample_subset(data, size=100, subset=2, key="k", nested=True)[0])
    assert big[:50] == small
    small_flat = ids(sample_subset(data, size=50, subset=2, key="k")[0])
    big_flat = ids(sample_subset(data, size=100, subset=2, key="k")[0])
    assert big_flat[:50] != small_flat


def test_subset_errors() -> None:
    data = pool(n_sources=10, refs=1)
    with pytest.raises(BenchError, match="train_size 11 is larger than the 10 examples"):
        sample_subset(data, size=11, subset=0, key="k")
    with pytest.raises(BenchError, match="positive integer"):
        sample_subset(data, size=0, subset=0, key="k")
    with pytest.raises(BenchError, match="non-negative"):
        sample_subset(data, size=5, subset=-1, key="k")
    with pytest.raises(BenchError, match="only 2 examples outside the 8-example training subset"):
        sample_subset(data, size=8, subset=0, key="k", dev_fraction=0.5)


def test_filter_and_exclude() -> None:
    data = pool(n_sources=12, refs=1)
    airports = apply_filter(data, {"category": ["Airport"]})
    assert {e.fields["category"] for e in airports} == {"Airport"} and len(airports) == 4
    both = apply_filter(data, {"category": ["Airport", "City"], "seen": ["yes"]})
    assert [e.source_id for e in both] == ["s1", "s3", "s7", "s9"]
    assert ids(exclude(data, {"category": ["Airport"]})) == ids(
        apply_filter(data, {"category!": ["Airport"]}))
    assert len(exclude(data, {"category": ["Airport"]})) == 8


def test_filter_mistakes() -> None:
    data = pool(n_sources=12, refs=1)
    with pytest.raises(BenchError) as err:
        apply_filter(data, {"categroy": ["Airport"]}, what="suite.datasets[0].train_filter")
    msg = str(err.value)
    assert msg.startswith("suite.datasets[0].train_filter: unknown field 'categroy'")
    assert '(did you mean "category"?)' in msg and "fields: category, seen" in msg
    with pytest.raises(BenchError, match="needs a list of strings"):
        apply_filter(data, {"category": "Airport"})
    with pytest.raises(BenchError, match="keeps none of the 12 examples"):
        apply_filter(data, {"category": ["Artist"]})


def test_absent_value_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bench.splits"):
        kept = apply_filter(pool(n_sources=6, refs=1), {"category": ["Airport", "Airprt"]})
    assert len(kept) == 2
    assert "no example has category='Airprt'" in caplog.text and "Airport" in caplog.text


def test_presets_are_plain_data_with_known_fields() -> None:
    assert set(EXTRAPOLATION_PRESETS) == {"webnlg", "xsum"}
    assert set(EXTRAPOLATION_PRESETS["xsum"]) == {"news_to_sports", "within_news"}
    for presets in EXTRAPOLATION_PRESETS.values():
        for preset in presets.values():
            assert set(preset) == {"train", "eval"}
            for flt in preset.values():
                assert all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                           for v in flt.values())
    within = EXTRAPOLATION_PRESETS["xsum"]["within_news"]
    assert within["train"]["topic"] == within["eval"]["topic!"] == ["world", "uk", "business"]


# ------------------------------------------------------------------------- real data


def test_webnlg_seen_to_unseen_on_real_data() -> None:
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    data = Path(os.environ.get("BENCH_DATA_DIR") or default)
    if not (data / "webnlg").is_dir():
        pytest.skip(f"WebNLG not found under {data} (set BENCH_DATA_DIR)")
    from bench.datasets.webnlg import WebNLG
    from bench.interfaces import group_references

    preset = EXTRAPOLATION_PRESETS["webnlg"]["seen_to_unseen"]
    train = apply_filter(WebNLG().load("train", data_dir=data, options={}), preset["train"])
    test = apply_filter(WebNLG().load("test", data_dir=data, options={}), preset["eval"])
    assert len(group_references(test)) == 891
    assert not {e.fields["category"] for e in train} & {e.fields["category"] for e in test}
    sub, dev = sample_subset(train, size=100, subset=0, key="webnlg@1")
    assert len(sub) == 100 and len(dev) == 30
