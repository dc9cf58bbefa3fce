"""Data-scarce subsets, field filters and extrapolation splits (Li & Liang 2021, Sections 7.1, 7.3).

Pure functions on lists of ``Example``; the runner calls them after a dataset's ``load``.

- ``sample_subset``: the low-data protocol (train sizes 50/100/200/500, several subsets per
  size, a dev split of 30% of the training size for early stopping). The paper samples
  training *examples* (source-target pairs), so this does too: a size-50 subset holds 50
  pairs, which for E2E may include two references of one MR. Sampling sources instead would
  change what "50 examples" means against the paper's numbers. The dev split is drawn from
  examples whose source_id is not in the training subset, so no MR / tripleset / document is
  in both.
- ``apply_filter`` / ``exclude``: keep / drop examples by ``fields`` values.
- ``EXTRAPOLATION_PRESETS``: the paper's extrapolation splits as data (a train filter and an
  eval filter), usable from a suite by name; a suite can also declare its own filters.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from bench.errors import BenchError, did_you_mean
from bench.interfaces import Example

FieldFilter = Mapping[str, Sequence[str]]
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- subsets


def _rng(*parts: object) -> np.random.Generator:
    # sha256, never Python's hash(): the draw must be the same in every process and session.
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def sample_subset(
    examples: Sequence[Example],
    *,
    size: int,
    subset: int,
    key: str,
    dev_fraction: float = 0.3,
    nested: bool = False,
) -> tuple[list[Example], list[Example]]:
    """A (train, dev) pair for the low-data protocol, a function of (key, size, subset) only.

    ``train`` holds ``size`` examples drawn without replacement; ``dev`` holds
    ``round(dev_fraction * size)`` examples drawn from those whose source_id is not in
    ``train``. Both are in draw order. With ``nested=True`` the draw does not depend on
    ``size``: for one subset index the size-50 training set is the first 50 of the size-100
    one (the curve then compares growing sets, not independent ones).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise BenchError(f"train_size must be a positive integer, got {size!r}")
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 0:
        raise BenchError(f"subset must be a non-negative integer, got {subset!r}")
    if not 0.0 <= dev_fraction < 1.0:
        raise BenchError(f"dev_fraction must be in [0, 1), got {dev_fraction!r}")
    if size > len(examples):
        raise BenchError(
            f"train_size {size} is larger than the {len(examples)} examples available ({key})"
        )
    n_dev = round(dev_fraction * size)
    size, subset = int(size), int(subset)
    rng = _rng("subset-v1", key, subset) if nested else _rng("subset-v1", key, subset, size)
    order = rng.permutation(len(examples))
    train = [examples[i] for i in order[:size]]
    used = {ex.source_id for ex in train}
    # The dev split is a separate draw (own stream, in dataset order before shuffling), from
    # what this training set leaves: no source of it is in both.
    rest = [i for i in sorted(order[size:]) if examples[i].source_id not in used]
    dev_order = _rng("dev-v1", key, subset, size).permutation(len(rest))
    dev = [examples[rest[j]] for j in dev_order[:n_dev]]
    if len(dev) < n_dev:
        raise BenchError(
            f"only {len(dev)} examples outside the {size}-example training subset for a dev "
            f"split of {n_dev} ({key}); lower train_size or dev_fraction"
        )
    return train, dev


# --------------------------------------------------------------------------- filters

NOT = "!"  # a field name ending in "!" excludes its values: {"topic!": ["world"]}


def _check_filter(examples: Sequence[Example], spec: FieldFilter, what: str) -> None:
    if not isinstance(spec, Mapping):
        raise BenchError(f"{what} must map field names to lists of values, got {spec!r}")
    present = sorted({k for ex in examples for k in ex.fields})
    for key, values in spec.items():
        name = key.removesuffix(NOT)
        if examples and name not in present:
            shown = ", ".join(present) if present else "none"
            raise BenchError(
                f"{what}: unknown field {name!r}{did_you_mean(name, present)}; "
                f"the examples have fields: {shown}"
            )
        if isinstance(values, str) or not isinstance(values, Sequence) or not all(
            isinstance(v, str) for v in values
        ):
            raise BenchError(f"{what}: field {key!r} needs a list of strings, got {values!r}")


def apply_filter(
    examples: Sequence[Example], spec: FieldFilter, *, what: str = "filter"
) -> list[Example]:
    """The examples that pass every condition of ``spec``, in their order.

    ``{"category": ["Airport", "City"]}`` keeps examples whose ``fields["category"]`` is one
    of those; a name ending in ``!`` (``{"topic!": ["world"]}``) drops those values instead.
    An unknown field is a BenchError naming the fields present. A filter that keeps nothing
    of a non-empty list is a BenchError too (it would train on or score nothing); an included
    value that no example has is logged, since it usually is a typo.
    """
    _check_filter(examples, spec, what)
    include = {k: set(v) for k, v in spec.items() if not k.endswith(NOT)}
    banned = {k.removesuffix(NOT): set(v) for k, v in spec.items() if k.endswith(NOT)}
    for name, values in include.items():
        seen = {ex.fields.get(name) for ex in examples}
        for value in sorted(values - seen):
            log.warning("%s: no example has %s=%r%s", what, name, value,
                        did_you_mean(value, [v for v in seen if v is not None]))
    kept = [
        ex for ex in examples
        if all(ex.fields.get(k) in v for k, v in include.items())
        and not any(ex.fields.get(k) in v for k, v in banned.items())
    ]
    if examples and not kept:
        raise BenchError(f"{what} {dict(spec)!r} keeps none of the {len(examples)} examples")
    return kept


def exclude(
    examples: Sequence[Example], spec: FieldFilter, *, what: str = "exclude"
) -> list[Example]:
    """Drop the examples whose ``fields[name]`` is one of ``spec[name]``, for any name."""
    return apply_filter(examples, {f"{k.removesuffix(NOT)}{NOT}": v for k, v in spec.items()},
                        what=what)


# --------------------------------------------------------------------------- extrapolation

_WITHIN_NEWS_TRAIN = ["world", "uk", "business"]

# The paper's extrapolation splits (Section 7.3) as data, by dataset and name: "train" filters
# the training pool (train split, hence the sampled dev split too), "eval" the scored splits.
# A suite names one (``extrapolation: within_news``) or writes the same filters itself
# (``train_filter`` / ``eval_filter``).
EXTRAPOLATION_PRESETS: dict[str, dict[str, dict[str, dict[str, list[str]]]]] = {
    "webnlg": {
        # Train/dev hold only the 10 seen categories already; eval is the "U" column.
        "seen_to_unseen": {"train": {"seen": ["yes"]}, "eval": {"seen": ["no"]}},
    },
    "xsum": {
        "news_to_sports": {"train": {"section": ["news"]}, "eval": {"section": ["sport"]}},
        "within_news": {
            "train": {"section": ["news"], "topic": _WITHIN_NEWS_TRAIN},
            "eval": {"section": ["news"], "topic" + NOT: _WITHIN_NEWS_TRAIN},
        },
    },
}
