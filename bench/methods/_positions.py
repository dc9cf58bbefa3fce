"""Position ids of decoder-only inputs behind a prefix (or an infix).

The authors and PEFT pass the prefix as cached past, so the input's positions start at the
prefix length L (GPT-2's absolute position embeddings, Llama's rotary angles). Our prefix
enters inside attention (see ``_prefix_attention``), so the model would number the input
from 0; a forward pre-hook on the base model adds the offset to ``position_ids`` while a
shift is active. Without explicit ids it first computes them from the attention mask
(``cumsum - 1``, as ``generate`` does, so left padding is numbered like ``generate``'s
prefill) or from the cache length. For an infix only the tokens from the infix's key
index on are shifted. BART numbers its decoder from the cache length, like the authors'
code, and takes no shift.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Shift:
    """Add ``offset`` ([b0] long) to the positions of each row, from key index ``start``
    ([b0] long; None: every token) on; b0 = 1 or the batch before beam expansion."""

    offset: torch.Tensor
    start: torch.Tensor | None = None


_SHIFT: ContextVar[Shift | None] = ContextVar("bench_position_shift", default=None)
_HOOKED = "_bench_position_hook"


@contextlib.contextmanager
def shifting(shift: Shift | None) -> Iterator[None]:
    token = _SHIFT.set(shift)
    try:
        yield
    finally:
        _SHIFT.reset(token)


def _rows(t: torch.Tensor, batch: int) -> torch.Tensor:
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch)
    return t.repeat_interleave(batch // t.shape[0], dim=0)


def _hook(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    shift = _SHIFT.get()
    if shift is None:
        return args, kwargs
    tokens = kwargs.get("input_ids")
    if tokens is None:
        tokens = args[0] if args else kwargs.get("inputs_embeds")
    batch, length = tokens.shape[0], tokens.shape[1]
    device = tokens.device
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    past = cache.get_seq_length() if cache is not None else 0
    positions = kwargs.get("position_ids")
    if positions is None:
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.ndim == 2:
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
        else:
            positions = torch.arange(past, past + length, device=device)[None]
    offset = _rows(shift.offset.to(device), batch)[:, None]
    if shift.start is not None:
        key_index = torch.arange(past, past + length, device=device)[None]
        offset = offset * (key_index >= _rows(shift.start.to(device), batch)[:, None])
    kwargs["position_ids"] = positions + offset
    return args, kwargs


def install_position_hook(model: nn.Module) -> None:
    """Register the shifting pre-hook on ``model`` once (inactive until :func:`shifting`)."""
    if getattr(model, _HOOKED, False):
        return
    model.register_forward_pre_hook(_hook, with_kwargs=True)
    setattr(model, _HOOKED, True)
