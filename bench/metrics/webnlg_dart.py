"""The WebNLG 2017 challenge and DART official BLEU / METEOR / TER, as the paper scored them.

WebNLG 2017 (Gardent et al. 2017; ``webnlg-automatic-evaluation`` as vendored in
Yale-LILY/dart, called by ``run_eval_on_webnlg.sh``):

- text normalized by ``evaluation.py`` (lowercase, Unidecode, non-word characters split
  off; ``bench.metrics._webnlg_norm``), hypotheses and references alike;
- BLEU: ``multi-bleu.perl -lc`` with reference0-2 (the first three references, empty
  lines where an entry has fewer), 0-100;
- METEOR: ``meteor-1.5.jar -l en -norm -r 3`` against the first three references, 0-1;
- TER: ``tercom.7.25.jar`` against the first three references, 0-1.
  ALL / SEEN / UNSEEN are the dataset's score groups; these metrics score whatever items
  they are given.

DART v1.1.1 (Nan et al. 2021; ``evaluation/run_eval_on_dart.sh``): references are the
first three annotations, split on non-word characters and lowercased (byte-identical to
``dart_reference/all-delex-reference{0,1,2}.lex``); BLEU ``multi-bleu.perl`` (no -lc) with
the three (padded) reference files, METEOR ``-l en -norm -r 8`` and tercom against the
non-empty ones. The official script feeds the hypothesis file as it is; the Prefix-Tuning
authors lowercased their outputs first. We give hypotheses the references' own treatment
(lowercase + non-word split), which leaves an already tokenized lowercase output
unchanged (the published BART-large output reproduces the leaderboard row to the digit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from bench.metrics._webnlg_norm import dart_tokenize, webnlg_hypothesis, webnlg_reference
from bench.metrics.meteor import MeteorScorer, SummableMeteorMetric
from bench.metrics.multibleu import MultiBleu
from bench.metrics.ter import Tercom
from bench.registry import METRICS

N_REFS = 3  # both official evaluations use the first three references


@METRICS.register("webnlg_bleu")
class WebNLGBleu(MultiBleu):
    """WebNLG 2017 BLEU: multi-bleu.perl -lc, 3 padded references, 0-100."""

    name = "webnlg_bleu"
    tokenizer_name = "webnlg2017"

    def __init__(self) -> None:
        super().__init__(
            lowercase=True,
            max_refs=N_REFS,
            pad_refs=True,
            normalize_hyp=webnlg_hypothesis,
            normalize_ref=webnlg_reference,
        )


@METRICS.register("webnlg_ter")
class WebNLGTer(Tercom):
    """WebNLG 2017 TER: tercom 0.7.25 against up to 3 references, 0-1."""

    name = "webnlg_ter"
    tokenizer_name = "webnlg2017"

    def __init__(self) -> None:
        super().__init__(
            max_refs=N_REFS, normalize_hyp=webnlg_hypothesis, normalize_ref=webnlg_reference
        )


@METRICS.register("dart_bleu")
class DartBleu(MultiBleu):
    """DART BLEU: multi-bleu.perl, 3 padded references, lowercased tokens, 0-100."""

    name = "dart_bleu"
    tokenizer_name = "dart-lc-split"

    def __init__(self) -> None:
        super().__init__(
            lowercase=False,  # the official call has no -lc; dart_tokenize lowercases
            max_refs=N_REFS,
            pad_refs=True,
            normalize_hyp=dart_tokenize,
            normalize_ref=dart_tokenize,
        )


@METRICS.register("dart_ter")
class DartTer(Tercom):
    """DART TER: tercom 0.7.25 against up to 3 references, 0-1."""

    name = "dart_ter"
    tokenizer_name = "dart-lc-split"

    def __init__(self) -> None:
        super().__init__(max_refs=N_REFS, normalize_hyp=dart_tokenize, normalize_ref=dart_tokenize)


class _OfficialMeteor(SummableMeteorMetric):
    """METEOR 1.5 ``-l en -norm`` on normalized text against the first non-empty references.

    The official files pad each example to a fixed number of reference lines (3 for WebNLG,
    8 for DART) with empty lines; the jar keeps the first best-scoring reference and an
    empty one never scores above a real one, so scoring the real ones only is the same.
    """

    tokenizer_name: ClassVar[str] = "none"
    official_refs_flag: ClassVar[str] = "-r 3"
    normalize_hyp: ClassVar[Callable[[str], str]]
    normalize_ref: ClassVar[Callable[[str], str]]

    def __init__(self) -> None:
        super().__init__(MeteorScorer(language="en", normalize=True))

    def signature(self) -> str:
        return (
            f"{self.scorer.signature()}|nrefs:{N_REFS}|official:{self.official_refs_flag}"
            f"|tok:{self.tokenizer_name}|scale:1|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        hyps = [type(self).normalize_hyp(h) for h in hypotheses]
        refs = []
        for group in references:
            kept = [type(self).normalize_ref(r) for r in list(group)[:N_REFS]]
            # An all-empty group keeps one empty reference so the jar still scores the line.
            refs.append([r for r in kept if r.strip()] or [""])
        return super().stats(hyps, refs)


@METRICS.register("webnlg_meteor")
class WebNLGMeteor(_OfficialMeteor):
    """WebNLG 2017 METEOR: meteor-1.5 -l en -norm -r 3, 0-1."""

    name = "webnlg_meteor"
    tokenizer_name = "webnlg2017"
    official_refs_flag = "-r 3"
    normalize_hyp = staticmethod(webnlg_hypothesis)
    normalize_ref = staticmethod(webnlg_reference)


@METRICS.register("dart_meteor")
class DartMeteor(_OfficialMeteor):
    """DART METEOR: meteor-1.5 -l en -norm -r 8 (3 references, padded), 0-1."""

    name = "dart_meteor"
    tokenizer_name = "dart-lc-split"
    official_refs_flag = "-r 8"
    normalize_hyp = staticmethod(dart_tokenize)
    normalize_ref = staticmethod(dart_tokenize)
