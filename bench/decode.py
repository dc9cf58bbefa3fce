"""THE decoding function, shared by every method: batched beam search (beam 1 = greedy).

One generation per unique source (``EvalItem``), scored later against all its references.
Sources are decoded in batches sorted by length (less padding), results returned in the
original order. Newline tokens are blocked in table-to-text as in the authors' code.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.config import DecodeConfig
from bench.formatting import collate_prompts, prompt_ids
from bench.interfaces import EvalItem


@functools.lru_cache(maxsize=8)
def _newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    ids = []
    for i in range(len(tokenizer)):
        if "\n" in tokenizer.decode([i]):
            ids.append(i)
    return tuple(ids)


def newline_token_ids(tokenizer: Any) -> list[int]:
    """Every vocabulary entry whose text contains a newline (cached per tokenizer)."""
    return list(_newline_token_ids(tokenizer))


def decode(
    tuned: torch.nn.Module,
    tokenizer: Any,
    items: Sequence[EvalItem],
    *,
    cfg: DecodeConfig,
    is_encoder_decoder: bool,
    max_source_tokens: int,
    progress: bool = True,
    desc: str = "decode",
) -> tuple[list[str], float]:
    """Generate one hypothesis per item; returns (hypotheses in item order, seconds)."""
    device = next(tuned.parameters()).device
    prompts = [prompt_ids(tokenizer, it.source, is_encoder_decoder=is_encoder_decoder,
                          max_source_tokens=max_source_tokens) for it in items]
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(items)
    gen_kw: dict[str, Any] = {
        "num_beams": cfg.beam_size,
        "max_new_tokens": cfg.max_new_tokens,
        "length_penalty": cfg.length_penalty,
        "early_stopping": cfg.beam_size > 1,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if cfg.block_newline:
        nl = newline_token_ids(tokenizer)
        if nl:
            gen_kw["bad_words_ids"] = [[i] for i in nl]
    tuned.eval()
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), desc=desc, disable=not progress, leave=False, dynamic_ncols=True, file=sys.stderr)
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        batch = collate_prompts([prompts[i] for i in idx], pad_id=tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            seqs = tuned.generate(**batch, **gen_kw)
        new = seqs if is_encoder_decoder else seqs[:, batch["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            out[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
        bar.update(len(idx))
    bar.close()
    return out, time.perf_counter() - t0
