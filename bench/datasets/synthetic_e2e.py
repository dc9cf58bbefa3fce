"""synthetic_e2e: an embedded, generated dataset in the format of E2E (Novikova et al. 2017).

Source: written for this harness. It copies the *format* of the E2E NLG Challenge data (a
meaning representation over the eight E2E slots, ``name`` always present, several references
per MR, linearized as ``name : X | eatType : Y | ...`` and scored with the E2E metrics) but
none of its text: every restaurant name, landmark, slot value and sentence template below is
invented here.

Why: the whole pipeline (train, decode, score, report) must run where no data can be
downloaded, and the task must be able to tell methods apart. So the references are not one
template per MR: each reference is built by a small sentence planner that picks how to
introduce the venue (copula, "there is", fronted location, apposition), which facts become
adjectives, post-modifiers, relative clauses or sentences of their own, in which order, and
which of several synonyms realizes each fact. A good system can learn the content exactly yet
cannot predict the wording, so it lands well below BLEU 100; copying the MR scores badly.

Deterministic: MRs come from ``random.Random("synthetic_e2e|<seed>")``; each reference from a
generator seeded by the seed and the MR string alone, so an MR's references do not depend on
the split sizes. The first ``n_test_mrs`` distinct MRs form test, the next ``n_dev_mrs`` dev,
the rest train: growing ``n_train_mrs`` never changes dev or test, and the splits share no MR.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bench.datasets._e2e_format import E2E_METRICS, MR, SCORE_GROUPS, SLOTS, format_mr, linearize
from bench.errors import BenchError, did_you_mean
from bench.interfaces import Example
from bench.registry import DATASETS

# --------------------------------------------------------------------------- vocabulary
# All invented for this file (none of these names or values occurs in the E2E data).

_NAME_ADJ = (
    "Velvet", "Crooked", "Amber", "Silver", "Rusty", "Painted", "Sleepy", "Hidden",
    "Brass", "Copper", "Jolly", "Lucky", "Wandering", "Little", "Salty", "Scarlet",
)  # fmt: skip
_NAME_NOUN = (
    "Heron", "Anchor", "Teapot", "Lantern", "Otter", "Barrel", "Thimble", "Compass",
    "Kettle", "Quill", "Badger", "Parasol", "Acorn", "Ladle", "Walrus", "Magpie",
)  # fmt: skip
_NAME_SINGLE = (
    "Marrowby", "Pennaway", "Tolliver's", "Bramwell", "Ostara", "Vellum", "Quenby",
    "Larkspur", "Saffi", "Orlo", "Nettlefield", "Corvina", "Mabel's Kitchen", "Dovecote",
    "Juniper & Rye", "Piccalilli",
)  # fmt: skip
NAMES: tuple[str, ...] = tuple(f"The {a} {n}" for a in _NAME_ADJ for n in _NAME_NOUN) + _NAME_SINGLE

LANDMARKS: tuple[str, ...] = (
    "Harrowgate Station", "the Clock Tower", "the Salt Museum", "Quayle Park", "the Tinworks",
    "the Orrery Theatre", "Orrin Hall", "Wexby Market", "the Observatory", "Pemberly Bridge",
    "the Botanic Gardens", "St Aldric's Church", "the Ferry Terminal", "Castle Mound",
)  # fmt: skip

VALUES: Mapping[str, tuple[str, ...]] = {
    "eatType": ("bistro", "tea room", "diner", "tavern", "noodle bar", "brasserie"),
    "food": ("Peruvian", "Korean", "Moroccan", "Lebanese", "Vietnamese", "Greek",
             "Ethiopian", "Scandinavian"),
    "priceRange": ("budget", "mid-range", "expensive", "under £15", "£15-30", "over £40"),
    "customer rating": ("poor", "decent", "excellent", "4 out of 10", "7 out of 10",
                        "9 out of 10"),
    "area": ("old town", "harbour front", "market square", "university district"),
    "familyFriendly": ("yes", "no"),
    "near": LANDMARKS,
}  # fmt: skip

# How often each optional slot is in an MR (E2E MRs hold 3 to 8 slots).
_SLOT_PROB: Mapping[str, float] = {
    "eatType": 0.6, "food": 0.7, "priceRange": 0.6, "customer rating": 0.6,
    "area": 0.7, "familyFriendly": 0.6, "near": 0.45,
}  # fmt: skip

_GENERIC_HEADS = ("place", "venue", "spot", "eatery", "establishment", "restaurant")

# --------------------------------------------------------------------------- realizations
# Per fact, phrases by syntactic role: "adj" (before the head noun), "pp" (after it), "vp"
# (a verb phrase whose subject is the venue) and "sent" (a clause with its own subject).

_PRICE_ADJ = {
    "budget": ("budget", "low-cost", "inexpensive", "cheap"),
    "mid-range": ("mid-range", "moderately priced", "reasonably priced"),
    "expensive": ("expensive", "pricey", "high-end", "upmarket"),
}
_PRICE_NP = {
    "budget": ("low prices", "budget prices", "cheap prices", "bargain prices"),
    "mid-range": ("mid-range prices", "moderate prices", "average prices", "fair prices"),
    "expensive": ("high prices", "expensive prices", "premium prices", "steep prices"),
    "under £15": ("prices under £15", "prices below £15", "meals under £15",
                  "dishes for less than £15"),
    "£15-30": ("prices of £15-30", "prices between £15 and £30", "meals at £15-30",
               "prices in the £15-30 range"),
    "over £40": ("prices over £40", "prices above £40", "meals costing over £40",
                 "dishes for more than £40"),
}  # fmt: skip
_PRICE_PRED = {
    "budget": ("low", "cheap", "budget-friendly"),
    "mid-range": ("moderate", "mid-range", "average"),
    "expensive": ("high", "expensive", "steep"),
    "under £15": ("under £15", "below £15", "less than £15"),
    "£15-30": ("£15-30", "between £15 and £30", "in the £15-30 range"),
    "over £40": ("over £40", "above £40", "more than £40"),
}
_RATING_ADJ = {
    "poor": ("poorly rated", "low-rated", "badly reviewed"),
    "decent": ("decently rated", "fairly well rated"),
    "excellent": ("highly rated", "top-rated", "well reviewed"),
}
_RATING_NP_WORD = ("a {v} rating", "{v} reviews", "a {v} customer rating", "{v} ratings")
_RATING_NP_NUM = ("a rating of {v}", "a customer rating of {v}", "a {v} rating", "a score of {v}")
_AREA_PREP = {
    "old town": "in the",
    "harbour front": "on the",
    "market square": "on the",
    "university district": "in the",
}


def _choice(rng: random.Random, options: Sequence[Any]) -> Any:
    # random() is a C call; randrange() costs 3x more and dominated generation time.
    return options[int(rng.random() * len(options))]


def _article(phrase: str) -> str:
    """'a' or 'an' for the word that follows (by spelling: good enough for our vocabulary)."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _adj(slot: str, v: str, rng: random.Random) -> str | None:
    """A pre-nominal modifier for the fact, or None where English has none."""
    if slot == "food":
        return v
    if slot == "priceRange" and v in _PRICE_ADJ:
        return _choice(rng, _PRICE_ADJ[v])
    if slot == "customer rating" and v in _RATING_ADJ:
        return _choice(rng, _RATING_ADJ[v])
    if slot == "familyFriendly":
        return (
            _choice(rng, ("family-friendly", "child-friendly", "kid-friendly"))
            if v == "yes"
            else "adults-only"
        )
    return None


def _rating_np(v: str, rng: random.Random) -> str:
    table = _RATING_NP_WORD if v in _RATING_ADJ else _RATING_NP_NUM
    phrase = _choice(rng, table).format(v=v)
    return phrase.replace("a excellent", "an excellent")


def _area_pp(v: str, rng: random.Random) -> str:
    prep = _AREA_PREP[v]
    forms = [f"{prep} {v}", f"{prep} {v}"]  # the plain form twice: the commonest wording
    if prep == "in the":
        forms += [f"in the {v} area", f"in the {v} part of town"]
    else:
        forms += [f"by the {v}", f"down on the {v}"]
    return _choice(rng, forms)


def _pp(slot: str, v: str, rng: random.Random) -> str:
    """A post-nominal modifier: 'in the old town', 'with low prices', 'serving Greek food'."""
    if slot == "food":
        return _choice(rng, (f"serving {v} food", f"with a {v} menu", f"offering {v} cuisine"))
    if slot == "priceRange":
        return f"{_choice(rng, ('with', 'with', 'offering'))} {_choice(rng, _PRICE_NP[v])}"
    if slot == "customer rating":
        if v not in _RATING_ADJ and rng.random() < 0.3:
            return f"rated {v} by {_choice(rng, ('customers', 'diners', 'reviewers'))}"
        return f"with {_rating_np(v, rng)}"
    if slot == "area":
        return _choice(rng, ("", "located ", "situated ")) + _area_pp(v, rng)
    if slot == "familyFriendly":
        if v == "yes":
            return _choice(
                rng,
                (
                    "with a family-friendly atmosphere",
                    "where children are welcome",
                    "that welcomes families",
                ),
            )
        return _choice(
            rng,
            (
                "where children are not allowed",
                "for adults only",
                "that does not cater for children",
            ),
        )
    if slot == "near":
        return (
            _choice(rng, ("near", "close to", "next to", "by", "a short walk from", "not far from"))
            + f" {v}"
        )
    raise ValueError(slot)


def _vp(slot: str, v: str, rng: random.Random) -> str:
    """A verb phrase whose subject is the venue (third person singular)."""
    if slot == "eatType":
        return f"is {_with_article(v)}"
    if slot == "food":
        return _choice(
            rng,
            (
                f"serves {v} food",
                f"offers {v} dishes",
                f"specialises in {v} cuisine",
                f"has a {v} menu",
                f"cooks {v} meals",
                f"serves {v} cuisine",
            ),
        )
    if slot == "priceRange":
        forms = [f"has {_choice(rng, _PRICE_NP[v])}", f"offers {_choice(rng, _PRICE_NP[v])}"]
        if v in _PRICE_ADJ:
            forms.append(f"is {_choice(rng, _PRICE_ADJ[v])}")
        else:
            forms.append(f"costs {_choice(rng, _PRICE_PRED[v])} per person")
        return _choice(rng, forms)
    if slot == "customer rating":
        forms = [
            f"has {_rating_np(v, rng)}",
            f"gets {_rating_np(v, rng)} from diners",
            f"receives {_rating_np(v, rng)}",
        ]
        forms.append(f"is {_choice(rng, _RATING_ADJ[v])}" if v in _RATING_ADJ else f"is rated {v}")
        return _choice(rng, forms)
    if slot == "area":
        return (
            _choice(rng, ("is", "is located", "is situated", "can be found", "sits"))
            + " "
            + _area_pp(v, rng)
        )
    if slot == "familyFriendly":
        if v == "yes":
            return _choice(
                rng,
                (
                    "is family-friendly",
                    "is child-friendly",
                    "welcomes families",
                    "is good for children",
                    "is suitable for kids",
                    "welcomes children",
                ),
            )
        return _choice(
            rng,
            (
                "is not family-friendly",
                "is not child-friendly",
                "does not welcome children",
                "is not suitable for kids",
                "is for adults only",
            ),
        )
    if slot == "near":
        return _choice(rng, ("is", "is located", "lies", "is")) + " " + _pp("near", v, rng)
    raise ValueError(slot)


def _sent(slot: str, v: str, rng: random.Random) -> str | None:
    """A clause with its own subject realizing only this fact, or None."""
    if slot == "food":
        return _choice(rng, (f"the food is {v}", f"its menu is {v}", f"the cuisine there is {v}"))
    if slot == "priceRange":
        forms = [
            f"prices are {_choice(rng, _PRICE_PRED[v])}",
            f"its prices are {_choice(rng, _PRICE_PRED[v])}",
        ]
        if v not in _PRICE_ADJ:
            forms.append(f"expect to pay {v}")
        return _choice(rng, forms)
    if slot == "customer rating":
        forms = [f"its customer rating is {v}"]
        if v in _RATING_ADJ:
            forms += [f"reviews are {v}", f"diners give it {_rating_np(v, rng)}"]
        else:
            forms += [f"customers rate it {v}", f"reviewers give it {v}"]
        return _choice(rng, forms)
    if slot == "familyFriendly":
        if v == "yes":
            return _choice(
                rng, ("children are welcome", "families are welcome", "it is great for kids")
            )
        return _choice(
            rng, ("children are not welcome", "kids are not allowed", "it is not a place for kids")
        )
    if slot == "near":
        return _choice(rng, (f"you can find it near {v}", f"it is close to {v}"))
    return None


def _join(parts: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def realize(mr: MR, rng: random.Random) -> str:
    """One reference for ``mr``: every fact realized exactly once, wording drawn from ``rng``."""
    values = dict(mr)
    name = values["name"]
    eat_type = values.get("eatType")
    facts = [(s, v) for s, v in mr if s not in ("name", "eatType")]
    if rng.random() < 0.6:
        rng.shuffle(facts)  # references do not follow the MR order

    # Facts placed inside the introducing noun phrase: up to two adjectives, up to two PPs.
    adjs: list[tuple[str, str]] = []
    pps: list[str] = []
    rest: list[tuple[str, str]] = []
    front: str | None = None
    intro_kind = _choice(
        rng, ("copula", "copula", "there_is", "front", "apposition", "is_the_name")
    )
    for slot, v in facts:
        if intro_kind == "front" and front is None and slot in ("area", "near"):
            front = _cap(_pp(slot, v, rng))
            continue
        adj = _adj(slot, v, rng)
        if adj is not None and len(adjs) < 2 and rng.random() < 0.4:
            adjs.append((slot, adj))
        elif len(pps) < 2 and rng.random() < 0.3:
            pps.append(_pp(slot, v, rng))
        else:
            rest.append((slot, v))
    if intro_kind == "front" and front is None:
        intro_kind = "copula"
    if intro_kind == "apposition" and not rest:
        intro_kind = "copula"

    # Adjective order of English: opinion/price, then audience, then origin nearest the noun.
    rank = {"customer rating": 0, "priceRange": 1, "familyFriendly": 2, "food": 3}
    adjs.sort(key=lambda a: rank[a[0]])
    head = eat_type or _choice(rng, _GENERIC_HEADS)
    np_core = " ".join([a for _, a in adjs] + [head])
    np = _with_article(np_core) + "".join(
        (", " if i and rng.random() < 0.3 else " ") + p for i, p in enumerate(pps)
    )

    if intro_kind == "copula":
        first = f"{name} is {np}"
    elif intro_kind == "there_is":
        called = _choice(rng, ("called", "named", "by the name of", "known as"))
        first = f"there is {np} {called} {name}"
    elif intro_kind == "front":
        first = f"{front}, {name} is {np}"
    elif intro_kind == "is_the_name":
        first = f"{name} is the name of {np}"
    else:  # apposition: "X, a Greek tavern, has low prices ..."
        slot, v = rest.pop(0)
        first = f"{name}, {np}, {_vp(slot, v, rng)}"

    # Which links can continue the first sentence and still refer to the venue: after a
    # post-modifier "which" would attach to the landmark, after "there is" "and" breaks.
    if intro_kind == "there_is":
        links: tuple[str, ...] = (", which", " that")
    elif intro_kind == "apposition" or pps:
        links = (" and",)
    else:
        links = (", which", " and", " that")
    sentences: list[str] = []
    current = first
    subject_names = ("it", "it", f"the {head}", name, f"this {head}")
    subject = name
    while rest:
        size = min(len(rest), _choice(rng, (1, 1, 2, 2, 3)))
        chunk, rest = rest[:size], rest[size:]
        if not sentences and current is first and rng.random() < 0.4:
            # Continue the first sentence: "..., which has low prices and is near X".
            current += f"{_choice(rng, links)} {_join([_vp(s, v, rng) for s, v in chunk])}"
            continue
        sentences.append(current)
        own = _sent(*chunk[0], rng) if len(chunk) == 1 and rng.random() < 0.4 else None
        if own is not None:
            current = own
        else:
            # A new subject each sentence: "This tavern ... This tavern ..." reads badly.
            subject = _choice(rng, [s for s in subject_names if s != subject])
            current = f"{subject} {_join([_vp(s, v, rng) for s, v in chunk])}"
    sentences.append(current)
    return " ".join(_cap(s.strip()) + "." for s in sentences)


# --------------------------------------------------------------------------- MRs and splits


def _sample_mr(rng: random.Random) -> MR:
    while True:
        chosen = [s for s in SLOTS[1:] if rng.random() < _SLOT_PROB[s]]
        if len(chosen) >= 2:  # E2E MRs hold at least three slots
            break
    pairs = [("name", _choice(rng, NAMES))]
    pairs += [(s, _choice(rng, VALUES[s])) for s in SLOTS[1:] if s in chosen]
    return tuple(pairs)


@functools.lru_cache(maxsize=8)
def generate(
    seed: int, n_train_mrs: int, n_dev_mrs: int, n_test_mrs: int, refs: tuple[int, int]
) -> dict[str, tuple[Example, ...]]:
    """All three splits (cached: the runner asks for one split at a time)."""
    rng = random.Random(f"synthetic_e2e|{seed}")
    total = n_test_mrs + n_dev_mrs + n_train_mrs
    seen: set[MR] = set()
    mrs: list[MR] = []
    attempts = 0
    while len(mrs) < total:
        attempts += 1
        if attempts > 50 * total + 1000:
            raise BenchError(f"synthetic_e2e: cannot draw {total} distinct MRs; ask for fewer")
        mr = _sample_mr(rng)
        if mr not in seen:
            seen.add(mr)
            mrs.append(mr)
    bounds = {
        "test": (0, n_test_mrs),
        "dev": (n_test_mrs, n_test_mrs + n_dev_mrs),
        "train": (n_test_mrs + n_dev_mrs, total),
    }
    out: dict[str, tuple[Example, ...]] = {}
    for split, (lo, hi) in bounds.items():
        examples: list[Example] = []
        for mr in mrs[lo:hi]:
            mr_string = format_mr(mr)
            ref_rng = random.Random(f"synthetic_e2e|{seed}|{mr_string}")
            n_refs = ref_rng.randint(*refs)
            texts: list[str] = []
            for _ in range(100 * n_refs):
                text = realize(mr, ref_rng)
                if text not in texts:  # references of one MR are distinct, as in E2E
                    texts.append(text)
                if len(texts) == n_refs:
                    break
            else:
                raise RuntimeError(
                    f"synthetic_e2e: fewer than {n_refs} distinct references for {mr_string}"
                )
            source = linearize(mr)
            for text in texts:
                examples.append(
                    Example(
                        example_id=f"{split}-{len(examples)}",
                        source_id=mr_string,
                        source=source,
                        target=text,
                        fields={"n_slots": str(len(mr))},
                    )
                )
        out[split] = tuple(examples)
    return out


def _int_option(options: Mapping[str, Any], key: str, minimum: int) -> int:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BenchError(
            f"synthetic_e2e option {key!r}: expected an integer >= {minimum}, got {value!r}"
        )
    return value


def _refs_option(value: Any) -> tuple[int, int]:
    """``refs_per_mr``: an integer, or ``[low, high]`` drawn uniformly per MR."""
    if isinstance(value, int) and not isinstance(value, bool):
        lo = hi = value
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    ):
        lo, hi = value
    else:
        raise BenchError(
            f"synthetic_e2e option 'refs_per_mr': expected an integer or [low, high], got {value!r}"
        )
    if not 1 <= lo <= hi <= 10:
        raise BenchError(
            f"synthetic_e2e option 'refs_per_mr': expected 1 <= low <= high <= 10, got {value!r}"
        )
    return lo, hi


@DATASETS.register("synthetic_e2e")
class SyntheticE2E:
    """Generated E2E-format restaurant data; needs no files (``data_dir`` is ignored)."""

    name: ClassVar[str] = "synthetic_e2e"
    VERSION: ClassVar[str] = "1"
    task: ClassVar[str] = "table_to_text"
    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")
    metrics: ClassVar[Mapping[str, str]] = E2E_METRICS
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]] = SCORE_GROUPS
    options: ClassVar[Mapping[str, Any]] = {
        "seed": 0,
        "n_train_mrs": 2000,
        "n_dev_mrs": 100,
        "n_test_mrs": 100,
        "refs_per_mr": (2, 5),
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; a BenchError names a bad key or value (the suite
        calls this at validation time, so `bench validate` catches what a run would)."""
        given = dict(options or {})
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            raise BenchError(
                f"synthetic_e2e: unknown option {unknown[0]!r}{did_you_mean(unknown[0], cls.options)}"
            )
        opts = {**cls.options, **given}
        for key, minimum in (("seed", 0), ("n_train_mrs", 1), ("n_dev_mrs", 1), ("n_test_mrs", 1)):
            _int_option(opts, key, minimum)
        _refs_option(opts["refs_per_mr"])
        return opts

    def location(self, data_dir: Any = None) -> str:
        """Where ``load`` reads from, for ``bench data ls``: nowhere, it generates."""
        return "embedded (generated in memory; needs no files)"

    def load(
        self, split: str, *, data_dir: Any = None, options: Mapping[str, Any] | None = None
    ) -> list[Example]:
        """The examples of ``split``: references of one MR on consecutive rows."""
        if split not in self.splits:
            raise BenchError(
                f"synthetic_e2e has no split {split!r}{did_you_mean(split, self.splits)}"
            )
        opts = self.check_options(options or {})
        data = generate(opts["seed"], opts["n_train_mrs"], opts["n_dev_mrs"], opts["n_test_mrs"],
                        _refs_option(opts["refs_per_mr"]))
        return list(data[split])
