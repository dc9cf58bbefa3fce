"""BLEU (Papineni et al. 2002) and NIST (Doddington 2002) as the E2E NLG Challenge scores them.

Source: tuetschek/e2e-metrics ``measure_scores.py``. It computes both with NIST's
mteval-v13a semantics in one of two implementations, and the numbers differ slightly:

- ``python`` (``measure_scores.py -p``, what the Prefix-Tuning code ran): the Python port
  ``metrics/pymteval.py``. Registered as ``e2e_bleu`` / ``e2e_nist``.
- ``perl`` (the script's default): ``mteval-v13a-sig.pl`` on SGML files where the references
  of an MR are spread over reference sets, MRs with fewer references padded with empty
  segments. Re-implemented here (no Perl is run). Registered as ``e2e_bleu_perl`` /
  ``e2e_nist_perl``.

Shared: mteval-v13a's ``tokenization`` (punctuation split, periods/commas kept inside
numbers), case-insensitive matching, clipped n-gram counts against the per-MR maximum over
references, corpus-level (not averaged sentence-level) scores, BLEU up to 4-grams, NIST up
to 5-grams with information weights from the reference n-gram counts of the whole corpus.

Where they differ (reproduced on purpose):

- empty text: the Python port tokenizes "" to one empty token, Perl to no token;
- n-gram counts of short hypotheses: Python counts ``len - n + 1`` even when negative,
  Perl clips at zero;
- BLEU for zero matches: Python floors counts at 1e-15/1e-9, Perl's default smoothing
  halves a running factor for each zero-match order and treats an order with no n-grams
  as precision 1;
- closest reference length (BLEU) and average reference length (NIST penalty): Perl sees
  the padding empty references (length 0) and divides total reference words by the number
  of reference sets; Python averages the real references of each MR;
- lowercasing: Perl lowercases ASCII only (``tr/A-Z/a-z/``), Python any letter.

Per-example statistics are summable, so a subset or bootstrap resample is scored by summing
rows. NIST's information weights (and Perl's number of reference sets) are computed once
from all references passed to ``stats`` and then stay fixed for subsets and resamples.

Why not sacrebleu for the Perl variant: ``corpus_bleu(tokenize="13a", lowercase=True)`` with
the references padded to the same number of streams (as the SGML files are) equals
``e2e_bleu_perl`` on the tgen fixture system (difference 0.0 with ``smooth_method`` exp or
none; measured by benchmarks/bench_metric_libraries.py; 0.8 s both). It is not called because
the per-MR statistics (subsets, bootstrap) are private in sacrebleu, NIST has no sacrebleu
counterpart and shares the tokenization and counts computed here, and the zero-match and
empty-text cases above follow the Perl script, which sacrebleu does not promise.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.registry import METRICS

_PUNCT = re.compile(r"([{-~\[-` -&(-+:-@/])")
_PERIOD_COMMA_AFTER_NONDIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NONDIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_WS = re.compile(r"\s+")
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

BLEU_N = 4
NIST_N = 5
# NIST length penalty: a system 2/3 the reference length gets factor 0.5.
NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2


def mteval_tokenize(text: str, *, variant: str) -> list[str]:
    """mteval-v13a tokenization; ``variant`` "python" (pymteval) or "perl" (mteval-v13a.pl)."""
    s = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    s = s.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    s = f" {s} "
    if variant == "perl":
        s = s.translate(_ASCII_UPPER)
    s = _PUNCT.sub(r" \1 ", s)
    s = _PERIOD_COMMA_AFTER_NONDIGIT.sub(r"\1 \2 ", s)
    s = _PERIOD_COMMA_BEFORE_NONDIGIT.sub(r" \1 \2", s)
    s = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", s)
    s = _WS.sub(" ", s).strip()
    if variant == "perl":
        return s.split()  # Perl's split /\s+/ on "" gives no token
    # pymteval: "".split(" ") == [""] (one empty token); its n-grams lowercase every letter.
    return [t.lower() for t in s.split(" ")]


@functools.lru_cache(maxsize=100_000)
def _tokens(text: str, variant: str) -> tuple[str, ...]:
    return tuple(mteval_tokenize(text, variant=variant))


@functools.lru_cache(maxsize=50_000)
def _ref_group(group: tuple[str, ...], variant: str) -> tuple[tuple[int, ...], tuple[Counter, ...]]:
    """Reference lengths and per-order maximum n-gram counts of one MR (cached: every
    rescoring of the same dataset reuses them)."""
    toks = [_tokens(r, variant) for r in group]
    return tuple(len(t) for t in toks), tuple(
        _max_ref_counts(toks, n) for n in range(1, max(BLEU_N, NIST_N) + 1)
    )


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _max_ref_counts(refs: Sequence[Sequence[str]], n: int) -> Counter:
    merged: Counter = Counter()
    for ref in refs:
        merged |= _ngrams(ref, n)  # | keeps the maximum count per n-gram
    return merged


def _closest_ref_len(hyp_len: int, ref_lens: Sequence[int]) -> int:
    # Closest to the hypothesis length; on a tie the shorter (both implementations).
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


@functools.lru_cache(maxsize=8)
def _nist_info(
    all_refs: tuple[tuple[str, ...], ...], variant: str
) -> dict[tuple[str, ...], float]:
    """log2(count(prefix) / count(n-gram)) over every reference of the corpus."""
    counts: Counter = Counter()
    total_words = 0
    for group in all_refs:
        for text in group:
            ref = _tokens(text, variant)
            total_words += len(ref)
            for n in range(1, NIST_N + 1):
                counts.update(_ngrams(ref, n))
    info = {}
    for gram, c in counts.items():
        prefix = counts[gram[:-1]] if len(gram) > 1 else total_words
        info[gram] = math.log2(prefix / c)
    return info


class _MtevalMetric:
    """Shared tokenization and reference handling for the four mteval metrics."""

    name: ClassVar[str]
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True
    variant: ClassVar[str]  # "python" | "perl"
    metric: ClassVar[str]  # "BLEU" | "NIST"

    def signature(self) -> str:
        impl = "pymteval(e2e-metrics -p)" if self.variant == "python" else "mteval-v13a-sig.pl(e2e-metrics)"
        n = BLEU_N if self.metric == "BLEU" else NIST_N
        extra = "|smooth:floor-1e-15" if self.variant == "python" else "|smooth:mteval-exp"
        if self.metric == "NIST":
            extra = "|info:corpus-refs-fixed"
        return (
            f"{self.name}|{self.metric}|impl:{impl}|tok:mteval-13a|case:lc"
            f"|n:{n}|refs:grouped-per-source{extra}|version:{self.VERSION}"
        )

    def _prepare(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> tuple[list[tuple[str, ...]], tuple[tuple[str, ...], ...]]:
        if len(hypotheses) != len(references):
            raise BenchError(
                f"{self.name}: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        groups = tuple(tuple(g) for g in references)
        for i, group in enumerate(groups):
            if not group:
                raise BenchError(f"{self.name}: item {i} has no reference")
        return [_tokens(h, self.variant) for h in hypotheses], groups


class _Bleu(_MtevalMetric):
    """Corpus BLEU-4; stats columns: matches 1..4, hypothesis n-gram counts 1..4, ref length."""

    metric = "BLEU"

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        hyps, groups = self._prepare(hypotheses, references)
        n_sets = max((len(g) for g in groups), default=0)
        out = np.zeros((len(hyps), 2 * BLEU_N + 1))
        for i, (hyp, group) in enumerate(zip(hyps, groups)):
            lens, max_counts = _ref_group(group, self.variant)
            for n in range(1, BLEU_N + 1):
                ref_max = max_counts[n - 1]
                out[i, n - 1] = sum(min(c, ref_max[g]) for g, c in _ngrams(hyp, n).items())
                count = len(hyp) - n + 1
                out[i, BLEU_N + n - 1] = count if self.variant == "python" else max(count, 0)
            ref_lens = list(lens)
            if self.variant == "perl":
                ref_lens += [0] * (n_sets - len(group))  # the padding empty reference segments
            out[i, 2 * BLEU_N] = _closest_ref_len(len(hyp), ref_lens)
        return out

    def aggregate(self, stats: np.ndarray) -> float:
        s = np.asarray(stats, dtype=np.float64)
        return float(self.aggregate_sums(s.sum(0)[None, :], len(s))[0])

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """BLEU from summed statistics, vectorized over rows of ``sums`` [B, 9]."""
        s = np.asarray(sums, dtype=np.float64)
        matches, counts, ref_len = s[:, :BLEU_N], s[:, BLEU_N : 2 * BLEU_N], s[:, 2 * BLEU_N]
        hyp_len = counts[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.variant == "python":
                # pymteval: BP only when not longer; 1e-5 stands in for a zero length.
                safe_len = np.where(hyp_len != 0, hyp_len, 1e-5)
                bp = np.where(hyp_len <= ref_len, np.exp(1.0 - ref_len / safe_len), 1.0)
                logp = np.log(np.maximum(matches, 1e-15) / np.maximum(counts, 1e-9)).sum(1)
                return bp * np.exp(logp / BLEU_N)
            # mteval-v13a bleu_score (its default smoothing).
            bp = np.where(hyp_len > 0, np.exp(np.minimum(0.0, 1.0 - ref_len / hyp_len)), 0.0)
            smooth = np.ones(len(s))
            total = np.zeros(len(s))
            for j in range(BLEU_N):
                m, c = matches[:, j], counts[:, j]
                zero_match = (c != 0) & (m == 0)
                smooth = np.where(zero_match, smooth * 2, smooth)
                term = np.where(
                    c == 0, 0.0, np.where(m == 0, np.log(1.0 / (smooth * c)), np.log(m / c))
                )
                total += term
            return np.exp(total / BLEU_N) * bp


class _Nist(_MtevalMetric):
    """Corpus NIST-5; stats: information of matches 1..5, hypothesis n-gram counts 1..5,
    and the reference length term of the penalty (see ``_ref_term``)."""

    metric = "NIST"

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        hyps, groups = self._prepare(hypotheses, references)
        info = _nist_info(groups, self.variant)
        n_sets = max((len(g) for g in groups), default=0)
        out = np.zeros((len(hyps), 2 * NIST_N + 1))
        for i, (hyp, group) in enumerate(zip(hyps, groups)):
            lens, max_counts = _ref_group(group, self.variant)
            for n in range(1, NIST_N + 1):
                ref_max = max_counts[n - 1]
                out[i, n - 1] = sum(
                    info.get(g, 0.0) * min(c, ref_max[g])
                    for g, c in _ngrams(hyp, n).items()
                    if g in ref_max
                )
                count = len(hyp) - n + 1
                out[i, NIST_N + n - 1] = count if self.variant == "python" else max(count, 0)
            words = sum(lens)
            # Python: the MR's average reference length; Perl: its reference words divided by
            # the number of reference sets (padding included), which sums to total / sets.
            out[i, 2 * NIST_N] = words / len(group) if self.variant == "python" else words / n_sets
        return out

    def aggregate(self, stats: np.ndarray) -> float:
        s = np.asarray(stats, dtype=np.float64)
        return float(self.aggregate_sums(s.sum(0)[None, :], len(s))[0])

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """NIST from summed statistics, vectorized over rows of ``sums`` [B, 11]."""
        s = np.asarray(sums, dtype=np.float64)
        info, counts, ref_len = s[:, :NIST_N], s[:, NIST_N : 2 * NIST_N], s[:, 2 * NIST_N]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.variant == "python":
                # pymteval divides by the raw count; a zero total would raise there, 0 here.
                terms = np.where(counts != 0, info / counts, 0.0)
            else:
                terms = info / np.maximum(counts, 1.0)
            ratio = counts[:, 0] / ref_len
            penalty = np.where(
                ratio >= 1, 1.0, np.where(ratio <= 0, 0.0, np.exp(-NIST_BETA * np.log(ratio) ** 2))
            )
            penalty = np.where(np.isnan(ratio), 0.0, penalty)
        return terms.sum(1) * penalty


@METRICS.register("e2e_bleu")
class E2EBleu(_Bleu):
    """BLEU-4 as ``measure_scores.py -p`` (the Prefix-Tuning setting), 0-1 scale."""

    name = "e2e_bleu"
    variant = "python"


@METRICS.register("e2e_nist")
class E2ENist(_Nist):
    """NIST-5 as ``measure_scores.py -p``."""

    name = "e2e_nist"
    variant = "python"


@METRICS.register("e2e_bleu_perl")
class E2EBleuPerl(_Bleu):
    """BLEU-4 as ``measure_scores.py`` without -p (mteval-v13a-sig.pl), 0-1 scale."""

    name = "e2e_bleu_perl"
    variant = "perl"


@METRICS.register("e2e_nist_perl")
class E2ENistPerl(_Nist):
    """NIST-5 as ``measure_scores.py`` without -p (mteval-v13a-sig.pl)."""

    name = "e2e_nist_perl"
    variant = "perl"
