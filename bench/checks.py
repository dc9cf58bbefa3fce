"""A suite checked against what it names, before any run: models and data.

``bench validate`` and ``bench run`` (before its first run) call :func:`check_suite` on a
suite that loaded and expanded. Each check reads only what it needs: a model's config (never
its weights), a split's examples only where a filter or a training size depends on them. What
cannot be checked here (the hub unreachable, a data folder absent) is a warning, not an error:
the suite may be meant for another machine.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import RunSpec
from bench.errors import BenchError, DataError, did_you_mean
from bench.interfaces import Example
from bench.suite import DatasetEntry, Suite


@dataclass
class Findings:
    """What the checks found: problems (the suite would fail or do something else than
    written) and warnings (what could not be checked here)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_suite(suite: Suite, specs: Sequence[RunSpec], *, data_dir: Path | None) -> Findings:
    """Every problem of ``suite``'s models and data at once (lines prefixed by the suite path)."""
    found = Findings()
    for model in suite.models:
        _check_model(model, [sp for sp in specs if sp.model == model], found)
    for i, entry in enumerate(suite.datasets):
        _check_data(i, entry, [sp for sp in specs if sp.data.name == entry.name], data_dir, found)
    _check_schedules(specs, found)
    found.problems = [f"{suite.path}: {p}" for p in found.problems]
    found.warnings = [f"{suite.path}: {w}" for w in found.warnings]
    return found


def validate_suite(path: Path, *, data_dir: Path | None, warnings: list[str]) -> tuple[Suite, list[RunSpec]]:
    """(suite, its runs) when ``path`` is a suite that can run as written; else one ConfigError
    with every problem: the YAML's, the expansion's, the models' and the data's. What could not
    be checked here is appended to ``warnings`` either way."""
    from bench.errors import ConfigError
    from bench.suite import expand, load_suite

    deferred: list[str] = []
    suite = load_suite(path, deferred=deferred)
    specs = expand(suite, deferred=deferred)
    found = check_suite(suite, specs, data_dir=data_dir)
    warnings.extend(found.warnings)
    if deferred or found.problems:
        raise ConfigError(deferred + found.problems)
    return suite, specs


def _check_schedules(specs: Sequence[RunSpec], found: Findings) -> None:
    """AdaLoRA's budget schedule runs over its own ``total_step``: unlike the run's step budget,
    it ends the reallocation early (shorter) or never reaches ``target_r`` (longer)."""
    seen: set[tuple[str, int, int]] = set()
    for sp in specs:
        cfg = dict(sp.method_config)
        if sp.method != "peft" or cfg.get("peft_type") != "ADALORA" or sp.train.max_steps is None:
            continue
        total = cfg.get("total_step")
        key = (sp.method_label, int(total or 0), int(sp.train.max_steps))
        if total is not None and int(total) != int(sp.train.max_steps) and key not in seen:
            seen.add(key)
            found.warnings.append(
                f"methods {sp.method_label}: AdaLoRA total_step {total} is not the run's train.max_steps "
                f"{sp.train.max_steps}: its rank budget " + ("never reaches target_r" if int(total) > sp.train.max_steps
                                                           else f"is final from step {total}"))


# ----------------------------------------------------------------------------- models


def _positions(config: Mapping[str, Any]) -> int | None:
    """How many positions the model has (GPT-2 ``n_positions``, else ``max_position_embeddings``)."""
    for key in ("n_positions", "max_position_embeddings"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def _check_model(model: str, specs: Sequence[RunSpec], found: Findings) -> None:
    from bench.models import model_config
    from bench.registry import METHODS

    try:
        config, warning = model_config(model)
    except BenchError as e:
        found.problems.append(f"model: {e}")
        return
    if warning:
        found.warnings.append(f"model: {warning}")
    if config is None:
        return
    from bench.methods._arch import refusal

    refused: dict[str, str] = {}
    for sp in specs:
        needs = getattr(METHODS.get(sp.method), "needs", None)
        label = sp.method_label.split("[")[0]
        if needs is not None and label not in refused:
            reason = refusal(config, needs)
            if reason is not None:
                refused[label] = reason
    for label, reason in refused.items():
        method = next(sp.method for sp in specs if sp.method_label.split("[")[0] == label)
        found.problems.append(f"methods: {label!r} ({method}) cannot wrap model {model!r}: {reason}")
    limit = _positions(config)
    if limit is not None:
        over = sorted({sp.decode.max_new_tokens for sp in specs if sp.decode.max_new_tokens > limit})
        for n in over:
            labels = sorted({sp.method_label for sp in specs if sp.decode.max_new_tokens == n})
            found.problems.append(f"decode.max_new_tokens: {n} (method {', '.join(labels)}) is more than the "
                                  f"{limit} positions of model {model!r}")


# ----------------------------------------------------------------------------- data


def reachable(name: str, data_dir: Path | None) -> bool:
    """Whether ``name``'s examples are here without the hub: a generated dataset, or its folder."""
    from bench.datastats import location

    return not location(name, data_dir).startswith("hub")


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    # bench.splits logs filter values no example has (here they are problems of their own);
    # the loaders log what a run's log wants, not a check's.
    logs = [logging.getLogger(name) for name in ("bench.splits", "bench.datasets")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def _check_data(i: int, d: DatasetEntry, specs: Sequence[RunSpec], data_dir: Path | None, found: Findings) -> None:
    from bench.datastats import load_examples

    sized = [sp for sp in specs if sp.data.train_size is not None]
    if not (sized or d.train_filter or d.eval_filter):
        return  # nothing here depends on the examples
    where = f"datasets[{i}]"
    what = ", ".join(w for w, on in (("train_sizes", sized), ("train_filter", d.train_filter),
                                      ("eval_filter", d.eval_filter)) if on)
    if not reachable(d.name, data_dir):
        found.warnings.append(f"{where} ({d.name}): {what} not checked against the examples: no {d.name}/ folder "
                              f"{'in ' + str(data_dir) if data_dir else 'here (pass --data-dir or set BENCH_DATA_DIR)'}")
        return
    try:
        with _quiet_loading():
            if sized or d.train_filter:
                examples = load_examples(d.name, d.train_split, data_dir=data_dir, options=d.options)
                kept = _check_filter(examples, d.train_filter, f"{where}.train_filter", d, d.train_split, found)
                if kept is not None:
                    _check_sizes(kept, sized, where, d, found)
            if d.eval_filter:
                for split in d.eval_splits:
                    examples = load_examples(d.name, split, data_dir=data_dir, options=d.options)
                    _check_filter(examples, d.eval_filter, f"{where}.eval_filter", d, split, found)
    except DataError as e:
        found.warnings.append(f"{where} ({d.name}): {what} not checked: {str(e).splitlines()[0]}")


def _check_filter(examples: list[Example], spec: Mapping[str, Sequence[str]], where: str, d: DatasetEntry,
                  split: str, found: Findings) -> list[Example] | None:
    """The examples ``spec`` keeps; each field or value that matches nothing is a problem
    (None when the filter keeps nothing)."""
    from bench.splits import NOT, apply_filter

    if not spec:
        return examples
    of = f"{d.name} {split}"
    fields = sorted({k for ex in examples for k in ex.fields})
    ok = True
    for key, values in spec.items():
        name = key.removesuffix(NOT)
        if name not in fields:
            found.problems.append(f"{where}: no example of {of} has a field {name!r}{did_you_mean(name, fields)} "
                                  f"(fields: {', '.join(fields) or 'none'})")
            ok = False
            continue
        seen = sorted({str(ex.fields[name]) for ex in examples if name in ex.fields})
        for value in values:
            if value not in seen:
                found.problems.append(f"{where}.{key}: no example of {of} has {name} {value!r}"
                                      f"{did_you_mean(value, seen)}")
                ok = False
    if not ok:
        return None
    try:
        return apply_filter(examples, spec, what=where)
    except BenchError as e:
        found.problems.append(f"{where}: {e} of {of}")
        return None


def _check_sizes(examples: list[Example], specs: Sequence[RunSpec], where: str, d: DatasetEntry,
                 found: Findings) -> None:
    """Each training size against the split (after the filter), and each subset's dev draw."""
    from bench.pipeline import subset_key
    from bench.splits import sample_subset

    after = " after train_filter" if d.train_filter else ""
    too_big = sorted({sp.data.train_size for sp in specs if sp.data.train_size > len(examples)})
    for size in too_big:
        found.problems.append(f"{where}.train_sizes: {size} is larger than the {len(examples):,} examples of "
                              f"{d.name} {d.train_split}{after}")
    # A training subset of `size` examples spans at most `size` sources of at most `most` examples
    # each; where what is left surely holds the dev split, the draw need not be made (a draw
    # over E2E's 42k examples costs ~70 ms, and a grid has dozens).
    most = max(Counter(ex.source_id for ex in examples).values(), default=0)
    done: set[tuple[Any, ...]] = set()
    for sp in specs:
        data = sp.data
        cell = (data.train_size, data.subset, data.dev_fraction, data.nested_subsets, subset_key(sp))
        if data.train_size in too_big or cell in done:
            continue
        if len(examples) - data.train_size * most >= round(data.dev_fraction * data.train_size):
            continue
        done.add(cell)
        try:
            sample_subset(examples, size=data.train_size, subset=data.subset, key=cell[-1],
                          dev_fraction=data.dev_fraction, nested=data.nested_subsets)
        except BenchError as e:
            found.problems.append(f"{where}: train size {data.train_size}, subset {data.subset}: "
                                  f"{str(e).replace(f' ({cell[-1]})', '')}{after}")
