"""CIDEr-D (Vedantam et al. 2015) as the MS-COCO caption scripts compute it, the E2E CIDEr.

Source: pycocoevalcap ``cider/cider_scorer.py``, run by tuetschek/e2e-metrics on
COCO-tokenized text (``bench.metrics.coco_tokenizer``). n-grams 1..4 (whitespace split);
TF-IDF vectors with document frequency = number of items whose references contain the
n-gram and log(number of items) as the reference length term; per order, the clipped
cosine min(h, r) * r / (|h| |r|) times a Gaussian length penalty exp(-d^2 / (2 * 6^2)),
where d is the difference of the two texts' numbers of BIGRAMS (the scripts' "length" is
counted at n-gram index 1, a quirk kept here). Averaged over orders and references, times 10.

The IDF comes from the references of the scored corpus, so the per-item score depends on
the whole corpus. ``stats`` returns that per-item score (IDF from every item passed in); the
corpus score is its mean, and bootstrap resamples and subsets keep the full corpus's IDF
fixed (the official script run on a subset alone would re-estimate it).

Why not pycocoevalcap: ``Cider().compute_score`` on the same COCO-tokenized text gives the same
number (difference 4e-16 on the E2E tgen fixture system; measured by
benchmarks/bench_metric_libraries.py), but it re-estimates the IDF from whatever it is given,
so a subset or a bootstrap resample scored through it would not keep the full corpus's IDF;
ours is also 3 x faster (0.8 s vs 2.4 s).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.metrics.coco_tokenizer import tokenize_corpus
from bench.registry import METRICS

N = 4
SIGMA = 6.0


def _counts(text: str) -> Counter:
    words = text.split()
    return Counter(tuple(words[i : i + k]) for k in range(1, N + 1) for i in range(len(words) - k + 1))


def _vector(counts: Counter, df: dict, log_items: float) -> tuple[list[dict], list[float], int]:
    vec: list[dict] = [{} for _ in range(N)]
    norm = [0.0] * N
    length = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        w = float(tf) * (log_items - math.log(max(1.0, df.get(gram, 0.0))))
        vec[n][gram] = w
        norm[n] += w * w
        if n == 1:  # the scripts' "length" is the bigram count
            length += tf
    return vec, [math.sqrt(x) for x in norm], length


@functools.lru_cache(maxsize=4)
def _corpus(ref_groups: tuple[tuple[str, ...], ...]) -> tuple[dict, float, list[list[tuple]]]:
    """Document frequencies and reference vectors of one corpus (cached for rescoring)."""
    counts = [[_counts(r) for r in group] for group in ref_groups]
    df: Counter = Counter()
    for group in counts:
        df.update({g for c in group for g in c})
    log_items = math.log(float(len(ref_groups)))
    vectors = [[_vector(c, df, log_items) for c in group] for group in counts]
    return df, log_items, vectors


def _sim(hyp: tuple, ref: tuple) -> list[float]:
    vec_h, norm_h, len_h = hyp
    vec_r, norm_r, len_r = ref
    penalty = math.exp(-((len_h - len_r) ** 2) / (2 * SIGMA**2))
    out = []
    for n in range(N):
        r = vec_r[n]
        val = sum(min(w, r.get(g, 0.0)) * r.get(g, 0.0) for g, w in vec_h[n].items())
        if norm_h[n] != 0 and norm_r[n] != 0:
            val /= norm_h[n] * norm_r[n]
        out.append(val * penalty)
    return out


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """Per-item CIDEr-D of COCO-tokenized hypotheses, IDF from these references."""
    df, log_items, ref_vectors = _corpus(tuple(tuple(g) for g in references))
    scores = np.zeros(len(hypotheses))
    for i, (hyp, refs) in enumerate(zip(hypotheses, ref_vectors)):
        if not refs:
            raise BenchError(f"CIDEr: item {i} has no reference")
        h = _vector(_counts(hyp), df, log_items)
        total = np.zeros(N)
        for ref in refs:
            total += _sim(h, ref)
        scores[i] = float(np.mean(total)) / len(refs) * 10.0
    return scores


@METRICS.register("e2e_cider")
class CocoCiderD:
    """CIDEr-D as the COCO/E2E scripts (raw scale, not x100)."""

    name: ClassVar[str] = "e2e_cider"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True

    def __init__(self, tokenizer: str = "auto"):
        self.tokenizer = tokenizer

    def signature(self) -> str:
        return (
            f"{self.name}|cider-d(coco)|n:{N}|sigma:{SIGMA}|idf:scored-corpus-refs,fixed-in-bootstrap"
            f"|tok:coco-ptb(corenlp-3.4.1,lc,punct-removed)|refs:grouped-per-source"
            f"|agg:mean|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        hyps, refs = tokenize_corpus(hypotheses, references, self.tokenizer)
        return cider_d(hyps, refs)[:, None]

    def aggregate(self, stats: np.ndarray) -> float:
        return float(np.mean(stats[:, 0])) if len(stats) else 0.0

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        return np.asarray(sums)[:, 0] / n
