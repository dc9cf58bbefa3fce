"""BLEU as sacrebleu computes it (Post, WMT 2018: "A Call for Clarity in Reporting BLEU Scores").

``sacrebleu.metrics.BLEU()`` defaults: the ``13a`` tokenizer (mteval-v13a's), case kept,
exponential smoothing, n-grams up to 4, the closest reference length per segment, every
reference of each example. This is the BLEU for data of your own (``custom`` datasets): the
official E2E / WebNLG / DART scripts live in ``mteval`` and ``webnlg_dart``.

Per-example statistics are sacrebleu's own segment statistics ([hyp_len, ref_len,
correct_1..4, total_1..4]), so the corpus score is BLEU of their sum, exactly
``BLEU.corpus_score``, and a subset or bootstrap resample aggregates by summing rows. Scale
0-100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.registry import METRICS

MAX_N = 4
N_STATS = 2 + 2 * MAX_N


@METRICS.register("bleu")
class SacreBleu:
    """sacrebleu BLEU (0-100): 13a tokens, mixed case, exp smoothing, every reference."""

    name: ClassVar[str] = "bleu"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True

    def __init__(self) -> None:
        from sacrebleu.metrics import BLEU

        # force: custom data may be tokenized already; the warning about it is not our call.
        self._bleu = BLEU(force=True)

    def signature(self) -> str:
        import sacrebleu

        return (
            f"bleu|nrefs:all|case:mixed|eff:no|tok:13a|smooth:exp|ngram:{MAX_N}"
            f"|impl:sacrebleu-{sacrebleu.__version__}|scale:100|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        if len(hypotheses) != len(references):
            raise BenchError(
                f"{self.name}: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        if not hypotheses:
            return np.zeros((0, N_STATS))
        for i, refs in enumerate(references):
            if not refs:
                raise BenchError(f"{self.name}: example {i} has no reference")
        # Reference streams as sacrebleu takes them; None marks a segment's missing reference.
        n_streams = max(len(r) for r in references)
        streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(n_streams)]
        rows = self._bleu._extract_corpus_statistics(list(hypotheses), streams)
        return np.asarray(rows, dtype=np.float64).reshape(len(hypotheses), N_STATS)

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return 0.0
        sums = np.asarray(stats).sum(0)
        return float(self._bleu._compute_score_from_stats([int(x) for x in sums]).score)

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Scores from row sums [B, 10] (bootstrap fast path)."""
        return np.array([self._bleu._compute_score_from_stats([int(x) for x in row]).score for row in sums])
