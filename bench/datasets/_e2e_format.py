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
