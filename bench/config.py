"""Frozen, validated configuration: training, decoding, data selection, and the resolved run.

``from_mapping`` builds any of these dataclasses from YAML data, collecting every problem
(unknown key with did-you-mean, wrong type, value out of range) instead of stopping at the
first, so a suite reports all its mistakes at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from bench import SCHEMA_VERSION
from bench.errors import did_you_mean
from bench.identity import digest

T = TypeVar("T")

# TrainConfig fields (name -> default) left out of the train_key at their default.
KEYED_WHEN_SET: dict[str, Any] = {"group_by_length": False, "precision": "fp32", "patience": None}


# Train fields that change how a run is carried out, not what it computes: left out of the run
# key (stored as None there) and of the report's "settings", so changing them reuses results.
RESULT_NEUTRAL_TRAIN = ("checkpoint_every",)


@dataclass(frozen=True)
class TrainConfig:
    """The shared training loop's settings (AdamW, linear schedule, no weight decay: Table 6)."""

    epochs: float = 10.0
    max_steps: int | None = None  # overrides epochs when set (the low-data protocol)
    lr: float = 5e-5
    batch_size: int = 5
    grad_accum: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    # The authors' loss is the per-sequence sum of token losses, averaged over the batch.
    loss: Literal["sequence_sum", "token_mean"] = "sequence_sum"
    max_source_tokens: int = 512
    max_target_tokens: int = 128
    early_stopping: bool = False  # on dev loss, where the run has a dev split (low-data)
    eval_every: int = 50  # steps between dev-loss checks when early_stopping
    # Dev-loss evaluations without a new best before training stops (early_stopping only);
    # None trains every scheduled step and keeps the best (the paper's protocol). The linear
    # schedule is still laid out over the full step budget, so a stopped run is a prefix of
    # the unstopped one.
    patience: int | None = None
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = never
    # Batches of similar length (less padding); the order stays a function of the seed.
    group_by_length: bool = False
    # Autocast dtype of forward passes (bf16 or fp16 on a GPU; fp16 adds a gradient scaler).
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    def identity(self) -> dict[str, Any]:
        """The settings that go into the train_key (checkpointing does not change the numbers).

        Fields added after results were stored enter the key only when set to a non-default
        value, so runs that do not set them keep the keys of the results already stored."""
        out = by_value(self) | dict.fromkeys(RESULT_NEUTRAL_TRAIN)
        for name, default in KEYED_WHEN_SET.items():
            if out[name] == default:
                del out[name]
        return out

    def check(self) -> list[str]:
        problems = []
        for name in ("lr", "batch_size", "grad_accum"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.epochs <= 0 and self.max_steps is None:
            problems.append(f"epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps <= 0:
            problems.append(f"max_steps must be > 0, got {self.max_steps}")
        # Counts: a negative or zero one would run (checkpoint_every: -5 never checkpoints) or
        # fail hours later, never do what was meant.
        for name in ("eval_every", "max_source_tokens", "max_target_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.checkpoint_every < 0:
            problems.append(f"checkpoint_every must be >= 0 (steps between checkpoints; 0 = never), "
                            f"got {self.checkpoint_every}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.append(f"max_grad_norm must be > 0 (or null: no clipping), got {self.max_grad_norm}")
        if self.patience is not None:
            if self.patience < 1:
                problems.append(f"patience must be >= 1 (evaluations without improvement), got {self.patience}")
            if not self.early_stopping:
                problems.append("patience needs early_stopping: true (it counts dev-loss evaluations)")
        return problems


@dataclass(frozen=True)
class DecodeConfig:
    """The shared decoding function's settings (beam search; beam_size 1 is greedy)."""

    beam_size: int = 5
    max_new_tokens: int = 100
    length_penalty: float = 1.0
    block_newline: bool = True  # the authors blocked newline tokens in table-to-text
    batch_size: int = 16  # sources per generate call; does not change the output

    def check(self) -> list[str]:
        problems = []
        if self.beam_size < 1:
            problems.append(f"beam_size must be >= 1, got {self.beam_size}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        return problems


@dataclass(frozen=True)
class DataSpec:
    """Which examples a run trains and is scored on."""

    name: str
    version: str
    options: Mapping[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("test",)
    train_size: int | None = None  # None = the whole split
    subset: int = 0  # index of the sampled subset (low-data: 5 per size)
    dev_fraction: float = 0.3  # dev split for early stopping, as a fraction of train_size
    nested_subsets: bool = False
    train_filter: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    eval_filter: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_eval_sources: int | None = None  # cap on scored sources, recorded with the results
    metrics: Mapping[str, str] = field(default_factory=dict)  # column -> metric id
    # Options that say where the data is (a custom dataset's file paths), not what it is: left
    # out of the run keys and the subset draw; such a dataset keys the files' content instead.
    path_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run: the unit that is trained, decoded, scored and cached."""

    suite: str
    model: str
    model_fingerprint: str
    method: str
    method_label: str
    method_version: str
    method_config: Mapping[str, Any]
    data: DataSpec
    seed: int
    train: TrainConfig
    decode: DecodeConfig
    metric_versions: Mapping[str, str]  # metric id -> VERSION
    tolerances: Mapping[str, float] = field(default_factory=dict)

    def train_identity(self) -> dict[str, Any]:
        d = self.data
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model_fingerprint,
            "method": {"name": self.method, "version": self.method_version, "config": dict(self.method_config)},
            "data": {
                "name": d.name,
                "version": d.version,
                "options": {k: v for k, v in d.options.items() if k not in d.path_options},
                "train_split": d.train_split,
                "train_size": d.train_size,
                "subset": d.subset,
                "dev_fraction": d.dev_fraction if d.train_size else None,
                "nested_subsets": d.nested_subsets if d.train_size else None,
                "train_filter": {k: list(v) for k, v in d.train_filter.items()},
            },
            "seed": self.seed,
            "train": self.train.identity(),
        }

    @property
    def train_key(self) -> str:
        return digest(self.train_identity())

    @property
    def decode_key(self) -> str:
        d = self.data
        return digest(
            {
                "train_key": self.train_key,
                "decode": by_value(self.decode) | {"batch_size": None},
                "eval_splits": list(d.eval_splits),
                "eval_filter": {k: list(v) for k, v in d.eval_filter.items()},
                "max_eval_sources": d.max_eval_sources,
            }
        )

    @property
    def score_key(self) -> str:
        return digest({"decode_key": self.decode_key, "metrics": dict(self.metric_versions), "columns": dict(self.data.metrics)})

    def legacy_variant(self) -> RunSpec | None:
        """This run under the key bench gave it before keys were built from values, where that
        key differs: an integral ``epochs`` was hashed as an integer when no setting had been
        merged into the default TrainConfig (e.g. every run of suites/smoke.yaml, so
        results/baselines/ci.parquet). ``store.adopt_stored_keys`` uses it when that folder exists."""
        if not float(self.train.epochs).is_integer():
            return None
        old = _IntEpochsKeys(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return old if old.train_key != self.train_key else None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["train_key"] = self.train_key
        out["decode_key"] = self.decode_key
        out["score_key"] = self.score_key
        return out


@dataclass(frozen=True)
class _IntEpochsKeys(RunSpec):
    """A RunSpec keyed the pre-value way (``epochs`` as an integer); see ``legacy_variant``."""

    def train_identity(self) -> dict[str, Any]:
        ident = super().train_identity()
        ident["train"]["epochs"] = int(self.train.epochs)
        return ident


# ----------------------------------------------------------------------------- keys by value


def _float_field(tp: Any) -> bool:
    """Whether a field typed ``tp`` holds floats but not integers (``float``, ``float | None``)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return float in args and int not in args


def normal_value(value: Any, tp: Any) -> Any:
    """``value`` as the field typed ``tp`` holds it: an integer given for a float field becomes a
    float, so ``epochs: 10`` and ``epochs: 10.0`` (and the default) are one value and one key."""
    if isinstance(value, int) and not isinstance(value, bool) and _float_field(tp):
        return float(value)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def by_value(obj: Any) -> dict[str, Any]:
    """A frozen config's fields as the run keys hash them: by value, not by how they were spelt
    (a dataclass built directly with ``epochs=10`` hashes like one read from YAML)."""
    hints = _hints(type(obj))
    return {k: normal_value(v, hints[k]) for k, v in dataclasses.asdict(obj).items()}


# ----------------------------------------------------------------------------- validation


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list) or tp in (tuple, list):
        return isinstance(value, (list, tuple))
    if origin in (dict, Mapping) or tp in (dict, Mapping) or origin is typing.get_origin(Mapping[str, int]):
        return isinstance(value, Mapping)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def _literal_choices(tp: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal[...]`` type (also inside ``X | None``), else ()."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(c for a in typing.get_args(tp) for c in _literal_choices(a))
    return ()


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str, problems: list[str]) -> T | None:
    """Build the frozen dataclass ``cls`` from ``data``; append problems (prefixed by ``where``).

    A config class whose fields are another library's (``method: peft``: PEFT's config classes)
    validates itself: it defines ``from_suite(data, where, problems)`` and ``as_mapping()``."""
    if data is not None and not isinstance(data, Mapping):
        problems.append(f"{where}: expected a mapping of settings (key: value), got {data!r}"[:300])
        return None
    own = getattr(cls, "from_suite", None)
    if own is not None:
        return own(dict(data or {}), where, problems)
    data = dict(data or {})
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    ok = True
    for key in data:
        if key not in names:
            problems.append(f"{where}: unknown key {key!r}{did_you_mean(str(key), names)}")
            ok = False
    for key in names:
        if key in data and not _type_ok(data[key], hints[key]):
            choices = [str(a) for a in _literal_choices(hints[key])]
            hint = did_you_mean(str(data[key]), choices) if choices and isinstance(data[key], str) else ""
            problems.append(f"{where}.{key}: expected {_type_name(hints[key])}, got {data[key]!r}{hint}")
            ok = False
        elif key in data and isinstance(data[key], float) and not math.isfinite(data[key]):
            problems.append(f"{where}.{key}: expected a finite number, got {data[key]!r}")
            ok = False
    if not ok:
        return None
    values = {k: normal_value(v, hints[k]) for k, v in data.items()}
    for k, v in list(values.items()):
        if isinstance(v, list):
            values[k] = tuple(v)
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        for p in check():
            problems.append(f"{where}: {p}")
    return obj


def merged(base: Any, overrides: Mapping[str, Any] | None, where: str, problems: list[str]) -> Any:
    """``base`` (a frozen dataclass) with ``overrides`` applied and validated."""
    if not overrides:
        return base
    if not isinstance(overrides, Mapping):
        return from_mapping(type(base), overrides, where, problems)
    data = dataclasses.asdict(base) | dict(overrides)
    return from_mapping(type(base), data, where, problems)
