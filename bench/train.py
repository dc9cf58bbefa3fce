"""THE training loop, shared by every method: AdamW, linear schedule with warmup, gradient
accumulation, optional early stopping on dev loss, resumable checkpoints.

It never asks which method it trains: it optimizes ``tuned.trainable_parameters()`` on the
loss computed from ``tuned(...).logits`` (``bench.formatting.sequence_loss``).

Checkpoints (every ``checkpoint_every`` steps, published atomically) hold everything the rest
of the run depends on: the trainable parameters, AdamW's state, the schedule, the position in
the data order (fixed up front from the seed; its digest is checked on resume), every random
generator (torch CPU and CUDA, numpy, random: dropout draws from torch's) and the early-stopping
state. A resumed run therefore reaches bit-identical parameters on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from typing_extensions import Self

from bench import faults
from bench.config import TrainConfig
from bench.formatting import Encoded, collate_train, encode, sequence_loss
from bench.interfaces import Example

DATA_ORDER_SALT = 0xB5  # the batch order is numpy.random.default_rng([seed, DATA_ORDER_SALT])
CHECKPOINT_FORMAT = 2


class RunFailure(Exception):
    """A run that cannot finish (NaN loss, out of memory...); recorded with its stage."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    tokens: int = 0
    train_time_s: float = 0.0
    peak_memory_mb: float = 0.0
    dev_losses: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    resumed_from: int | None = None
    discarded_checkpoint: str | None = None  # why a checkpoint found was not used

    def summary(self) -> dict[str, Any]:
        st = sorted(self.step_times[1:] or self.step_times)  # the first step pays warm-up
        return {
            "steps": self.steps,
            "final_loss": self.losses[-1] if self.losses else None,
            "train_time_s": round(self.train_time_s, 3),
            "step_time_median_s": round(float(np.median(st)), 4) if st else None,
            "tokens_per_s": round(self.tokens / self.train_time_s, 1) if self.train_time_s else None,
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "best_step": self.best_step,
            "resumed_from": self.resumed_from,
            "discarded_checkpoint": self.discarded_checkpoint,
            "dev_losses": self.dev_losses,
            # every step's training loss, for the report's training curves (not part of any key)
            "losses": [float(f"{x:.6g}") for x in self.losses],
        }


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on GPU; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


class MemoryPeak:
    """Peak memory of one run's training, not of the whole process.

    GPU: ``max_memory_allocated`` after a reset. CPU: the resident set size sampled every
    10 ms from /proc (``ru_maxrss`` is a process-lifetime maximum, so in a process that ran
    full fine-tuning first every later run would report full fine-tuning's peak).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_bytes = max(self.peak_bytes, self._rss())

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif os.path.exists("/proc/self/statm"):
            self.peak_bytes = self._rss()
            self._thread = threading.Thread(target=self._sample, name="bench-memory-peak", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, self._rss())

    @property
    def mb(self) -> float:
        if self.device.type == "cuda" or self._thread is None:
            return peak_memory_mb(self.device)
        return self.peak_bytes / 2**20


def encode_all(tokenizer: Any, examples: Sequence[Example], cfg: TrainConfig, is_encoder_decoder: bool) -> list[Encoded]:
    return [
        encode(tokenizer, ex.source, ex.target, is_encoder_decoder=is_encoder_decoder,
               max_source_tokens=cfg.max_source_tokens, max_target_tokens=cfg.max_target_tokens)
        for ex in examples
    ]


def total_steps(n_examples: int, cfg: TrainConfig) -> int:
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_epoch = math.ceil(n_examples / (cfg.batch_size * cfg.grad_accum))
    return max(1, math.ceil(per_epoch * cfg.epochs))


def _batch_order(n: int, steps: int, cfg: TrainConfig, seed: int) -> list[list[int]]:
    """Every micro-batch of the run, fixed up front from the seed (so resuming replays it)."""
    rng = np.random.default_rng([seed, DATA_ORDER_SALT])
    need = steps * cfg.grad_accum
    batches: list[list[int]] = []
    while len(batches) < need:
        perm = rng.permutation(n).tolist()
        for i in range(0, n, cfg.batch_size):
            batches.append(perm[i : i + cfg.batch_size])
    return batches[:need]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def train(
    tuned: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    cfg: TrainConfig,
    seed: int,
    is_encoder_decoder: bool,
    decoder_start_id: int | None = None,
    dev_examples: Sequence[Example] = (),
    checkpoint_path: Path | None = None,
    progress: bool = True,
    desc: str = "train",
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Optimize ``tuned``'s trainable parameters on ``examples``; returns costs and losses."""
    if not examples:
        raise RunFailure("train", "no training examples")
    device = next(tuned.parameters()).device
    data = encode_all(tokenizer, examples, cfg, is_encoder_decoder)
    dev = encode_all(tokenizer, dev_examples, cfg, is_encoder_decoder) if cfg.early_stopping else []
    pad = tokenizer.pad_token_id
    steps = total_steps(len(data), cfg)
    order = _batch_order(len(data), steps, cfg, seed)
    params = [p for _, p in tuned.trainable_parameters()]
    if not params:
        raise RunFailure("train", "the method left no trainable parameter")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
    )
    result = TrainResult(steps=steps)
    start_step = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_dev = math.inf
    elapsed_before = 0.0
    fingerprint = {"format": CHECKPOINT_FORMAT, "steps": steps, "n_examples": len(data),
                   "order": _order_digest(order), "params": sorted(n for n, _ in tuned.trainable_parameters())}
    if checkpoint_path is not None and checkpoint_path.exists():
        ck, why = _read_checkpoint(checkpoint_path, fingerprint)
        if ck is None:
            result.discarded_checkpoint = why
        else:
            with torch.no_grad():
                named = dict(tuned.trainable_parameters())
                for n, t in ck["params"].items():
                    named[n].copy_(t)
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            _set_rng_states(ck["rng"])
            start_step = ck["step"]
            result.losses = ck["losses"]
            result.step_times = ck["step_times"]
            result.tokens = ck["tokens"]
            result.dev_losses = ck["dev_losses"]
            result.best_step = ck["best_step"]
            best_dev = ck["best_dev"]
            best_state = ck["best_state"]
            elapsed_before = ck["elapsed_s"]
            result.resumed_from = start_step

    tuned.train()
    # A `with` block: the CPU sampler thread is stopped (and the bar closed) also when a step
    # raises (a NaN loss, out of memory, a lost lock), not only when training ends.
    with MemoryPeak(device) as memory, tqdm(total=steps, initial=start_step, desc=desc, disable=not progress,
                                            leave=False, dynamic_ncols=True, file=sys.stderr) as bar:
        t0 = time.perf_counter()
        for step in range(start_step, steps):
            faults.checkpoint(f"train_step:{step}")
            ts = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in range(cfg.grad_accum):
                idx = order[step * cfg.grad_accum + micro]
                batch = _to(collate_train([data[i] for i in idx], pad_id=pad, is_encoder_decoder=is_encoder_decoder,
                                          decoder_start_id=decoder_start_id), device)
                # Labels stay out of the model call: HF would compute a second, unused loss.
                out = tuned(**{k: v for k, v in batch.items() if k != "labels"})
                loss, _ = sequence_loss(out.logits, batch["labels"], is_encoder_decoder=is_encoder_decoder,
                                            reduction=cfg.loss)
                if faults.poisoned(f"train_step:{step}"):
                    loss = loss * float("nan")
                if not torch.isfinite(loss):
                    raise RunFailure("train", f"non-finite loss ({loss.item()}) at step {step}")
                (loss / cfg.grad_accum).backward()
                step_loss += loss.item() / cfg.grad_accum
                result.tokens += int(batch["attention_mask"].sum()) + int(batch.get("decoder_attention_mask", torch.zeros(1)).sum())
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            result.losses.append(step_loss)
            result.step_times.append(time.perf_counter() - ts)
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
            bar.update(1)
            if on_step:
                on_step(step, step_loss)
            done = step + 1
            if cfg.early_stopping and dev and (done % cfg.eval_every == 0 or done == steps):
                dl = dev_loss(tuned, dev, cfg, pad, is_encoder_decoder, decoder_start_id)
                result.dev_losses.append((done, dl))
                if dl < best_dev:
                    best_dev, result.best_step = dl, done
                    best_state = {n: p.detach().clone() for n, p in tuned.trainable_parameters()}
                tuned.train()
            if checkpoint_path is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < steps:
                _save_checkpoint(checkpoint_path, fingerprint, tuned, opt, sched, done, result, best_dev, best_state,
                                 elapsed_before + time.perf_counter() - t0)
                faults.checkpoint(f"checkpoint_saved:{done}")
        if best_state is not None:
            with torch.no_grad():
                named = dict(tuned.trainable_parameters())
                for n, t in best_state.items():
                    named[n].copy_(t)
        tuned.eval()
        result.train_time_s = elapsed_before + time.perf_counter() - t0
    result.peak_memory_mb = memory.mb
    return result


def _order_digest(order: Sequence[Sequence[int]]) -> str:
    return hashlib.sha256(json.dumps(order).encode()).hexdigest()[:16]


def _rng_states() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _read_checkpoint(path: Path, fingerprint: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint if it belongs to this very training run, else (None, why not)."""
    try:
        # Our own file (pickled RNG states need weights_only=False); never a downloaded one.
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: start over
        return None, f"unreadable checkpoint ({type(e).__name__}: {str(e)[:120]})"
    if not isinstance(ck, dict) or ck.get("fingerprint") != fingerprint:
        # Same train_key but another data order or parameter set: the code changed under a
        # VERSION that was not bumped. Training from step 0 is the only honest resumption.
        return None, "checkpoint of a different training setup (code changed without a VERSION bump?)"
    return ck, None


def _save_checkpoint(path: Path, fingerprint: dict[str, Any], tuned: torch.nn.Module, opt: Any, sched: Any,
                     step: int, result: TrainResult, best_dev: float, best_state: Any, elapsed_s: float) -> None:
    from bench.store import atomic_path

    state = {
        "fingerprint": fingerprint,
        "step": step,
        "params": {n: p.detach().clone() for n, p in tuned.trainable_parameters()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": _rng_states(),
        "losses": list(result.losses),
        "step_times": list(result.step_times),
        "tokens": result.tokens,
        "dev_losses": list(result.dev_losses),
        "best_step": result.best_step,
        "best_dev": best_dev,
        "best_state": best_state,
        "elapsed_s": elapsed_s,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def dev_loss(tuned: torch.nn.Module, dev: Sequence[Encoded], cfg: TrainConfig, pad: int,
             is_encoder_decoder: bool, decoder_start_id: int | None) -> float:
    """Mean per-sequence loss on the dev split (the early-stopping criterion)."""
    tuned.eval()
    device = next(tuned.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(dev), cfg.batch_size):
        chunk = dev[i : i + cfg.batch_size]
        batch = _to(collate_train(chunk, pad_id=pad, is_encoder_decoder=is_encoder_decoder,
                                  decoder_start_id=decoder_start_id), device)
        out = tuned(**{k: v for k, v in batch.items() if k != "labels"})
        loss, _ = sequence_loss(out.logits, batch["labels"], is_encoder_decoder=is_encoder_decoder,
                                reduction="sequence_sum")
        total += loss.item() * len(chunk)
        n += len(chunk)
    return total / max(n, 1)
