"""Text normalization of the WebNLG 2017 and DART official evaluations.

WebNLG 2017 challenge scripts (``webnlg-automatic-evaluation/evaluation.py``, as vendored in
Yale-LILY/dart): every reference and hypothesis is lowercased, transliterated to ASCII with
Unidecode and has every non-word character split off, before multi-bleu, METEOR and tercom
see it. The two sides are normalized in a different order, and we keep both orders because
they differ on rare characters (a symbol that transliterates to several characters is split
on the hypothesis side only):

- reference: split ``\\W`` on the raw text, squeeze spaces, then ``unidecode(lower())``;
- hypothesis: ``unidecode(strip())``, then ``unidecode(lower())``, split ``\\W``, squeeze.

DART v1.1.1 (``evaluation/dart_reference/*.lex``): references are split on ``\\W`` and
lowercased, without transliteration. The official DART script feeds the hypothesis file as
it is; we give hypotheses the references' own treatment (an output that is already
lowercased and tokenized, like the published BART one, is unchanged by it).

Checked byte for byte against the official reference files in the tests.
"""

from __future__ import annotations

import re

from bench.errors import BenchError

# Python's \W is Unicode-aware, as in the official Python 3 scripts.
_NON_WORD = re.compile(r"(\W)")


def _unidecode(text: str) -> str:
    try:
        from unidecode import unidecode
    except ImportError:  # pragma: no cover - a declared dependency
        raise BenchError(
            "WebNLG scoring needs the package Unidecode (the official script's "
            "transliteration): pip install Unidecode"
        ) from None
    return unidecode(text)


def _split_non_word(text: str) -> str:
    """Put spaces around every non-word character and squeeze whitespace."""
    return " ".join(" ".join(_NON_WORD.split(text)).split())


def webnlg_reference(text: str) -> str:
    """A reference as the WebNLG 2017 ``evaluation.py`` writes it into its reference files."""
    return _unidecode(_split_non_word(text).lower())


def webnlg_hypothesis(text: str) -> str:
    """A system output line as the WebNLG 2017 ``evaluation.py`` writes it for the scorers."""
    text = _unidecode(text.strip())
    return _split_non_word(_unidecode(text.lower()))


def dart_tokenize(text: str) -> str:
    """DART's reference treatment: non-word characters split off, then lowercased."""
    return _split_non_word(text).lower()
