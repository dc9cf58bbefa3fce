"""How a (source, target) pair becomes token ids, for every method alike.

Decoder-only, as the authors' code [Li & Liang 2021]: `` {source} {sep} {target} {eos}`` with
the separator = the tokenizer's bos token (GPT-2's ``<|endoftext|>``), else its eos; the loss
covers the target tokens and the final eos. Encoder-decoder: source -> encoder, target + eos
-> decoder. Training batches are right-padded; generation prompts are left-padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100


def separator_id(tokenizer: Any) -> int:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class Encoded:
    source_ids: list[int]  # decoder-only: " source" + sep; enc-dec: source (+ model specials)
    target_ids: list[int]  # " target" + eos


def encode(tokenizer: Any, source: str, target: str, *, is_encoder_decoder: bool,
           max_source_tokens: int, max_target_tokens: int) -> Encoded:
    """Tokenize one pair, truncating the source and target to their budgets."""
    if is_encoder_decoder:
        src = tokenizer(source, truncation=True, max_length=max_source_tokens)["input_ids"]
        # BART-style tokenizers add <s> ... </s> themselves (the labels BART was trained on).
        tgt = tokenizer(target, truncation=True, max_length=max_target_tokens)["input_ids"]
        if not tgt or tgt[-1] != tokenizer.eos_token_id:
            tgt = tgt[: max_target_tokens - 1] + [tokenizer.eos_token_id]
        return Encoded(src, tgt)
    src = _ids(tokenizer, " " + source)[:max_source_tokens] + [separator_id(tokenizer)]
    tgt = _ids(tokenizer, " " + target)[: max_target_tokens - 1] + [tokenizer.eos_token_id]
    return Encoded(src, tgt)


def prompt_ids(tokenizer: Any, source: str, *, is_encoder_decoder: bool, max_source_tokens: int) -> list[int]:
    """The generation prompt of one source (same tokens as the training prefix of its pairs)."""
    if is_encoder_decoder:
        return tokenizer(source, truncation=True, max_length=max_source_tokens)["input_ids"]
    return _ids(tokenizer, " " + source)[:max_source_tokens] + [separator_id(tokenizer)]


def collate_train(batch: Sequence[Encoded], *, pad_id: int, is_encoder_decoder: bool,
                  decoder_start_id: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded tensors; ``labels`` is -100 wherever no loss is taken."""
    if is_encoder_decoder:
        n = max(len(e.source_ids) for e in batch)
        m = max(len(e.target_ids) for e in batch)
        input_ids = torch.full((len(batch), n), pad_id)
        attn = torch.zeros((len(batch), n), dtype=torch.long)
        dec_in = torch.full((len(batch), m), pad_id)
        dec_attn = torch.zeros((len(batch), m), dtype=torch.long)
        labels = torch.full((len(batch), m), IGNORE)
        for i, e in enumerate(batch):
            input_ids[i, : len(e.source_ids)] = torch.tensor(e.source_ids)
            attn[i, : len(e.source_ids)] = 1
            shifted = [decoder_start_id, *e.target_ids[:-1]]
            dec_in[i, : len(shifted)] = torch.tensor(shifted)
            dec_attn[i, : len(shifted)] = 1
            labels[i, : len(e.target_ids)] = torch.tensor(e.target_ids)
        return {"input_ids": input_ids, "attention_mask": attn, "decoder_input_ids": dec_in,
                "decoder_attention_mask": dec_attn, "labels": labels}
    n = max(len(e.source_ids) + len(e.target_ids) for e in batch)
    input_ids = torch.full((len(batch), n), pad_id)
    attn = torch.zeros((len(batch), n), dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE)
    for i, e in enumerate(batch):
        seq = e.source_ids + e.target_ids
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        labels[i, len(e.source_ids) : len(seq)] = torch.tensor(e.target_ids)
    return {"input_ids": input_ids, "attention_mask": attn, "labels": labels}


def collate_prompts(prompts: Sequence[Sequence[int]], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts, so every row's new tokens start at the same column."""
    n = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), n), pad_id)
    attn = torch.zeros((len(prompts), n), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, n - len(p) :] = torch.tensor(list(p))
        attn[i, n - len(p) :] = 1
    return {"input_ids": input_ids, "attention_mask": attn}


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, *, is_encoder_decoder: bool,
                  reduction: str) -> tuple[torch.Tensor, int]:
    """Cross-entropy on the labelled tokens; returns (loss, number of target tokens).

    ``sequence_sum``: per-sequence sum of token losses, averaged over the batch (the authors'
    code); ``token_mean``: mean over all target tokens (HF's default).
    """
    if not is_encoder_decoder:  # position t predicts token t+1
        logits, labels = logits[:, :-1], labels[:, 1:]
    tok = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(labels.shape)
    n_tokens = int((labels != IGNORE).sum())
    if reduction == "sequence_sum":
        return tok.sum(dim=1).mean(), n_tokens
    return tok.sum() / max(n_tokens, 1), n_tokens
