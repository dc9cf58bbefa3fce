"""The attention function that puts prefix key/values in front of every attention's keys.

Prefix-tuning (Li & Liang 2021) gives every attention layer L extra key/value positions in
front of the input. The authors (and PEFT) pass them as cached ``past_key_values``, which
reaches only self-attention of a decoder. Here the prefix enters one level lower: most
current architectures (GPT-2, the Llama family, GPT-NeoX, OPT, BART, T5; see
``bench.methods._arch``) call the function registered in transformers' ``AttentionInterface``
under ``config._attn_implementation``; :func:`install` switches a model to ours
(``"prefix_sdpa"``), which prepends the key/values of the module it is called for, extends
the mask over them and calls transformers' own sdpa function. That reaches encoder
self-attention and decoder cross-attention too, and leaves the cache and ``generate``
untouched (the cache holds only real tokens; the prefix is prepended again at every step).

Which key/values belong to which module lives in a context variable set by the wrapper
around each forward/generate (:func:`injecting`), so several wrappers (several tasks) can
share one frozen base model, and the bare model (nothing injected) is plain sdpa.
:func:`capturing` records the key/values every attention sees, which gives the activations
of real words (initialization) and the per-layer key/values of virtual tokens
(embedding-only), with no dependence on cache formats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from bench.errors import BenchError
from bench.methods._arch import require_prefix_route

IMPLEMENTATION = "prefix_sdpa"

# Roles of attention modules: "self" (decoder-only models), and for encoder-decoders
# "encoder" (encoder self-attention), "decoder" (decoder self-attention), "cross".
DECODER_ONLY_ROLES = ("self",)
ENCODER_DECODER_ROLES = ("encoder", "decoder", "cross")


@dataclass(frozen=True)
class PrefixKV:
    """The extra key/values of one attention module.

    ``key``/``value``: [b0, kv_heads, L, head_dim] with b0 = 1 (one prefix for every row)
    or the batch size before beam expansion (one prefix per row: mixed tasks).
    ``visible``: [b0, L] bool, False on padding slots of shorter prefixes (mixed tasks);
    None means every slot counts. ``start``: [b0] long, for infixes: a query sees the slots
    only from this key index on (the separator's index); None means every query sees them.
    """

    key: torch.Tensor
    value: torch.Tensor
    visible: torch.Tensor | None = None
    start: torch.Tensor | None = None


@dataclass(frozen=True)
class Site:
    """One attention module that receives key/values."""

    role: str
    layer: int
    module: nn.Module
    kv_heads: int
    head_dim: int


_INJECT: ContextVar[Mapping[int, PrefixKV] | None] = ContextVar("bench_prefix_inject", default=None)
_CAPTURE: ContextVar[dict[int, tuple[torch.Tensor, torch.Tensor]] | None] = ContextVar(
    "bench_prefix_capture", default=None
)
_EXPLICIT: ContextVar[bool] = ContextVar("bench_prefix_explicit_masks", default=False)


@contextlib.contextmanager
def injecting(entries: Mapping[int, PrefixKV]) -> Iterator[None]:
    """Within the block, attention module ``id(m)`` gets ``entries[id(m)]`` prepended."""
    token = _INJECT.set(entries)
    try:
        yield
    finally:
        _INJECT.reset(token)


@contextlib.contextmanager
def explicit_masks(on: bool = True) -> Iterator[None]:
    """Within the block, causal attention never runs on a missing mask: the mask is built here.

    For a prefix served as cached past (``bench.beam``): this function, when it injects a
    prefix, always hands sdpa an explicit boolean mask; transformers may pass None instead
    (no padding), and sdpa without a mask can take another kernel. Built here, the mask has
    the values and shape the injecting route builds, so both routes give the same floats.
    """
    token = _EXPLICIT.set(on)
    try:
        yield
    finally:
        _EXPLICIT.reset(token)


def _causal(q_len: int, kv_len: int, device: Any) -> torch.Tensor:
    """[1, 1, q, kv] bool, aligned bottom right (the cache holds the earlier tokens)."""
    q_index = torch.arange(kv_len - q_len, kv_len, device=device)
    return (torch.arange(kv_len, device=device)[None, :] <= q_index[:, None])[None, None]


@contextlib.contextmanager
def capturing() -> Iterator[dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """Within the block, record the (key, value) each attention module computes."""
    record: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    token = _CAPTURE.set(record)
    try:
        yield record
    finally:
        _CAPTURE.reset(token)


def _expand(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Rows of a prefix tensor (1 or b0 rows) to the attention's batch (b0 x beams)."""
    b0 = t.shape[0]
    if b0 == batch:
        return t
    if b0 == 1:
        return t.expand(batch, *t.shape[1:])
    if batch % b0:
        raise RuntimeError(f"prefix has {b0} rows, attention batch is {batch}")
    # generate() expands each row to its beams contiguously (repeat_interleave)
    return t.repeat_interleave(batch // b0, dim=0)


def _prefix_columns(
    entry: PrefixKV, batch: int, q_len: int, kv_len: int, device: Any
) -> torch.Tensor | None:
    """Boolean [batch|1, 1, q_len|1, L] visibility of the prefix slots, or None if all visible."""
    cols = None
    if entry.visible is not None:
        cols = _expand(entry.visible, batch)[:, None, None, :]
    if entry.start is not None:
        # key index of query i: the cache holds kv_len - q_len earlier tokens
        q_index = torch.arange(kv_len - q_len, kv_len, device=device)
        start = _expand(entry.start, batch)
        seen = (q_index[None, :] >= start[:, None])[:, None, :, None]  # [B, 1, q, 1]
        cols = seen if cols is None else cols & seen
    return cols


def prefix_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention with the injected key/values of ``module`` in front."""
    record = _CAPTURE.get()
    if record is not None:
        record[id(module)] = (key, value)
    entries = _INJECT.get()
    entry = entries.get(id(module)) if entries else None
    if entry is None:
        if attention_mask is None and _EXPLICIT.get():
            causal = kwargs.get("is_causal")
            if getattr(module, "is_causal", True) if causal is None else causal:
                attention_mask = _causal(query.shape[2], key.shape[2], key.device)
                kwargs["is_causal"] = False
        elif attention_mask is not None and _EXPLICIT.get():
            attention_mask = attention_mask.contiguous()  # as the injecting route's concatenation
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    batch, _, q_len, _ = query.shape
    kv_len = key.shape[2]
    n_prefix = entry.key.shape[2]
    pk = _expand(entry.key, batch).to(key.dtype)
    pv = _expand(entry.value, batch).to(value.dtype)
    cols = _prefix_columns(entry, batch, q_len, kv_len, key.device)
    bias = kwargs.get("position_bias")
    if bias is not None:
        # T5 adds a relative position bias to the scores: the prefix slots have no position
        # relative to the input, so their bias is zero (the key/values alone set their weight).
        kwargs["position_bias"] = torch.cat([bias.new_zeros(*bias.shape[:-1], n_prefix), bias], dim=-1)

    if attention_mask is None:
        causal = kwargs.get("is_causal")
        causal = getattr(module, "is_causal", True) if causal is None else causal
        if causal:
            # With no mask sdpa would decide causality itself, aligned to the top left of a
            # [q, L + kv] matrix, which is wrong once prefix columns exist: build it here,
            # aligned bottom right (the cache holds the earlier tokens).
            attention_mask = _causal(q_len, kv_len, key.device)
        elif cols is not None:
            attention_mask = torch.ones(1, 1, q_len, kv_len, dtype=torch.bool, device=key.device)
    if attention_mask is not None:
        if cols is None:
            cols = torch.ones(1, 1, 1, n_prefix, dtype=torch.bool, device=key.device)
        rows = max(attention_mask.shape[0], cols.shape[0])
        q_rows = max(attention_mask.shape[2], cols.shape[2])
        if attention_mask.dtype != torch.bool:
            # an additive float mask: 0 where attended, a large negative number elsewhere
            cols = torch.zeros((), dtype=attention_mask.dtype, device=key.device).masked_fill(
                ~cols, torch.finfo(attention_mask.dtype).min
            )
        heads = max(attention_mask.shape[1], cols.shape[1])
        attention_mask = torch.cat(
            [
                cols.expand(rows, heads, q_rows, n_prefix),
                attention_mask.expand(rows, heads, q_rows, kv_len),
            ],
            dim=-1,
        )
        kwargs["is_causal"] = False
    return sdpa_attention_forward(
        module,
        query,
        torch.cat([pk, key], dim=2),
        torch.cat([pv, value], dim=2),
        attention_mask,
        **kwargs,
    )


AttentionInterface.register(IMPLEMENTATION, prefix_sdpa_attention)
# The models build their masks with the function registered under the same name; without
# this entry transformers would skip mask creation (and lose padding) for our name.
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def _kv_shape(module: nn.Module, config: Any) -> tuple[int, int]:
    """(key/value heads, head dim) of one attention module. Grouped-query attention (Llama
    family, Qwen, Mistral, Gemma, Phi-3, OLMo 2) has fewer key/value heads than query heads:
    the prefix is sized by the former. The head dim is the module's own (explicit in Qwen3
    and Gemma configs, not hidden / heads)."""
    dim = next((getattr(module, a) for a in ("head_dim", "head_size", "key_value_proj_dim") if hasattr(module, a)), None)
    heads = getattr(config, "num_key_value_heads", None)
    if heads is None:
        heads = next((getattr(module, a) for a in ("num_heads", "n_heads", "num_attention_heads")
                      if hasattr(module, a)), None)
    if heads is None:
        heads = getattr(config, "num_attention_heads", None)
    if heads is None or dim is None:
        raise BenchError(f"prefix: the key/value heads or head size of {type(module).__name__} are not found")
    return int(heads), int(dim)


def install(model: nn.Module, method: str = "prefix") -> list[Site]:
    """Switch ``model`` to the prefix attention and list its attention modules by role.

    Nothing changes numerically for the bare model: with nothing injected the function is
    transformers' sdpa. Idempotent. A model the route cannot serve is a one-line BenchError
    naming ``method``, the model and the reason (before any training).
    """
    arch = require_prefix_route(model, method)
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    # T5 gives its encoder and decoder stacks copies of the config: switch every copy.
    for cfg in {id(c): c for c in [config, *(getattr(m, "config", None) for m in model.modules())]
                if c is not None and hasattr(c, "_attn_implementation")}.values():
        if cfg._attn_implementation != IMPLEMENTATION:
            cfg._attn_implementation = IMPLEMENTATION
    sites: list[Site] = []
    for role, modules in arch.attentions.items():
        for i, module in enumerate(modules):
            heads, dim = _kv_shape(module, text)
            sites.append(Site(role, i, module, heads, dim))
    return sites


def roles_of(sites: list[Site]) -> dict[str, list[Site]]:
    """Sites grouped by role, in layer order."""
    out: dict[str, list[Site]] = {}
    for s in sites:
        out.setdefault(s.role, []).append(s)
    return out
