"""Load and validate a YAML suite, and expand it into resolved ``RunSpec``s in stable order.

A suite holds names and numbers only (never code or import paths)::

    name: quickstart
    model: smollm2-135m            # or a list: the grid's model axis
    seeds: [0]
    train: {epochs: 5, lr: 5.0e-5, batch_size: 5}     # defaults for every run
    decode: {beam_size: 5, max_new_tokens: 100}
    datasets:
      - name: e2e
        eval_splits: [test]
        train_sizes: [50, 100]     # data-scarce subsets (omit for the full split)
        subsets: 5                 # sampled subsets per size
    methods:
      - label: prefix              # the row name in reports
        method: prefix             # a registered method
        config: {length: 5, mlp_width: 512}
        train: {lr: 8.0e-5}
        sweep: {length: [1, 5, 10]}   # one variant per value (config or train.X / decode.X)
        only: {train_size: [500], subset: [0]}   # run this method in these grid cells only
    overrides:                      # per (method label, dataset) settings, e.g. Table 6
      - match: {method: prefix, dataset: webnlg}
        train: {lr: 5.0e-5}
    tolerances: {bleu: 1.0}         # for `bench regress`
    log_to: [tensorboard]           # experiment trackers (bench.trackers); not in any run key
    compare: {reference: prefix, metrics: [bleu, rouge_l]}   # report: every row vs this one, paired

The expansion order is models x datasets x train sizes x subsets x methods x seeds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.config import DataSpec, DecodeConfig, RunSpec, TrainConfig, from_mapping, merged
from bench.errors import BenchError, ConfigError, did_you_mean

SUITE_KEYS = (
    "name", "description", "model", "seeds", "train", "decode", "datasets", "methods",
    "overrides", "tolerances", "log_to", "compare",
)
COMPARE_KEYS = ("reference", "metrics")
DATASET_KEYS = (
    "name", "options", "train_split", "eval_splits", "train_sizes", "subsets", "dev_fraction",
    "nested_subsets", "train_filter", "eval_filter", "extrapolation", "max_eval_sources",
    "metrics", "train", "decode",
)
METHOD_KEYS = ("label", "method", "config", "train", "decode", "sweep", "only")
# `only:` restricts a method to some cells of the grid (e.g. an ablation at one training size).
ONLY_KEYS = ("dataset", "train_size", "subset", "model")
OVERRIDE_KEYS = ("match", "config", "train", "decode")


@dataclass(frozen=True)
class MethodEntry:
    """One method row of the suite after sweeps are expanded."""

    label: str
    method: str
    config: Mapping[str, Any]
    train: Mapping[str, Any] = field(default_factory=dict)
    decode: Mapping[str, Any] = field(default_factory=dict)
    only: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def applies(self, dataset: str, model: str, size: int | None, subset: int) -> bool:
        """Whether this method runs in the grid cell (dataset, model, size, subset)."""
        cell = {"dataset": dataset, "model": model, "train_size": size, "subset": subset}
        return all(cell[k] in allowed for k, allowed in self.only.items())


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    options: Mapping[str, Any]
    train_split: str
    eval_splits: tuple[str, ...]
    train_sizes: tuple[int | None, ...]
    subsets: int
    dev_fraction: float
    nested_subsets: bool
    train_filter: Mapping[str, tuple[str, ...]]
    eval_filter: Mapping[str, tuple[str, ...]]
    max_eval_sources: int | None
    metrics: Mapping[str, str]
    train: Mapping[str, Any]
    decode: Mapping[str, Any]


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    train: TrainConfig
    decode: DecodeConfig
    datasets: tuple[DatasetEntry, ...]
    methods: tuple[MethodEntry, ...]
    overrides: tuple[Mapping[str, Any], ...]
    tolerances: Mapping[str, float]
    # where training is watched (`bench run --log-to` adds to it); never part of a RunSpec
    log_to: tuple[str, ...] = ()
    # `compare:` (bench.report.paired): the method row every other row is tested against, and
    # the metric columns; read by reports only, never part of a RunSpec
    compare_reference: str | None = None
    compare_metrics: tuple[str, ...] = ()

    @property
    def model(self) -> str:
        return self.models[0]

    def method_entries(self) -> list[MethodEntry]:
        return list(self.methods)


# ----------------------------------------------------------------------------- loading


def _list(raw: Mapping[str, Any], key: str, problems: list[str]) -> list[Any]:
    """``raw[key]`` as a list (absent = empty); anything else is a problem."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list, got {value!r}"[:300])
        return []
    return value


def _unknown(data: Mapping[str, Any], allowed: tuple[str, ...], where: str, problems: list[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.append(f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}")


def _as_filter(value: Any, where: str, problems: list[str]) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected a mapping field -> [values], got {value!r}")
        return {}
    out = {}
    for k, v in value.items():
        vals = v if isinstance(v, list) else [v]
        out[str(k)] = tuple(str(x) for x in vals)
    return out


class _SuiteLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that notes every key written twice in one mapping: YAML keeps the
    last one without a word, so two ``train:`` blocks would train with half the settings."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Before SafeLoader flattens merge keys (`<<: *base`), whose keys may be overridden.
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                before = first.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error says so
            here = key_node.start_mark
            if before is None:
                first[key] = here
                continue
            where = (f"lines {before.line + 1} and {here.line + 1}" if before.line != here.line
                     else f"line {here.line + 1}, columns {before.column + 1} and {here.column + 1}")
            self.duplicates.append(f"line {here.line + 1}: key {key!r} is written twice in one mapping ({where}); "
                                   "YAML would keep the last one silently: merge them into one")
        return super().construct_mapping(node, deep=deep)


SEED_MAX = 2**32 - 1  # numpy's seed range; torch takes more, but numpy would wrap it


def load_suite(path: str | Path, *, deferred: list[str] | None = None) -> Suite:
    """Parse and validate ``path``; every problem is collected into one ConfigError.

    Problems that leave the suite well-formed (a key written twice, a seed out of range) go to
    ``deferred`` when it is given, so the caller can report them with the checks that need
    the expanded suite; otherwise they are raised like the others."""
    path = Path(path)
    if not path.exists():
        raise BenchError(f"suite file not found: {path}")
    if path.is_dir():
        raise BenchError(f"{path}: is a directory, not a suite file (`bench validate` accepts folders)")
    try:
        loader = _SuiteLoader(path.read_text(encoding="utf-8"))
        try:
            raw = loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError as e:
        raise BenchError(f"{path}: not UTF-8 text (byte {e.start}); a suite is a YAML file") from None
    except OSError as e:
        raise BenchError(f"{path}: cannot read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise BenchError(f"{path}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, Mapping):
        raise BenchError(f"{path}: a suite is a mapping with keys {', '.join(SUITE_KEYS)}")
    late: list[str] = list(loader.duplicates)
    problems: list[str] = []
    suite = _parse(raw, path, problems, late)
    if problems or (late and deferred is None):
        raise ConfigError([f"{path}: {p}" for p in late + problems])
    assert suite is not None
    if deferred is not None:
        deferred.extend(f"{path}: {p}" for p in late)
    return suite


def _parse(raw: Mapping[str, Any], path: Path, problems: list[str], late: list[str]) -> Suite | None:
    from bench.registry import DATASETS, METHODS

    _unknown(raw, SUITE_KEYS, "suite", problems)
    models = raw.get("model")
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        problems.append("model: required, a model name or a list of names (e.g. smollm2-135m)")
        models = []
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or not seeds:
        problems.append(f"seeds: expected a non-empty list of integers, got {seeds!r}")
        seeds = [0]
    for seed in seeds:
        if not 0 <= seed <= SEED_MAX:
            late.append(f"seeds: {seed} is out of range; a seed is an integer in [0, 2**32 - 1] "
                            "(what numpy's and torch's generators both take as is)")
    train = from_mapping(TrainConfig, raw.get("train"), "train", problems) or TrainConfig()
    decode = from_mapping(DecodeConfig, raw.get("decode"), "decode", problems) or DecodeConfig()

    datasets = []
    for i, d in enumerate(_list(raw, "datasets", problems)):
        entry = _parse_dataset(d, f"datasets[{i}]", problems, DATASETS, base_dir=path.parent)
        if entry is not None:
            datasets.append(entry)
    if not raw.get("datasets"):
        problems.append("datasets: required, a non-empty list")

    methods: list[MethodEntry] = []
    for i, m in enumerate(_list(raw, "methods", problems)):
        methods.extend(_parse_method(m, f"methods[{i}]", problems, METHODS, train, decode))
    if not raw.get("methods"):
        problems.append("methods: required, a non-empty list")
    labels = [m.label for m in methods]
    for dup in sorted({x for x in labels if labels.count(x) > 1}):
        problems.append(f"methods: label {dup!r} is used twice; give each row its own label")

    overrides = []
    for i, o in enumerate(_list(raw, "overrides", problems)):
        where = f"overrides[{i}]"
        if not isinstance(o, Mapping):
            problems.append(f"{where}: expected a mapping with match/train/decode")
            continue
        _unknown(o, OVERRIDE_KEYS, where, problems)
        match = o.get("match") or {}
        if not isinstance(match, Mapping):
            problems.append(f"{where}.match: expected a mapping with method and/or dataset")
            continue
        _unknown(match, ("method", "dataset", "model", "train_size"), f"{where}.match", problems)
        if "method" in match and match["method"] not in labels:
            problems.append(f"{where}.match.method: no method row labelled {match['method']!r}{did_you_mean(str(match['method']), labels)}")
        names = [d.name for d in datasets]
        if "dataset" in match and match["dataset"] not in names:
            problems.append(f"{where}.match.dataset: no dataset {match['dataset']!r} in the suite{did_you_mean(str(match['dataset']), names)}")
        merged(train, o.get("train"), f"{where}.train", problems)
        merged(decode, o.get("decode"), f"{where}.decode", problems)
        if o.get("config") is not None and not isinstance(o["config"], Mapping):
            problems.append(f"{where}.config: expected a mapping of method settings, got {o['config']!r}"[:300])
        elif o.get("config"):
            targets = [m for m in methods if "method" in match and m.label.split("[")[0] == match["method"]]
            if not targets:
                problems.append(f"{where}.config: needs match.method naming the method row whose config it changes")
            for m in targets:
                resolve_method_config(m.method, {**m.config, **o["config"]}, f"{where}.config", problems)
        overrides.append(dict(o))

    tolerances = raw.get("tolerances") or {}
    if not isinstance(tolerances, Mapping) or not all(isinstance(v, (int, float)) for v in tolerances.values()):
        problems.append(f"tolerances: expected a mapping metric -> number, got {tolerances!r}")
        tolerances = {}
    log_to = _parse_log_to(raw.get("log_to"), problems)
    columns = list(dict.fromkeys(c for d in datasets for c in d.metrics))
    reference, compare_metrics = _parse_compare(raw.get("compare"), labels, columns, problems)
    if problems:
        return None
    return Suite(
        name=str(raw.get("name") or path.stem),
        path=path,
        description=str(raw.get("description") or ""),
        models=tuple(models),
        seeds=tuple(seeds),
        train=train,
        decode=decode,
        datasets=tuple(datasets),
        methods=tuple(methods),
        overrides=tuple(overrides),
        tolerances={str(k): float(v) for k, v in tolerances.items()},
        log_to=log_to,
        compare_reference=reference,
        compare_metrics=compare_metrics,
    )


def _parse_compare(value: Any, labels: list[str], columns: list[str],
                   problems: list[str]) -> tuple[str | None, tuple[str, ...]]:
    """``compare: {reference: <method label>, metrics: [<metric column>, ...]}`` (metrics optional:
    the first in the paper's order). Columns are checked against the suite's datasets' metrics."""
    if value is None:
        return None, ()
    if not isinstance(value, Mapping):
        problems.append(f"compare: expected a mapping {{reference: <method label>, metrics: [...]}}, got {value!r}"[:300])
        return None, ()
    _unknown(value, COMPARE_KEYS, "compare", problems)
    reference = value.get("reference")
    if not isinstance(reference, str) or not reference:
        problems.append(f"compare.reference: expected the label of a method row, got {reference!r}")
        return None, ()
    if reference not in labels:
        problems.append(f"compare.reference: no method row labelled {reference!r}{did_you_mean(reference, labels)}")
    metrics = value.get("metrics") or []
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        problems.append(f"compare.metrics: expected a list of metric columns (bleu, rouge_l, ...), got {metrics!r}")
        return reference, ()
    for m in metrics:
        if columns and m not in columns:
            problems.append(f"compare.metrics: no dataset of the suite scores {m!r}{did_you_mean(m, columns)}"
                            f" (columns: {', '.join(columns)})")
    return reference, tuple(metrics)


def _parse_log_to(value: Any, problems: list[str]) -> tuple[str, ...]:
    """``log_to:`` a tracker name or a list of them (checked against bench.trackers)."""
    from bench.trackers import parse_log_to, unknown_trackers

    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(f"log_to: expected a tracker name or a list of them (tensorboard, wandb, mlflow), got {value!r}")
        return ()
    parsed = parse_log_to(names)
    problems.extend(f"log_to: {p}" for p in unknown_trackers(parsed))
    return parsed


def _parse_dataset(
    d: Any, where: str, problems: list[str], registry: Any, base_dir: Path | None = None
) -> DatasetEntry | None:
    if isinstance(d, str):
        d = {"name": d}
    if not isinstance(d, Mapping) or "name" not in d:
        problems.append(f"{where}: expected a mapping with at least `name`")
        return None
    _unknown(d, DATASET_KEYS, where, problems)
    name = str(d["name"])
    if name not in registry:
        problems.append(f"{where}.name: unknown dataset {name!r}{did_you_mean(name, registry.names())}")
        return None
    builder = registry.get(name)
    options = dict(getattr(builder, "options", {}) or {})
    user_options = d.get("options") or {}
    if not isinstance(user_options, Mapping):
        problems.append(f"{where}.options: expected a mapping")
        user_options = {}
    bad_key = False
    for k, v in user_options.items():
        if k not in options:
            problems.append(f"{where}.options: unknown option {k!r} for {name}{did_you_mean(str(k), options)}")
            bad_key = True
        else:
            options[k] = v
    check = getattr(builder, "check_options", None)
    options_ok = not bad_key
    if check is not None and not bad_key:
        # The dataset's own check of types and allowed values, here rather than when the run starts.
        try:
            check(dict(user_options))
        except BenchError as e:
            problems.append(f"{where}.options: {e}")
            options_ok = False
    splits = tuple(getattr(builder, "splits", ()))
    train_split = str(d.get("train_split", "train"))
    eval_splits = d.get("eval_splits", ["test"])
    if isinstance(eval_splits, str):
        eval_splits = [eval_splits]
    if not isinstance(eval_splits, list) or not eval_splits or not all(isinstance(s, str) for s in eval_splits):
        problems.append(f"{where}.eval_splits: expected a non-empty list of split names, got {eval_splits!r}")
        eval_splits = ["test"]
    for s in [train_split, *eval_splits]:
        if splits and s not in splits:
            problems.append(f"{where}: unknown split {s!r} of {name}{did_you_mean(str(s), splits)}")
    resolve = getattr(builder, "resolve_options", None)
    if resolve is not None and options_ok:
        # A dataset of files named in the suite (custom): paths relative to the suite's folder,
        # every file read and checked now, their content hashes into the options (the run key).
        try:
            options = resolve(options, base_dir=base_dir or Path.cwd(), splits=[train_split, *eval_splits])
        except BenchError as e:
            problems.append(f"{where}.options: {e}")
    sizes = d.get("train_sizes", [None])
    if not isinstance(sizes, list) or not all(s is None or (isinstance(s, int) and s > 0) for s in sizes):
        problems.append(f"{where}.train_sizes: expected a list of positive integers (or null for the full split), got {sizes!r}")
        sizes = [None]
    subsets = d.get("subsets", 1)
    if not isinstance(subsets, int) or subsets < 1:
        problems.append(f"{where}.subsets: expected a positive integer, got {subsets!r}")
        subsets = 1
    dev_fraction = d.get("dev_fraction", 0.3)
    if not isinstance(dev_fraction, (int, float)) or not 0 <= dev_fraction < 1:
        problems.append(f"{where}.dev_fraction: expected a number in [0, 1), got {dev_fraction!r}")
        dev_fraction = 0.3
    train_filter = _as_filter(d.get("train_filter"), f"{where}.train_filter", problems)
    eval_filter = _as_filter(d.get("eval_filter"), f"{where}.eval_filter", problems)
    if d.get("extrapolation"):
        preset = _extrapolation_preset(name, str(d["extrapolation"]), f"{where}.extrapolation", problems)
        if preset:
            train_filter = {**preset.get("train", {}), **train_filter}
            eval_filter = {**preset.get("eval", {}), **eval_filter}
    max_eval = d.get("max_eval_sources")
    if max_eval is not None and (not isinstance(max_eval, int) or max_eval < 1):
        problems.append(f"{where}.max_eval_sources: expected a positive integer or null, got {max_eval!r}")
        max_eval = None
    metrics = dict(getattr(builder, "metrics", {}) or {})
    if d.get("metrics") is not None:
        if not isinstance(d["metrics"], Mapping):
            problems.append(f"{where}.metrics: expected a mapping column -> metric id")
        else:
            metrics = {str(k): str(v) for k, v in d["metrics"].items()}
    from bench.registry import METRICS

    for col, mid in metrics.items():
        if mid not in METRICS:
            problems.append(f"{where}.metrics.{col}: unknown metric {mid!r}{did_you_mean(mid, METRICS.names())}")
    train_over = d.get("train") or {}
    merged(TrainConfig(), train_over, f"{where}.train", problems)
    decode_over = d.get("decode") or {}
    merged(DecodeConfig(), decode_over, f"{where}.decode", problems)
    return DatasetEntry(
        name=name,
        options=options,
        train_split=train_split,
        eval_splits=tuple(str(s) for s in eval_splits),
        train_sizes=tuple(sizes),
        subsets=subsets,
        dev_fraction=float(dev_fraction),
        nested_subsets=bool(d.get("nested_subsets", False)),
        train_filter=train_filter,
        eval_filter=eval_filter,
        max_eval_sources=max_eval,
        metrics=metrics,
        train=dict(train_over) if isinstance(train_over, Mapping) else {},  # else: a problem above
        decode=dict(decode_over) if isinstance(decode_over, Mapping) else {},
    )


def _extrapolation_preset(dataset: str, name: str, where: str, problems: list[str]) -> Mapping[str, Any] | None:
    try:
        from bench.splits import EXTRAPOLATION_PRESETS
    except ImportError:
        problems.append(f"{where}: extrapolation presets are not available in this installation")
        return None
    presets = EXTRAPOLATION_PRESETS.get(dataset, {})
    if name not in presets:
        problems.append(f"{where}: unknown extrapolation split {name!r} for {dataset}{did_you_mean(name, presets)}")
        return None
    preset = presets[name]
    return {k: {f: tuple(v) for f, v in preset.get(k, {}).items()} for k in ("train", "eval")}


def _parse_method(
    m: Any, where: str, problems: list[str], registry: Any, train: TrainConfig, decode: DecodeConfig
) -> list[MethodEntry]:
    if not isinstance(m, Mapping) or "method" not in m:
        problems.append(f"{where}: expected a mapping with at least `method` (one of {', '.join(registry.names())})")
        return []
    _unknown(m, METHOD_KEYS, where, problems)
    name = str(m["method"])
    if name not in registry:
        problems.append(f"{where}.method: unknown method {name!r}{did_you_mean(name, registry.names())}")
        return []
    label = str(m.get("label") or name)
    only = _parse_only(m.get("only"), f"{where}.only", problems)
    for key in ("config", "train", "decode"):
        if m.get(key) is not None and not isinstance(m[key], Mapping):
            problems.append(f"{where}.{key}: expected a mapping of settings (key: value), got {m[key]!r}"[:300])
            return []
    config = dict(m.get("config") or {})
    sweep = m.get("sweep") or {}
    if not isinstance(sweep, Mapping) or not all(isinstance(k, str) and isinstance(v, list) and v
                                                 for k, v in sweep.items()):
        problems.append(f"{where}.sweep: expected a mapping key -> non-empty list of values")
        sweep = {}
    variants = []
    keys = list(sweep)
    for values in itertools.product(*(sweep[k] for k in keys)) if keys else [()]:
        cfg, tr, de = dict(config), dict(m.get("train") or {}), dict(m.get("decode") or {})
        for k, v in zip(keys, values):
            if k.startswith("train."):
                tr[k[6:]] = v
            elif k.startswith("decode."):
                de[k[7:]] = v
            else:
                cfg[k] = v
        suffix = ",".join(f"{k}={v}" for k, v in zip(keys, values))
        vlabel = f"{label}[{suffix}]" if suffix else label
        resolved = resolve_method_config(name, cfg, f"{where}.config" + (f"[{suffix}]" if suffix else ""), problems)
        merged(train, tr, f"{where}.train", problems)
        merged(decode, de, f"{where}.decode", problems)
        if resolved is not None:
            variants.append(MethodEntry(vlabel, name, resolved, tr, de, only))
    return variants


def _parse_only(value: Any, where: str, problems: list[str]) -> dict[str, tuple[Any, ...]]:
    """``only: {train_size: [500], subset: [0]}`` -> key -> allowed values (scalars become 1-lists)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: expected a mapping with keys {', '.join(ONLY_KEYS)}, got {value!r}")
        return {}
    out: dict[str, tuple[Any, ...]] = {}
    for key, allowed in value.items():
        if key not in ONLY_KEYS:
            problems.append(f"{where}: unknown key {key!r}{did_you_mean(str(key), ONLY_KEYS)}")
            continue
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            problems.append(f"{where}.{key}: expected a non-empty list of values")
            continue
        out[str(key)] = tuple(values)
    return out


def resolve_method_config(name: str, config: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    """Validate ``config`` against the method's Config dataclass; return it with defaults."""
    from bench.registry import METHODS

    cls = getattr(METHODS.get(name), "Config", None)
    if cls is None:
        return dict(config)
    try:
        obj = from_mapping(cls, config, where, problems)
    except (BenchError, ValueError, TypeError) as e:
        problems.append(f"{where}: {e}")
        return None
    if obj is None:
        return None
    own = getattr(obj, "as_mapping", None)  # a config of open-ended fields (method peft)
    return own() if own is not None else dataclasses.asdict(obj)


# ----------------------------------------------------------------------------- expansion


def _matches(match: Mapping[str, Any], label: str, dataset: str, model: str, size: int | None) -> bool:
    return (
        match.get("method", label) == label
        and match.get("dataset", dataset) == dataset
        and match.get("model", model) == model
        and match.get("train_size", size) == size
    )


def method_version(method: str, config: Mapping[str, Any]) -> str:
    """The method's VERSION, or its ``version_of(config)`` where the training of some configs
    changed without the others' (PEFT's AdaLoRA): only those runs get new keys."""
    from bench.registry import METHODS

    cls = METHODS.get(method)
    version_of = getattr(cls, "version_of", None)
    return str(version_of(config) if version_of is not None else cls.VERSION)


def expand(suite: Suite, *, deferred: list[str] | None = None) -> list[RunSpec]:
    """Every run of the suite, fully resolved, in stable order. An override that selects no run
    is a problem; with ``deferred``, such problems are appended there instead of raised."""
    from bench.models import fingerprint
    from bench.registry import DATASETS, METRICS

    problems: list[str] = []
    specs: list[RunSpec] = []
    used = [False] * len(suite.overrides)
    cells: list[dict[str, Any]] = []  # every (method, dataset, model, train_size) that runs
    for model in suite.models:
        fp = fingerprint(model)
        for d in suite.datasets:
            builder = DATASETS.get(d.name)
            metric_versions = {mid: str(METRICS.get(mid).VERSION) for mid in sorted(set(d.metrics.values()))}
            for size, subset in itertools.product(d.train_sizes, range(d.subsets if any(d.train_sizes) else 1)):
                data = DataSpec(
                    name=d.name,
                    version=str(builder.VERSION),
                    options=dict(d.options),
                    train_split=d.train_split,
                    eval_splits=d.eval_splits,
                    train_size=size,
                    subset=subset if size else 0,
                    dev_fraction=d.dev_fraction,
                    nested_subsets=d.nested_subsets,
                    train_filter=d.train_filter,
                    eval_filter=d.eval_filter,
                    max_eval_sources=d.max_eval_sources,
                    metrics=dict(d.metrics),
                    path_options=tuple(getattr(builder, "path_options", ())),
                )
                for m in suite.methods:
                    if not m.applies(d.name, model, size, subset if size else 0):
                        continue
                    config = dict(m.config)
                    train = merged(suite.train, d.train, "train", problems)
                    train = merged(train, m.train, "train", problems)
                    decode = merged(suite.decode, d.decode, "decode", problems)
                    decode = merged(decode, m.decode, "decode", problems)
                    base_label = m.label.split("[")[0]
                    cells.append({"method": {base_label, m.label}, "dataset": d.name, "model": model,
                                  "train_size": size})
                    for i, o in enumerate(suite.overrides):
                        if _matches(o.get("match") or {}, base_label, d.name, model, size) or _matches(
                            o.get("match") or {}, m.label, d.name, model, size
                        ):
                            used[i] = True
                            train = merged(train, o.get("train"), "override", problems)
                            decode = merged(decode, o.get("decode"), "override", problems)
                            if o.get("config"):
                                config = resolve_method_config(m.method, {**config, **o["config"]}, "override", problems) or config
                    for seed in suite.seeds:
                        specs.append(
                            RunSpec(
                                suite=suite.name,
                                model=model,
                                model_fingerprint=fp,
                                method=m.method,
                                method_label=m.label,
                                method_version=method_version(m.method, config),
                                method_config=config,
                                data=data,
                                seed=seed,
                                train=train,
                                decode=decode,
                                metric_versions=metric_versions,
                                tolerances=dict(suite.tolerances),
                            )
                        )
    unmatched = [f"{suite.path}: {_unmatched(i, o.get('match') or {}, cells)}"
                 for i, o in enumerate(suite.overrides) if not used[i]]
    if problems or (unmatched and deferred is None):
        raise ConfigError(unmatched + [f"{suite.path}: {p}" for p in problems])
    if deferred is not None:
        deferred.extend(unmatched)
    return specs


def _unmatched(i: int, match: Mapping[str, Any], cells: list[dict[str, Any]]) -> str:
    """Why ``overrides[i]`` selects no run: the value no run has, or the combination none has."""
    shown = "{" + ", ".join(f"{k}: {v}" for k, v in match.items()) + "}"
    head = f"overrides[{i}].match {shown} selects no run, so it would change nothing"
    for key, value in match.items():
        have = [c[key] for c in cells]
        present = set().union(*have) if key == "method" else set(have)
        if not any(value == v for v in present):  # == : a value may be a list
            names = ", ".join(sorted("null" if v is None else str(v) for v in present))
            plural = {"train_size": "train sizes", "dataset": "datasets", "model": "models"}.get(key, "methods")
            return f"{head}: no run has {key} {value!r} (the suite's {plural}: {names})"
    return f"{head}: no run has all of these together (check the method's `only:` and the datasets' train_sizes)"

