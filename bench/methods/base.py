"""Defaults shared by methods that only choose which base parameters (or added modules) train.

``WrappedModel`` satisfies ``bench.interfaces.Tuned`` for methods whose trained and stored
parameters are the same tensors (full fine-tuning, top-k, adapters, LoRA). Prefix methods
override ``forward``/``generate``/``stored_state`` (they train an MLP but store key/values).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def count(params: Iterator[tuple[str, nn.Parameter]] | Mapping[str, torch.Tensor]) -> int:
    items = params.items() if isinstance(params, Mapping) else params
    return sum(t.numel() for _, t in items)


class WrappedModel(nn.Module):
    """A base model plus whatever the method added; trainable = requires_grad parameters.

    ``keep_dropout`` is False for methods whose paper runs the frozen LM without dropout
    (prefix-tuning [code]); ``train()`` then leaves the base model in eval mode.
    """

    def __init__(self, base: nn.Module, *, keep_dropout: bool = True):
        super().__init__()
        self.base = base
        self.keep_dropout = keep_dropout

    # -- the model's own call signature ------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> Any:
        return self.base(input_ids=input_ids, attention_mask=attention_mask, **kw)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> torch.Tensor:
        return self.base.generate(input_ids=input_ids, attention_mask=attention_mask, **kw)

    def train(self, mode: bool = True) -> WrappedModel:
        super().train(mode)
        if mode and not self.keep_dropout:
            self.base.eval()
        return self

    def cache_prefix(self) -> torch.Tensor | None:
        """What ``generate`` serves from the cache before the input: None (nothing; the fast
        decoder ``bench.beam`` calls ``self.base`` as ``generate`` does). A wrapper whose
        ``generate`` is not ``base.generate`` plus a cached prefix raises NotImplementedError."""
        return None

    def serving(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> contextlib.AbstractContextManager[None]:
        """The context in which the fast decoder ``bench.beam`` calls ``self.base`` on this batch
        of prompts (and then on their continuations, rows copied to the beams or dropped): what
        ``generate`` sets up besides the cached prefix. Nothing here. A wrapper that cannot be
        served for this batch raises NotImplementedError (the batch then goes to ``generate``)."""
        return contextlib.nullcontext()

    # -- what trains, what is stored ----------------------------------------------------
    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def stored_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone().contiguous() for n, p in self.trainable_parameters()}

    def load_stored(self, state: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = set(self.stored_state()) - set(state)
        unexpected = set(state) - set(params)
        if missing or unexpected:
            raise ValueError(f"stored state mismatch: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)

    @property
    def n_trained(self) -> int:
        return count(self.trainable_parameters())

    @property
    def n_stored(self) -> int:
        return count(self.stored_state())
