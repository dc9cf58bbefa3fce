"""THE decoding function, shared by every method: batched beam search (beam 1 = greedy).

One generation per unique source (``EvalItem``), scored later against all its references.
Sources are decoded in batches sorted by length (less padding), results returned in the
original order. Newline tokens are blocked in table-to-text as in the authors' code.

Engine: ``"fast"`` (the default) is ``bench.beam``, token-for-token the output of
transformers' ``generate`` for these settings but faster (prefix as cached past, prompt run
once per source, finished sources leave the batch; the infix served injected under the
wrapper's ``serving`` context); where it cannot promise that (encoder-decoder models) the
batch goes to ``generate``. ``"generate"`` forces
transformers' ``generate`` (also ``BENCH_DECODE_ENGINE=generate``). The engine is not part of
the decode key: both give the same predictions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from bench import beam, faults, store
from bench.config import DecodeConfig
from bench.formatting import collate_prompts, prompt_ids
from bench.interfaces import EvalItem

ENGINES = ("fast", "generate")


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
    tuned: torch.nn.Module | Sequence[torch.nn.Module],
    tokenizer: Any,
    items: Sequence[EvalItem],
    *,
    cfg: DecodeConfig,
    is_encoder_decoder: bool,
    max_source_tokens: int,
    progress: bool = True,
    desc: str = "decode",
    engine: str | None = None,
    min_new_tokens: int = 0,
    parts: Path | None = None,
    stats: dict[str, Any] | None = None,
    task_of_item: Sequence[int] | None = None,
) -> tuple[list[str], float]:
    """Generate one hypothesis per item; returns (hypotheses in item order, seconds).

    ``parts``: a folder (one per decode key and split) where each finished batch is published
    atomically; batches found there (same sources) are not decoded again, so a killed decode
    resumes. Batches are fixed by the sorted order, so a resumed decode decodes exactly the
    batches an uninterrupted one would (same padding, same outputs). ``stats`` receives
    ``engine`` ("fast" or "generate"), ``engine_fallback`` (why ``generate`` served batches
    the fast engine was asked for, or None), ``resumed_batches``, ``batches`` and ``done_s`` (per item, seconds from the start until its
    batch was done: the latency of serving). The seconds returned include the time each
    resumed batch took when it was decoded (stored with it), so a resumed decode reports the
    whole decode's time; ``stats["time_complete"]`` is False when a resumed batch was stored
    without its time (by an older version), and the seconds then cover only part of the work.

    Mixed tasks (the paper's serving claim): ``tuned`` is a list of prefix-style wrappers of one
    base model and ``task_of_item[i]`` indexes the task of item i; batches mix the tasks (each
    row carries its task's prefix, :func:`bench.methods.prefix.generate_mixed`).

    ``min_new_tokens`` (benchmarks only: equal work across variants) bans the eos token until
    that many tokens are generated, as ``generate``'s argument of that name."""
    engine = engine or os.environ.get("BENCH_DECODE_ENGINE") or "fast"
    if engine not in ENGINES:
        raise ValueError(f"decode engine {engine!r}: valid are {', '.join(ENGINES)}")
    tasks = list(tuned) if task_of_item is not None else None
    if tasks is not None:
        if len(task_of_item) != len(items):
            raise ValueError(f"task_of_item has {len(task_of_item)} entries for {len(items)} items")
        tuned = tasks[0]
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
    banned: list[int] = []
    if cfg.block_newline:
        banned = newline_token_ids(tokenizer)
        if banned:
            gen_kw["bad_words_ids"] = [[i] for i in banned]
    if min_new_tokens:
        gen_kw["min_new_tokens"] = min_new_tokens
    fast: tuple[torch.nn.Module, torch.Tensor | None] | None = None
    for t in tasks or [tuned]:
        t.eval()
    # Why the fast engine was asked for but generate served (some) batches: a run records it.
    fallback: str | None = None
    if engine == "fast" and is_encoder_decoder:
        fallback = "encoder-decoder model (the fast engine serves decoder-only models)"
    elif engine == "fast":
        try:
            with torch.no_grad():
                fast = beam.model_and_prefix(tuned)  # the prefix is computed once for all batches
        except beam.Unsupported as e:
            fast, fallback = None, str(e)
    done_s = [0.0] * len(items)
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), desc=desc, disable=not progress, leave=False, dynamic_ncols=True, file=sys.stderr)
    n_batches = resumed = 0
    resumed_s, time_complete = 0.0, True
    for number, start in enumerate(range(0, len(order), cfg.batch_size)):
        idx = order[start : start + cfg.batch_size]
        n_batches += 1
        part = parts / f"batch-{number:06d}.parquet" if parts is not None else None
        stored = _read_part(part, [items[i].source_id for i in idx]) if part is not None else None
        if stored is not None:
            texts, batch_s = stored
            for i, text in zip(idx, texts, strict=True):
                out[i] = text
            resumed += 1
            if batch_s is None:
                time_complete = False
            else:
                resumed_s += batch_s
            bar.update(len(idx))
            continue
        faults.checkpoint(f"decode_batch:{number}")
        t_batch = time.perf_counter()
        batch = collate_prompts([prompts[i] for i in idx], pad_id=tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        new = None
        rows = None if tasks is None else torch.tensor([task_of_item[i] for i in idx], device=device)
        if fast is not None:
            prefix, visible, lengths = fast[1], None, None
            try:
                if rows is not None:
                    from bench.methods.prefix import mixed_prefix

                    with torch.no_grad():
                        prefix, visible, lengths = mixed_prefix(tasks, rows, batch["input_ids"])
                serving = tuned.serving if rows is None and hasattr(tuned, "serving") else None
                with serving(batch["input_ids"], batch["attention_mask"]) if serving else contextlib.nullcontext():
                    new = beam.generate(fast[0], batch["input_ids"], batch["attention_mask"], num_beams=cfg.beam_size,
                                        max_new_tokens=cfg.max_new_tokens, length_penalty=cfg.length_penalty,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                        banned_ids=banned, min_new_tokens=min_new_tokens, prefix=prefix,
                                        prefix_visible=visible, prefix_len=lengths)
            except NotImplementedError as e:  # beam.Unsupported, or a mixed batch the engine cannot serve
                fast, fallback = None, f"from batch {number}: {e or type(e).__name__}"
        if new is None:
            with torch.no_grad():
                if rows is not None:
                    from bench.methods.prefix import generate_mixed

                    seqs = generate_mixed(tasks, rows, **batch, **gen_kw)
                else:
                    seqs = tuned.generate(**batch, **gen_kw)
            new = seqs if is_encoder_decoder else seqs[:, batch["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            out[i] = tokenizer.decode(new[row], skip_special_tokens=True).strip()
            done_s[i] = time.perf_counter() - t0
        if part is not None:
            part.parent.mkdir(parents=True, exist_ok=True)
            store.write_parquet(part, pd.DataFrame({"source_id": [items[i].source_id for i in idx],
                                                    "prediction": [out[i] for i in idx],
                                                    "batch_seconds": time.perf_counter() - t_batch}))
        bar.update(len(idx))
    bar.close()
    if stats is not None:
        stats.update(batches=n_batches, resumed_batches=resumed, done_s=done_s, time_complete=time_complete,
                     engine="generate" if engine == "generate" or fallback else "fast", engine_fallback=fallback)
    return out, time.perf_counter() - t0 + resumed_s


def _read_part(path: Path, source_ids: list[str]) -> tuple[list[str], float | None] | None:
    """The predictions of a published batch and the seconds it took (None: not stored), or
    None (absent, or made for other sources)."""
    if not path.exists():
        return None
    df = store.read_parquet(path)
    if list(df["source_id"]) != source_ids:
        return None
    seconds = float(df["batch_seconds"].iloc[0]) if "batch_seconds" in df.columns and len(df) else None
    return list(df["prediction"]), seconds
