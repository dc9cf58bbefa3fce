"""ROUGE-1, ROUGE-2 and ROUGE-L (Lin 2004) as the Prefix-Tuning code scores XSUM.

XiangLi1999/PrefixTuning ``seq2seq/utils.py`` (calculate_rouge) uses Google's
``rouge-score`` package: ``RougeScorer(['rouge1', 'rouge2', 'rougeL'], use_stemmer=True)``
per (prediction, target) pair, F-measure x 100. It reports the mid point of rouge-score's
random bootstrap aggregate; we report the plain mean of the per-example F-measures, the
deterministic quantity that bootstrap estimates (they agree to ~0.01 on the XSUM test set).

The per-example statistic is that F-measure (one column); the aggregate is the mean. With
several references an example keeps its best F-measure (rouge-score's ``score_multi``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.registry import METRICS


class _Stemmer:
    """nltk's Porter stemmer with a memo: the same words recur across 11k summaries."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()
        self._memo: dict[str, str] = {}

    def stem(self, word: str) -> str:
        out = self._memo.get(word)
        if out is None:
            out = self._memo[word] = self._stemmer.stem(word)
        return out


_STEMMER: _Stemmer | None = None


@lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> tuple[str, ...]:
    """rouge-score's default tokenization with stemming, memoized across the three metrics."""
    from rouge_score import tokenize

    global _STEMMER
    if _STEMMER is None:
        _STEMMER = _Stemmer()
    return tuple(tokenize.tokenize(text, _STEMMER))


class _CachedTokenizer:
    """A rouge-score tokenizer (``tokenize(text) -> list``) over ``_tokens``."""

    def tokenize(self, text: str) -> list[str]:
        return list(_tokens(text))


class RougeScore:
    """One ROUGE variant of the ``rouge-score`` package (F-measure x 100, stemming on)."""

    name: ClassVar[str] = "rouge"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True
    rouge_type: ClassVar[str] = "rouge1"

    def __init__(self) -> None:
        from rouge_score import rouge_scorer

        # Same tokens as use_stemmer=True (checked in the tests), computed once per text.
        self._scorer = rouge_scorer.RougeScorer([self.rouge_type], tokenizer=_CachedTokenizer())

    def signature(self) -> str:
        from importlib.metadata import version

        return (
            f"{self.rouge_type}|impl:rouge-score-{version('rouge-score')}|stem:porter"
            f"|tok:rouge-score-default|measure:f|nrefs:best|agg:mean|scale:100"
            f"|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        if len(hypotheses) != len(references):
            raise BenchError(
                f"{self.name}: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        rows = np.zeros((len(hypotheses), 1), dtype=np.float64)
        for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
            if not refs:
                raise BenchError(f"{self.name}: example {i} has no reference")
            # rouge-score's argument order is (target, prediction).
            best = max(self._scorer.score(ref, hyp)[self.rouge_type].fmeasure for ref in refs)
            rows[i, 0] = 100.0 * best
        return rows

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return 0.0
        return float(np.asarray(stats)[:, 0].mean())

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Scores from row sums [B, 1] over ``n`` rows each (bootstrap fast path)."""
        return np.asarray(sums, dtype=np.float64)[..., 0] / n


@METRICS.register("rouge1")
class Rouge1(RougeScore):
    """Unigram overlap F-measure."""

    name = "rouge1"
    rouge_type = "rouge1"


@METRICS.register("rouge2")
class Rouge2(RougeScore):
    """Bigram overlap F-measure."""

    name = "rouge2"
    rouge_type = "rouge2"


@METRICS.register("rougeL")
class RougeL(RougeScore):
    """Longest-common-subsequence F-measure (sentence-level, no summary splitting)."""

    name = "rougeL"
    rouge_type = "rougeL"
