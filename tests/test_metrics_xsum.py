"""XSUM ROUGE-1/2/L (rouge-score, stemming, F x 100, mean) against the fixture.

Golden: data/xsum/fixtures/official_scores_real_systems.json, the deterministic mean of the
per-line F-measures of the five published outputs in xsum-model-predictions.tar.gz (read
from the tar in memory, never extracted).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bench.registry import METRICS

ROUGES = ("rouge1", "rouge2", "rougeL")


def _read(data_dir: Path, system: str) -> tuple[list[str], list[str], dict]:
    xsum = data_dir / "xsum"
    fixture = json.loads((xsum / "fixtures" / "official_scores_real_systems.json").read_text())
    with tarfile.open(xsum / "xsum-model-predictions.tar.gz", "r:gz") as tar:

        def lines(name: str) -> list[str]:
            member = tar.extractfile(f"xsum-model-predictions/{name}")
            assert member is not None
            out = member.read().decode("utf-8").split("\n")
            assert out[-1] == ""
            return out[:-1]

        gold, hyp = lines("gold-test-sentences.txt"), lines(system)
    assert len(gold) == len(hyp) == 11334
    return hyp, gold, fixture["scores_rouge_score"][system]["mean_fmeasure_x100 (deterministic)"]


def _check(data_dir: Path, system: str) -> None:
    hyp, gold, want = _read(data_dir, system)
    refs = [[g] for g in gold]
    for rouge in ROUGES:
        metric = METRICS.get(rouge)()
        assert metric.aggregate(metric.stats(hyp, refs)) == pytest.approx(want[rouge], abs=1e-9)


def test_rouge_golden_lead(data_dir: Path) -> None:
    _check(data_dir, "lead-test-output.txt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "system",
    [
        "ext-oracle-test-output.txt",
        "ptgen-test-output.txt",
        "convs2s-test-output.txt",
        "topic-convs2s-test-output.txt",
    ],
)
def test_rouge_golden(data_dir: Path, system: str) -> None:
    _check(data_dir, system)


def test_cached_tokenizer_is_rouge_scores_own() -> None:
    from rouge_score import rouge_scorer

    plain = rouge_scorer.RougeScorer(list(ROUGES), use_stemmer=True)
    pairs = [
        ("The cats were running quickly.", "a cat runs quick"),
        ("Über café — naïve résumé", "uber cafe naive resume"),
        ("", "something"),
        ("generously generalized generations", "generous general generation"),
    ]
    for rouge in ROUGES:
        metric = METRICS.get(rouge)()
        stats = metric.stats([h for _, h in pairs], [[r] for r, _ in pairs])
        want = [100 * plain.score(r, h)[rouge].fmeasure for r, h in pairs]
        assert stats[:, 0] == pytest.approx(want, abs=1e-12)


def test_rouge_edge_cases() -> None:
    r1 = METRICS.get("rouge1")()
    assert r1.stats(["the same summary"], [["The same summary."]])[0, 0] == pytest.approx(100.0)
    assert r1.stats([""], [["a reference"]])[0, 0] == 0.0
    # Several references: the best F-measure.
    assert r1.stats(["b c"], [["a", "b c"]])[0, 0] == pytest.approx(100.0)
    stats = r1.stats(["a b", "c"], [["a b"], ["d"]])
    assert r1.aggregate(stats) == pytest.approx(50.0)
    assert r1.aggregate_sums(np.array([[1.0, 2.0]]) @ stats, 3)[0] == pytest.approx(100 / 3)
    assert "stem:porter" in r1.signature() and r1.higher_is_better
