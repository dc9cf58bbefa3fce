"""chrF++ (Popović, WMT 2017: "chrF++: words helping character n-grams") and chrF (Popović,
WMT 2015) through sacrebleu.

sacrebleu's ``CHRF(word_order=2)`` defaults: character n-grams up to 6, word n-grams up to
2, beta 2, whitespace ignored, case kept, effective-order averaging (no eps smoothing). With
several references, each segment keeps the statistics of its best reference (highest
sentence-level chrF), as sacrebleu does. Per-example statistics are sacrebleu's own
[hyp, ref, match] counts for each of the 8 n-gram orders (24 numbers), so the corpus score
is chrF of their sum, exactly ``CHRF.corpus_score``. Scale 0-100.

``chrf`` is the same with no word n-grams (``CHRF()``, sacrebleu's default chrF): 18 numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.registry import METRICS

CHAR_ORDER = 6
WORD_ORDER = 2
BETA = 2


@METRICS.register("chrf_pp")
class ChrFPlusPlus:
    """chrF++ (0-100) on the text as given, every reference of each example."""

    name: ClassVar[str] = "chrf_pp"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True

    word_order: ClassVar[int] = WORD_ORDER

    def __init__(self) -> None:
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF(char_order=CHAR_ORDER, word_order=self.word_order, beta=BETA)

    def signature(self) -> str:
        import sacrebleu

        plus = "+" * self.word_order
        return (
            f"chrF{BETA}{plus}|nc:{CHAR_ORDER}|nw:{self.word_order}|space:no|case:mixed|eps:no"
            f"|nrefs:all(best)|impl:sacrebleu-{sacrebleu.__version__}|scale:100"
            f"|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        if len(hypotheses) != len(references):
            raise BenchError(
                f"{self.name}: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        n_cols = 3 * (CHAR_ORDER + self.word_order)
        if not hypotheses:
            return np.zeros((0, n_cols))
        for i, refs in enumerate(references):
            if not refs:
                raise BenchError(f"{self.name}: example {i} has no reference")
        # sacrebleu takes reference streams; None marks a missing reference of a segment.
        n_streams = max(len(r) for r in references)
        streams = [
            [refs[k] if k < len(refs) else None for refs in references] for k in range(n_streams)
        ]
        rows = self._chrf._extract_corpus_statistics(list(hypotheses), streams)
        return np.asarray(rows, dtype=np.float64).reshape(len(hypotheses), n_cols)

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return 0.0
        sums = np.asarray(stats).sum(0)
        return float(self._chrf._compute_f_score([int(x) for x in sums]))

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Scores from row sums [B, 3 x orders] (bootstrap fast path)."""
        return np.array([self._chrf._compute_f_score([int(x) for x in row]) for row in sums])


@METRICS.register("chrf")
class ChrF(ChrFPlusPlus):
    """chrF (0-100): character n-grams only, sacrebleu's default; every reference."""

    name = "chrf"
    word_order = 0
