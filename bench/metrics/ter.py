"""Translation Edit Rate with tercom 0.7.25's semantics (Snover et al., AMTA 2006).

WebNLG 2017 and DART score TER with ``tercom.7.25.jar -h hyp -r ref`` (defaults: case
folded, no normalization, punctuation kept, beam width 20, maximum shift distance 50,
shifts of at most 10 words, all edit costs 1). This is an independent Python
re-implementation of that algorithm, kept faithful to its search so the numbers match:

- a beam-limited edit distance (the beam is relative to the best diagonal cost of the
  previous hypothesis position) whose back-pointers prefer match/substitution, then
  insertion, then deletion as tercom's do;
- greedy shifts: at each step every candidate shift of a hypothesis phrase that also
  occurs in the reference (and is misaligned there) is tried, longest phrases first, and the
  best gain is applied; a shift that only breaks even is taken when nothing better was found,
  exactly as tercom does;
- several references: the edits of the best reference (fewest edits, first on ties) over
  the average length of all references of the segment;
- corpus TER = sum of edits / sum of average reference lengths (tercom's "Total TER").

Per-example statistics are [edits, average reference length], so subsets sum.

Why not sacrebleu's TER: on the first 300 (and, in a second run, 400) WebNLG test items that
have three references, ``sacrebleu.metrics.TER(case_sensitive=False)`` equals this
implementation on the three fixture systems (difference 0.0; measured by
benchmarks/bench_metric_libraries.py), but it was 2-13 x slower there (3.9-24 s vs 1.3-2.7 s on
a shared 2-core machine), and it takes one stream per reference: WebNLG items have one to eight
references, DART items up to 35, and padding streams with empty lines changes TER (an empty
reference enters the average length and can be the best reference: 0.569 vs tercom's 0.452 on
the first 100 items of the BART fixture, 0.477 vs 0.387 for the template system). This file
keeps tercom's per-segment semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.registry import METRICS

BEAM_WIDTH = 20
MAX_SHIFT_SIZE = 10
MAX_SHIFT_DIST = 50


# Back-pointer codes of the edit-distance table (tercom: ' ', 'S', 'I', 'D').
_NONE, _MATCH, _SUB, _INS, _DEL = 0, 1, 2, 3, 4
_OPS = {_MATCH: " ", _SUB: "S", _INS: "I", _DEL: "D"}
_UNSET = 10**9  # an unreached cell (tercom: -1)
_NO_BEST = 999999  # tercom's INF: the beam is open while no diagonal move was made


def _batch_min_edit_dist(
    hyps: np.ndarray, ref: np.ndarray, beam_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """tercom's beam-limited edit distance for B hypotheses of one length at once.

    ``hyps`` is [B, n] and ``ref`` [m] word ids. Returns the costs [B] and the back-pointer
    table [n + 1, B, m + 1] (``_trace`` reads an alignment from it).

    tercom fills the table column by column (one column per hypothesis word), scanning rows
    top-down. Scanning column j, a cell is expanded only if its cost is within
    ``beam_width`` of the best diagonal cost made from column j - 1 (no beam in the last
    column); an expanded cell writes its diagonal (match/substitution) and insertion moves
    into column j + 1 and its deletion into the next row of column j. Every write keeps
    the old value on ties, so pointers prefer diagonal, then insertion, then deletion.
    Within a column the deletions form a running minimum: with ``c[i] = min_k(pre[k] +
    i - k)`` (k <= i), a chain of deletions reaches row i exactly when ``c[i] <= thr + 1``
    (every earlier link then costs at most ``thr``, so it was expanded), which gives the
    column without a Python loop over rows. Checked against a literal port of tercom's
    loop in the tests.
    """
    n_cand, n_hyp = hyps.shape
    n_ref = len(ref)
    rows = np.arange(n_ref + 1, dtype=np.int64)
    # Per (candidate, column, row): the diagonal move's cost and pointer into that row. Row
    # 0 has no diagonal predecessor: ``shifted`` keeps it unreached.
    mismatch = ref[None, None, :] != hyps[:, :, None]
    diag_add = np.zeros((n_cand, n_hyp, n_ref + 1), dtype=np.uint8)
    diag_add[:, :, 1:] = mismatch
    diag_ptr = np.full((n_cand, n_hyp, n_ref + 1), _SUB, dtype=np.int8)
    diag_ptr[:, :, 1:][~mismatch] = _MATCH
    pre = np.full((n_cand, n_ref + 1), _UNSET, dtype=np.int64)
    pre[:, 0] = 0
    ptr = np.zeros((n_cand, n_ref + 1), dtype=np.int8)
    back = np.empty((n_hyp + 1, n_cand, n_ref + 1), dtype=np.int8)
    last_best = np.full((n_cand, 1), _NO_BEST, dtype=np.int64)
    shifted = np.empty((n_cand, n_ref + 1), dtype=np.int64)
    shifted[:, 0] = _UNSET
    for j in range(n_hyp + 1):
        chain = np.minimum.accumulate(pre - rows, axis=1)
        chain += rows
        if j == n_hyp:
            reached = chain < _UNSET // 2  # no beam in the last column
            back[j] = np.where(reached & (chain < pre), _DEL, ptr)
            return np.where(reached[:, -1], chain[:, -1], _UNSET), back
        thr = last_best + beam_width
        by_deletion = chain < pre
        by_deletion &= chain <= thr + 1
        back[j] = np.where(by_deletion, _DEL, ptr)
        cost = np.where(chain <= thr, chain, _UNSET)  # expanded cells only
        shifted[:, 1:] = cost[:, :-1]
        diag = shifted + diag_add[:, j]
        ins = cost + 1
        ptr = np.where(diag <= ins, diag_ptr[:, j], _INS)
        pre = np.minimum(diag, ins)
        best = diag.min(axis=1, keepdims=True)
        last_best = np.where(best >= _UNSET, _NO_BEST, best)
    raise AssertionError("unreachable")  # pragma: no cover


def _trace(back: np.ndarray, b: int) -> str:
    """The alignment path of candidate ``b`` (one tercom symbol per step)."""
    i, j = back.shape[2] - 1, back.shape[0] - 1
    path = []
    while i > 0 or j > 0:
        op = int(back[j, b, i])
        if op == _MATCH or op == _SUB:
            i -= 1
            j -= 1
        elif op == _DEL:
            i -= 1
        elif op == _INS:
            j -= 1
        else:  # pragma: no cover - tercom exits here ("Invalid path")
            raise RuntimeError(f"TER: no alignment path through ({i}, {j})")
        path.append(_OPS[op])
    path.reverse()
    return "".join(path)


def _word_matches(hyp: Sequence[int], ref: Sequence[int]) -> dict[tuple[int, ...], list[int]]:
    """Reference phrases (up to MAX_SHIFT_SIZE + 1 words, all words present in the
    hypothesis) -> their sorted start positions in the reference."""
    in_hyp = set(hyp)
    good = [w in in_hyp for w in ref]
    locs: dict[tuple[int, ...], list[int]] = {}
    for start in range(len(ref)):
        if not good[start]:
            continue
        end = start
        while end < len(ref) and end - start <= MAX_SHIFT_SIZE and good[end]:
            locs.setdefault(tuple(ref[start : end + 1]), []).append(start)
            end += 1
    return locs  # starts were appended in increasing order


def _alignment_errors(
    path: str, n_hyp: int, n_ref: int
) -> tuple[list[bool], list[bool], list[int]]:
    """Which hypothesis/reference words are wrong, and each reference word's hyp position."""
    herr = [False] * n_hyp
    rerr = [False] * n_ref
    ralign = [0] * n_ref
    hpos = rpos = -1
    for op in path:
        if op == " " or op == "S":
            hpos += 1
            rpos += 1
            herr[hpos] = rerr[rpos] = op == "S"
            ralign[rpos] = hpos
        elif op == "I":
            hpos += 1
            herr[hpos] = True
        else:  # 'D'
            rpos += 1
            rerr[rpos] = True
            ralign[rpos] = hpos
    return herr, rerr, ralign


def _candidate_shifts(
    hyp: Sequence[int],
    locs: dict[tuple[int, ...], list[int]],
    herr: list[bool],
    rerr: list[bool],
    ralign: list[int],
    max_shift_dist: int,
) -> list[list[tuple[int, int, int]]]:
    """Candidate shifts (start, end, new location) grouped by length - 1, in tercom's order."""
    shifts: list[list[tuple[int, int, int]]] = [[] for _ in range(MAX_SHIFT_SIZE + 1)]
    for start in range(len(hyp)):
        first = locs.get((hyp[start],))
        if first is None:
            continue
        if not any(
            start != ralign[m]
            and ralign[m] - start <= max_shift_dist
            and start - ralign[m] - 1 <= max_shift_dist
            for m in first
        ):
            continue
        end = start
        ok = True
        while ok and end < len(hyp) and end < start + MAX_SHIFT_SIZE:
            cand = tuple(hyp[start : end + 1])
            ok = False
            moves = locs.get(cand)
            if moves is None:
                end += 1
                continue
            if not any(herr[start : end + 1]):
                ok = True  # a correct phrase is never moved, but longer ones may be
                end += 1
                continue
            length = end - start
            for moveto in moves:
                ra = ralign[moveto]
                if not (
                    ra != start
                    and (ra < start or ra > end)
                    and ra - start <= max_shift_dist
                    and start - ra <= max_shift_dist
                ):
                    continue
                ok = True
                if not any(rerr[moveto : moveto + length + 1]):
                    continue
                for roff in range(-1, length + 1):
                    if roff == -1 and moveto == 0:
                        shifts[length].append((start, end, -1))
                    elif start != ralign[moveto + roff] and (
                        roff == 0 or ralign[moveto + roff] != ra
                    ):
                        shifts[length].append((start, end, ralign[moveto + roff]))
            end += 1
    return shifts


def _perform_shift(words: Sequence[int], start: int, end: int, newloc: int) -> list[int]:
    """Move words[start..end] to just after position ``newloc`` (-1: to the front)."""
    w = list(words)
    if newloc == -1:
        return w[start : end + 1] + w[:start] + w[end + 1 :]
    if newloc < start:
        return w[: newloc + 1] + w[start : end + 1] + w[newloc + 1 : start] + w[end + 1 :]
    if newloc > end:
        return w[:start] + w[end + 1 : newloc + 1] + w[start : end + 1] + w[newloc + 1 :]
    # Inside its own span (tercom keeps this case): shift right by newloc - start.
    cut = end + (newloc - start)
    return w[:start] + w[end + 1 : cut + 1] + w[start : end + 1] + w[cut + 1 :]


def _best_shift(
    cur: list[int],
    ref: np.ndarray,
    locs: dict[tuple[int, ...], list[int]],
    edits: int,
    path: str,
    beam_width: int,
    max_shift_dist: int,
) -> tuple[list[int], int, str] | None:
    """tercom's CalcBestShift: the shifted hypothesis, its edits and alignment, or None.

    tercom tries the candidates one by one, longest phrases first, and stops as soon as no
    remaining candidate can beat the best gain found. Here the edit distances of all
    candidates are computed together (vectorized); the acceptance and stopping rules then
    run in tercom's order on them, so the outcome is tercom's.
    """
    herr, rerr, ralign = _alignment_errors(path, len(cur), len(ref))
    shifts = _candidate_shifts(cur, locs, herr, rerr, ralign, max_shift_dist)
    order = [(length, shift) for length in range(len(shifts) - 1, -1, -1) for shift in shifts[length]]
    if not order:
        return None
    # One vectorized call for every candidate: numpy's per-call overhead dominates, so
    # computing the few candidates tercom would skip costs less than more calls.
    shifted = [_perform_shift(cur, s, e, loc) for _, (s, e, loc) in order]
    costs, back = _batch_min_edit_dist(np.asarray(shifted, dtype=np.int64), ref, beam_width)
    best_cost = 0  # cost of the best shift so far (0: none yet)
    best_edits = edits
    best: int | None = None
    for b, (length, _) in enumerate(order):
        max_fix = 2 * (1 + length)
        fix = edits - (best_cost + best_edits)
        if fix > max_fix or (best_cost != 0 and fix == max_fix):
            # tercom leaves this length group here, and the next (shorter) group's
            # bound is lower still: nothing after this can be taken.
            break
        new_edits = int(costs[b])
        gain = (best_edits + best_cost) - (new_edits + 1)
        if gain > 0 or (best_cost == 0 and gain == 0):
            best_cost = 1
            best_edits, best = new_edits, b
    if best is None:
        return None
    return shifted[best], best_edits, _trace(back, best)


def ter_edits(
    hyp: Sequence[str],
    ref: Sequence[str],
    beam_width: int = BEAM_WIDTH,
    max_shift_dist: int = MAX_SHIFT_DIST,
) -> int:
    """Number of edits (shifts included) turning token list ``hyp`` into ``ref``."""
    if not hyp or not ref:
        return len(ref) or len(hyp)
    vocab: dict[str, int] = {}
    hyp_ids = [vocab.setdefault(w, len(vocab)) for w in hyp]
    ref_ids = [vocab.setdefault(w, len(vocab)) for w in ref]
    ref_arr = np.asarray(ref_ids, dtype=np.int64)
    locs = _word_matches(hyp_ids, ref_ids)
    cur = hyp_ids
    costs, back = _batch_min_edit_dist(np.asarray([cur], dtype=np.int64), ref_arr, beam_width)
    edits, path = int(costs[0]), _trace(back, 0)
    n_shifts = 0
    while True:
        found = _best_shift(cur, ref_arr, locs, edits, path, beam_width, max_shift_dist)
        if found is None:
            break
        cur, edits, path = found
        n_shifts += 1
    return edits + n_shifts


def _tokens(text: str, case_sensitive: bool) -> list[str]:
    # tercom reads "text (id)" lines and trims them; without -N it splits on whitespace.
    text = text.strip()
    if not case_sensitive:
        text = text.lower()
    return text.split()


def segment_ter(
    hypothesis: str,
    references: Sequence[str],
    case_sensitive: bool = False,
    beam_width: int = BEAM_WIDTH,
    max_shift_dist: int = MAX_SHIFT_DIST,
) -> tuple[float, float]:
    """(edits against the best reference, average reference length) as tercom reports."""
    hyp = _tokens(hypothesis, case_sensitive)
    best: float | None = None
    total_len = 0.0
    for reference in references:
        ref = _tokens(reference, case_sensitive)
        edits = ter_edits(hyp, ref, beam_width, max_shift_dist)
        if best is None or edits < best:
            best = edits
        total_len += len(ref)
    if best is None:
        raise ValueError("TER needs at least one reference")
    return best, total_len / len(references)


def ter_from_sums(sums: np.ndarray) -> np.ndarray:
    """TER (0-1) from summed [edits, ref_len]; 0/0 is NaN and x/0 infinite, as in tercom."""
    s = np.asarray(sums, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return s[..., 0] / s[..., 1]


class Tercom:
    """TER as tercom 0.7.25 computes it (a fraction; lower is better).

    ``max_refs`` keeps the first references of each example; empty references are dropped
    (the official reference files list only existing references). ``normalize_hyp`` /
    ``normalize_ref`` rewrite the text first (the WebNLG/DART flavours).
    """

    name: ClassVar[str] = "ter"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = False
    tokenizer_name: ClassVar[str] = "none"

    def __init__(
        self,
        case_sensitive: bool = False,
        max_refs: int | None = None,
        normalize_hyp: Callable[[str], str] | None = None,
        normalize_ref: Callable[[str], str] | None = None,
        beam_width: int = BEAM_WIDTH,
        max_shift_dist: int = MAX_SHIFT_DIST,
    ):
        self.case_sensitive = case_sensitive
        self.max_refs = max_refs
        self.normalize_hyp = normalize_hyp
        self.normalize_ref = normalize_ref
        self.beam_width = beam_width
        self.max_shift_dist = max_shift_dist

    def signature(self) -> str:
        nrefs = "all" if self.max_refs is None else f"{self.max_refs}"
        return (
            f"tercom-0.7.25|nrefs:{nrefs}|case:{'mixed' if self.case_sensitive else 'lc'}"
            f"|tok:{self.tokenizer_name}|norm:no|punct:kept|beam:{self.beam_width}"
            f"|shiftdist:{self.max_shift_dist}|scale:1|version:{self.VERSION}"
        )

    def prepare_references(self, references: Sequence[str]) -> list[str]:
        refs = list(references)
        if self.max_refs is not None:
            refs = refs[: self.max_refs]
        if self.normalize_ref is not None:
            refs = [self.normalize_ref(r) for r in refs]
        kept = [r for r in refs if r.strip()]
        # An example whose references are all empty keeps one empty reference: all its
        # hypothesis words then count as edits against a length-0 reference.
        return kept or [""]

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        if len(hypotheses) != len(references):
            raise BenchError(
                f"{self.name}: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        rows = np.zeros((len(hypotheses), 2), dtype=np.float64)
        for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
            if not refs:
                raise BenchError(f"{self.name}: example {i} has no reference")
            if self.normalize_hyp is not None:
                hyp = self.normalize_hyp(hyp)
            rows[i] = segment_ter(
                hyp,
                self.prepare_references(refs),
                self.case_sensitive,
                self.beam_width,
                self.max_shift_dist,
            )
        return rows

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return 0.0
        return float(ter_from_sums(np.asarray(stats).sum(0)))

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Scores from row sums [B, 2] (bootstrap fast path)."""
        return ter_from_sums(sums)


@METRICS.register("ter")
class PlainTer(Tercom):
    """tercom 0.7.25 defaults on the text as given, every reference."""

    def __init__(self) -> None:
        super().__init__()
