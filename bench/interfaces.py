"""The shared interfaces (Protocols) between the runner and the components.

A component is one file that registers one object in ``bench.registry``:

- a dataset builder (``DATASETS``) turns official files into ``Example`` rows;
- a metric (``METRICS``) turns hypotheses + grouped references into per-example statistics,
  then aggregates them (sacrebleu's shape), so bootstrap intervals are cheap;
- a method (``METHODS``) wraps a frozen base model into a ``Tuned`` module with the model's
  own call signature.

The training loop (``bench.train``), decoding (``bench.decode``) and scoring
(``bench.scoring``) are shared and never branch on which component they hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Example:
    """One (source, target) training pair.

    ``source_id`` groups the references of one source (an E2E MR, a WebNLG tripleset, an
    XSUM document): decoding runs once per source_id and is scored against all its targets.
    ``fields`` carries what splits and reports filter on (category, topic, seen/unseen).
    """

    example_id: str
    source_id: str
    source: str
    target: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalItem:
    """One unique source with all its references, in dataset order."""

    source_id: str
    source: str
    references: tuple[str, ...]
    fields: Mapping[str, str] = field(default_factory=dict)


def group_references(examples: Sequence[Example]) -> list[EvalItem]:
    """Group examples by source_id, keeping first-appearance order and reference order."""
    order: list[str] = []
    by_id: dict[str, list[Example]] = {}
    for ex in examples:
        if ex.source_id not in by_id:
            by_id[ex.source_id] = []
            order.append(ex.source_id)
        by_id[ex.source_id].append(ex)
    return [
        EvalItem(
            source_id=sid,
            source=by_id[sid][0].source,
            references=tuple(e.target for e in by_id[sid]),
            fields=dict(by_id[sid][0].fields),
        )
        for sid in order
    ]


@runtime_checkable
class DatasetBuilder(Protocol):
    """A dataset: where it comes from, how it is linearized, how it is scored.

    ``metrics`` maps the column name shown in tables (``bleu``, ``rouge_l``...) to a
    registered metric id. ``score_groups`` maps a group name (``all``, ``seen``,
    ``unseen``) to a filter ``{field: [allowed values]}`` on ``EvalItem.fields``; the empty
    filter means every item.
    """

    name: ClassVar[str]
    VERSION: ClassVar[str]
    task: ClassVar[str]  # "table_to_text" | "summarization"
    splits: ClassVar[tuple[str, ...]]
    metrics: ClassVar[Mapping[str, str]]
    score_groups: ClassVar[Mapping[str, Mapping[str, Sequence[str]]]]
    options: ClassVar[Mapping[str, Any]]  # option name -> default; validated by the suite

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; BenchError (one line) on an unknown key or a bad
        value. The suite calls it at validation time, ``load`` again."""
        ...

    def load(
        self, split: str, *, data_dir: Path | None, options: Mapping[str, Any]
    ) -> list[Example]:
        """All examples of ``split``, in the official order. Raises DataError on bad files."""
        ...


# --------------------------------------------------------------------------- metrics


@runtime_checkable
class Metric(Protocol):
    """A corpus metric split into per-example sufficient statistics and an aggregation.

    ``stats`` returns an array of shape [n_examples, k]; ``aggregate`` turns any subset of
    its rows (a bootstrap resample, the SEEN half) into the score. ``signature`` names every
    setting that changes the number (tokenizer, casing, smoothing, n references, version).
    """

    name: ClassVar[str]
    VERSION: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def signature(self) -> str: ...

    def stats(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> np.ndarray: ...

    def aggregate(self, stats: np.ndarray) -> float: ...


# --------------------------------------------------------------------------- methods


@runtime_checkable
class Tuned(Protocol):
    """A base model wrapped by a method; an ``nn.Module`` with the base model's signature.

    - ``forward(input_ids, attention_mask, labels=None, **kw)`` -> the HF model output
      (``.logits``; the shared loop computes the loss from logits and labels);
    - ``generate(input_ids, attention_mask, **generation_kwargs)`` -> token ids, exactly as
      ``transformers``' ``generate`` (prefix methods install their key/values first);
    - ``trainable_parameters()`` -> the parameters the optimizer updates (prefix: P' and
      the MLP);
    - ``stored_state()`` -> what is kept after training (prefix: the final key/values, not
      the MLP); ``load_stored(state)`` restores a fresh wrapper from it, giving identical
      logits;
    - ``n_trained`` / ``n_stored`` -> parameter counts.

    Optional, read with ``getattr`` (``method: peft``'s trained tuners define them):
    ``needs_training`` (bool) overrides the method class's; ``save_native(path, model)``
    writes the tuner in its library's own format beside the stored state (``<run>/peft_adapter/``).
    Training hooks, for methods whose training is more than the loss (AdaLoRA):
    ``training_penalty()`` -> a tensor added to each step's objective (not to the reported or
    dev loss) or None; ``after_optimizer_step(step)`` runs after each optimizer step, gradients
    still in place; ``training_state()`` / ``load_training_state(state)``: tensors a checkpoint
    carries so a resumed run continues exactly; ``finish_training()`` runs after the best dev
    state is restored.
    """

    base: torch.nn.Module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> Any: ...

    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any
    ) -> torch.Tensor: ...

    def trainable_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def stored_state(self) -> dict[str, torch.Tensor]: ...

    def load_stored(self, state: Mapping[str, torch.Tensor]) -> None: ...

    @property
    def n_trained(self) -> int: ...

    @property
    def n_stored(self) -> int: ...


@runtime_checkable
class Method(Protocol):
    """A fine-tuning method: its config class, its version, and how it wraps a model.

    ``Config`` is a frozen dataclass whose fields (with defaults) are the method's
    hyper-parameters in a suite (``length``, ``mlp_width``, ``bottleneck``...). ``apply``
    freezes what the method freezes and returns the ``Tuned`` wrapper. ``tokenizer`` is
    passed for methods that initialise from real words. An optional ``needs`` says what
    ``bench.methods._arch`` must find in a model for the method to wrap it: "layout" (blocks,
    projections, norms) or "attention" (also the prefix attention route), so `bench validate`
    refuses the others, from the model's structure without its weights, before a run loads
    one; without it, any model.
    """

    name: ClassVar[str]
    VERSION: ClassVar[str]
    Config: ClassVar[type]

    def apply(self, model: torch.nn.Module, tokenizer: Any, config: Any) -> Tuned: ...
