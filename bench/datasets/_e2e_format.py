"""Shared E2E helpers: the meaning-representation (MR) syntax, its linearization, the metrics.

Source: the E2E NLG Challenge data (Novikova, Dušek & Rieser 2017), MRs written as
``name[The Eagle], eatType[coffee shop], ...``; linearized as in Li & Liang (2021):
``name : The Eagle | eatType : coffee shop | ...`` (slot names and values as given, MR order).
The paper's own preprocessed files (``format: paper``) rename three slots and tokenize prices
and references; that conversion lives here too so both E2E builders share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# The eight E2E slots in the order the official MRs list them.
SLOTS: tuple[str, ...] = (
    "name",
    "eatType",
    "food",
    "priceRange",
    "customer rating",
    "area",
    "familyFriendly",
    "near",
)

# Table column -> registered metric id (the E2E challenge's five metrics).
E2E_METRICS: Mapping[str, str] = {
    "bleu": "e2e_bleu",
    "nist": "e2e_nist",
    "meteor": "e2e_meteor",
    "rouge_l": "e2e_rouge_l",
    "cider": "e2e_cider",
}

SCORE_GROUPS: Mapping[str, Mapping[str, Sequence[str]]] = {"all": {}}

# The slot names of the authors' preprocessed files (XiangLi1999/PrefixTuning data/e2e_data).
PAPER_SLOT_NAMES: Mapping[str, str] = {
    "eatType": "Type",
    "familyFriendly": "family friendly",
    "priceRange": "price",
}

_PAIR = re.compile(r"\s*([^\[\],]+?)\s*\[([^\[\]]*)\]\s*")

MR = tuple[tuple[str, str], ...]


class MRSyntaxError(ValueError):
    """An MR string that is not ``slot[value], slot[value], ...`` over the E2E slots."""


def parse_mr(text: str) -> MR:
    """``"name[X], area[Y]"`` -> ``(("name", "X"), ("area", "Y"))``, order kept.

    Raises MRSyntaxError with what was expected; the loaders add the file and line.
    """
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None:
            raise MRSyntaxError(
                f"expected slot[value] at character {pos + 1} of the MR, found {text[pos : pos + 20]!r}"
            )
        slot, value = m.group(1), m.group(2).strip()
        if slot not in SLOTS:
            from bench.errors import did_you_mean

            raise MRSyntaxError(f"unknown MR slot {slot!r}{did_you_mean(slot, SLOTS)}")
        if not value:
            raise MRSyntaxError(f"empty value for MR slot {slot!r}")
        pairs.append((slot, value))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise MRSyntaxError(f"expected ',' between MR slots at character {pos + 1}")
            pos += 1
    if not pairs:
        raise MRSyntaxError("empty MR")
    if "name" not in dict(pairs):
        raise MRSyntaxError("MR has no name[...] slot")
    return tuple(pairs)


def format_mr(pairs: MR) -> str:
    """The official MR string for ``pairs`` (inverse of parse_mr)."""
    return ", ".join(f"{slot}[{value}]" for slot, value in pairs)


_PRICE = re.compile(r"£(\d+)(?:-(\d+))?")


def paper_price(value: str) -> str:
    """The authors' price tokenization: ``£20-25`` -> ``£ 20 - 25``, ``less than £20`` -> ``less than £ 20``."""
    return _PRICE.sub(
        lambda m: f"£ {m.group(1)}" + (f" - {m.group(2)}" if m.group(2) else ""), value
    )


def linearize(pairs: MR, style: str = "official") -> str:
    """``name : X | eatType : Y | ...``; ``style="paper"`` gives the authors' renamed slots and prices."""
    if style == "official":
        return " | ".join(f"{slot} : {value}" for slot, value in pairs)
    if style == "paper":
        return " | ".join(
            f"{PAPER_SLOT_NAMES.get(slot, slot)} : {paper_price(value) if slot == 'priceRange' else value}"
            for slot, value in pairs
        )
    raise ValueError(f"unknown linearization style {style!r}")


# --------------------------------------------------------------------------- paper tokenization
# The authors' files were made with two different tokenizers, whose rules were inferred here
# by comparing the official CSVs with src1_valid.txt / src1_test.txt line by line. Train and
# dev were released together before the challenge, so we assume they were tokenized alike
# (only the dev file can be checked: src1_train.txt is not available); the test references,
# released later, went through a tokenizer in the Penn Treebank style. Both split hyphens inside words, put spaces around
# punctuation and collapse runs of spaces; each authors' line ends with one space, which the
# loader strips from targets (it carries no token).

_DOTS = "\x00"  # stands for one period of a "..", "..." run while single periods are handled


def _split_final_periods(text: str) -> str:
    """Split every word-final period off (the files show no abbreviation exception)."""
    return " ".join(
        f"{word[:-1]} ." if len(word) > 1 and word.endswith(".") else word for word in text.split()
    )


def _isolate_dot_runs(text: str) -> str:
    # "rating.." and "low ratings...but" keep their run of periods as one token.
    return re.sub(r"\.\.+", lambda m: f" {_DOTS * len(m.group(0))} ", text)


def tokenize_trainval(text: str) -> str:
    """The tokenization of the authors' dev (and, we assume, train) references.

    Hyphens between word characters split (``family - friendly``, ``20 - 25``); symbols such
    as ``£ ! ? ; : "`` become tokens; commas split unless between digits; an apostrophe
    inside a word stays on the right part (``isn 't``, ``it 's``), elsewhere it stands
    alone; word-final periods split, runs of periods stay together.
    """
    t = re.sub(r"(?<=\w)-(?=\w)", " - ", text)
    t = re.sub(r"([^\w\s.'`,\-])", r" \1 ", t)
    t = re.sub(r"(?<!\d),|,(?!\d)", " , ", t)
    t = _isolate_dot_runs(t)
    t = re.sub(r"(?<=[^A-Za-z])'(?=[^A-Za-z])", " ' ", t)
    t = re.sub(r"(?<=[^A-Za-z0-9])'(?=[A-Za-z])", " ' ", t)
    t = re.sub(r"(?<=[A-Za-z])'(?=[^A-Za-z])", " ' ", t)
    t = re.sub(r"(?<=[A-Za-z])'(?=[A-Za-z])", " '", t)
    t = re.sub(r"(?<=[0-9])'(?=s)", " '", t)
    return _split_final_periods(t).replace(_DOTS, ".")


def tokenize_test(text: str) -> str:
    """The tokenization of the authors' test references (Penn Treebank style).

    Hyphens split between two letters or two digits only (``5-star`` stays); ``£`` splits
    only at the start of a word (``£ 20-£25``); clitics split as ``is n't``, ``it 's``,
    ``you 're``; single quotes around words stand alone; periods and commas as above.
    """
    t = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])|(?<=\d)-(?=\d)", " - ", text)
    t = re.sub(r"(^|\s)£(?=\d)", r"\1£ ", t)
    t = re.sub(r"([!?;:\"$])", r" \1 ", t)
    t = re.sub(r"(?<!\d),|,(?!\d)", " , ", t)
    t = _isolate_dot_runs(t)
    t = re.sub(r"(^|\s)'(?=\w)", r"\1' ", t)  # opening quote
    t = re.sub(r"(?<=\w)'(?=[^\w']|$)", " ' ", t)  # closing quote
    t = re.sub(r"(?i)n't\b", " n't", t)
    t = re.sub(r"(?i)(?<=\w)'(s|re|ll|m|ve|d)\b", r" '\1", t)
    return _split_final_periods(t).replace(_DOTS, ".")


def paper_reference(text: str, split: str) -> str:
    """A reference as in the authors' files (without their trailing space)."""
    return tokenize_test(text) if split == "test" else tokenize_trainval(text)
