"""THE training loop, shared by every method: AdamW, linear schedule with warmup, gradient
accumulation, optional early stopping on dev loss, resumable checkpoints.

It never asks which method it trains: it optimizes ``tuned.trainable_parameters()`` on the
loss computed from ``tuned(...).logits`` on the labelled positions (``forward_loss``).

Checkpoints (every ``checkpoint_every`` steps, published atomically) hold everything the rest
of the run depends on: the trainable parameters, AdamW's state, the schedule, the position in
the data order (fixed up front from the seed; its digest is checked on resume), every random
generator (torch CPU and CUDA, numpy, random: dropout draws from torch's) and the early-stopping
state. A resumed run therefore reaches bit-identical parameters on CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import inspect
import json
import math
import os
import pickle
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
from bench.contention import OtherCPU
from bench.formatting import IGNORE, Encoded, collate_train, encode, sequence_loss
from bench.interfaces import Example

DATA_ORDER_SALT = 0xB5  # the batch order is numpy.random.default_rng([seed, DATA_ORDER_SALT])
CHECKPOINT_FORMAT = 3  # 3: tensors and plain values only (RNG states as tensors), read with weights_only=True
GROUP_MEGABATCH = 50  # batches per length-sorted group with train.group_by_length (as HF's Trainer)
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    peak_memory_mb: float = 0.0  # the process's peak during training (model included)
    memory_above_model_mb: float | None = None  # what training added above the loaded model
    # other processes' share of the machine's CPU while this attempt trained (bench.contention)
    other_cpu: float | None = None
    dev_losses: list[tuple[int, float]] = field(default_factory=list)
    # the dev loss of the untrained method (step 0): did training move it? Not a candidate
    # for early stopping (that keeps choosing among trained steps, as before)
    dev_loss_before: float | None = None
    best_step: int | None = None
    resumed_from: int | None = None
    stopped_at: int | None = None  # the step train.patience stopped at; None: all steps ran
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
            "memory_above_model_mb": (None if self.memory_above_model_mb is None
                                      else round(self.memory_above_model_mb, 1)),
            "train_other_cpu": self.other_cpu,
            "best_step": self.best_step,
            "resumed_from": self.resumed_from,
            "stopped_at": self.stopped_at,
            "discarded_checkpoint": self.discarded_checkpoint,
            "dev_losses": self.dev_losses,
            "dev_loss_before": self.dev_loss_before,
            # every step's training loss, for the report's training curves (not part of any key)
            "losses": [float(f"{x:.6g}") for x in self.losses],
        }


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on GPU; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the kernel, so the baseline RSS is what is live now.

    Runs share a process (``--jobs 1``); without this, pages freed by an earlier run stay
    resident and a later run reuses them without its RSS growing: its 'memory above the
    model' would read too low."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the baseline may include freed pages (a lower bound on the rise)


class MemoryPeak:
    """Peak memory of one run's training, and how far it rose above the loaded model.

    ``above_model_mb`` is the figure the efficiency tables show: what training adds on top of
    the model as loaded and wrapped by the method (activations, gradients, optimizer state).
    GPU: ``max_memory_allocated`` after a reset, minus what was allocated at the reset. CPU:
    the kernel's peak resident set size (VmHWM, reset through /proc/self/clear_refs) minus
    the RSS at entry; where the reset is refused, the RSS sampled every 10 ms (``ru_maxrss``
    is a process-lifetime maximum: in a process that ran full fine-tuning first, every later
    run would report full fine-tuning's peak). ``mb`` is the process total at its peak (the
    model, the tokenizer, the Python heap and everything else included).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False  # the kernel's peak counter was reset and is read at exit
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    @staticmethod
    def _vm_hwm() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise OSError("no VmHWM in /proc/self/status")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_bytes = max(self.peak_bytes, self._rss())

    def __enter__(self) -> Self:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = torch.cuda.memory_allocated(self.device)
        elif os.path.exists("/proc/self/statm"):
            _release_freed_memory()
            self.baseline_bytes = self.peak_bytes = self._rss()
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
                self._hwm = self._vm_hwm() <= self.baseline_bytes + 2**20
            except OSError:
                self._hwm = False
            if not self._hwm:
                self._thread = threading.Thread(target=self._sample, name="bench-memory-peak", daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return
        if self._hwm:
            self.peak_bytes = max(self.peak_bytes, self._vm_hwm())
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.baseline_bytes:
            self.peak_bytes = max(self.peak_bytes, self._rss())

    @property
    def mb(self) -> float:
        """The process's (GPU: the device's allocated) peak during training, model included."""
        if self.device.type != "cuda" and not self.baseline_bytes:
            return peak_memory_mb(self.device)  # no /proc: the lifetime maximum is all there is
        return self.peak_bytes / 2**20

    @property
    def above_model_mb(self) -> float | None:
        """The peak's rise above the loaded model (None where it cannot be measured)."""
        if self.device.type != "cuda" and not self.baseline_bytes:
            return None
        return max(0.0, (self.peak_bytes - self.baseline_bytes) / 2**20)


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


def _batch_order(n: int, steps: int, cfg: TrainConfig, seed: int,
                 lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Every micro-batch of the run, fixed up front from the seed (so resuming replays it).

    ``group_by_length``: each epoch's permutation is cut into mega-batches of
    ``GROUP_MEGABATCH`` batches, sorted by length inside each (so a batch pads to similar
    lengths), and the batches of the epoch are then shuffled (so lengths do not trend)."""
    rng = np.random.default_rng([seed, DATA_ORDER_SALT])
    need = steps * cfg.grad_accum
    batches: list[list[int]] = []
    while len(batches) < need:
        perm = rng.permutation(n).tolist()
        if not (cfg.group_by_length and lengths is not None):
            for i in range(0, n, cfg.batch_size):
                batches.append(perm[i : i + cfg.batch_size])
            continue
        mega = cfg.batch_size * GROUP_MEGABATCH
        epoch: list[list[int]] = []
        for i in range(0, n, mega):
            chunk = sorted(perm[i : i + mega], key=lambda j: -lengths[j])  # stable: ties keep the draw
            epoch += [chunk[k : k + cfg.batch_size] for k in range(0, len(chunk), cfg.batch_size)]
        batches += [epoch[k] for k in rng.permutation(len(epoch)).tolist()]
    return batches[:need]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The forward passes' autocast for ``train.precision`` (fp32: none)."""
    dtype = AMP_DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _inner_model(tuned: torch.nn.Module) -> torch.nn.Module:
    return getattr(tuned, "base", tuned)


def forward_loss(tuned: torch.nn.Module, batch: dict[str, torch.Tensor], *, is_encoder_decoder: bool,
                 reduction: str) -> torch.Tensor:
    """The loop's loss for one batch, computing the output layer only where it is needed.

    Decoder-only: only target tokens carry labels, so the logits of source and padding
    positions (batch x length x vocabulary: the largest activations of a small model) are
    never computed: the model's ``logits_to_keep`` takes a boolean [batch, length] mask of
    the positions that predict a labelled token and returns their logits flattened. The loss
    is the same number as ``sequence_loss`` on the full logits (tests/test_train_cost.py).
    Encoder-decoder targets are labelled everywhere but padding: nothing to leave out.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}  # HF would compute a second loss
    labels = batch["labels"]
    if is_encoder_decoder:
        out = tuned(**inputs)
        return sequence_loss(out.logits, labels, is_encoder_decoder=True, reduction=reduction)[0]
    # position t predicts token t + 1
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    if "logits_to_keep" in inspect.signature(_inner_model(tuned).forward).parameters:
        logits = tuned(**inputs, logits_to_keep=keep).logits
    else:
        logits = tuned(**inputs).logits
    if logits.dim() == 3:  # the model ignored the mask: select here (still saves the loss's work)
        logits = logits[keep]
    target = labels[:, 1:][keep[:, :-1]]
    tok = torch.nn.functional.cross_entropy(logits.float(), target, reduction="none")
    if reduction == "sequence_sum":
        rows = keep.nonzero()[:, 0]
        return torch.zeros(labels.size(0), dtype=tok.dtype, device=tok.device).index_add(0, rows, tok).mean()
    return tok.sum() / max(target.numel(), 1)


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
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Optimize ``tuned``'s trainable parameters on ``examples``; returns costs and losses.

    ``on_log(step, values)`` (experiment trackers) gets ``{"loss", "lr"}`` after each optimizer
    step (``step`` counted from 1; ``lr`` the rate that step used) and ``{"dev_loss"}`` after
    each dev evaluation (step 0: before training). It only reads: the numbers are the same
    with or without it."""
    if not examples:
        raise RunFailure("train", "no training examples")
    device = next(tuned.parameters()).device
    data = encode_all(tokenizer, examples, cfg, is_encoder_decoder)
    dev = encode_all(tokenizer, dev_examples, cfg, is_encoder_decoder) if cfg.early_stopping else []
    pad = tokenizer.pad_token_id
    steps = total_steps(len(data), cfg)
    order = _batch_order(len(data), steps, cfg, seed, [len(e.source_ids) + len(e.target_ids) for e in data])
    params = [p for _, p in tuned.trainable_parameters()]
    if not params:
        raise RunFailure("train", "the method left no trainable parameter")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # fp16's narrow range underflows small gradients: scale the loss (bf16 has fp32's range).
    scaler = torch.amp.GradScaler(device.type) if cfg.precision == "fp16" else None
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
            print(f"bench: warning: {checkpoint_path}: {why}", file=sys.stderr)  # one line; the run goes on
        else:
            with torch.no_grad():
                named = dict(tuned.trainable_parameters())
                for n, t in ck["params"].items():
                    named[n].copy_(t)
            opt.load_state_dict(ck["optimizer"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            sched.load_state_dict(ck["scheduler"])
            _set_rng_states(ck["rng"])
            start_step = ck["step"]
            result.losses = ck["losses"]
            result.step_times = ck["step_times"]
            result.tokens = ck["tokens"]
            result.dev_losses = ck["dev_losses"]
            result.dev_loss_before = ck.get("dev_loss_before")
            result.best_step = ck["best_step"]
            best_dev = ck["best_dev"]
            best_state = ck["best_state"]
            elapsed_before = ck["elapsed_s"]
            if ck.get("method_state") and hasattr(tuned, "load_training_state"):
                tuned.load_training_state(ck["method_state"])
            result.resumed_from = start_step

    # Optional hooks of a method whose training is more than its loss (PEFT's AdaLoRA: an
    # orthogonality penalty, and a rank budget reallocated after every optimizer step, from
    # the gradients still in place); see bench.interfaces.Tuned.
    penalty = getattr(tuned, "training_penalty", None)
    after_step = getattr(tuned, "after_optimizer_step", None)
    if cfg.early_stopping and dev and start_step == 0:
        # outside the timed loop; an eval-mode forward draws no random numbers, so the
        # training that follows is the same with or without it
        result.dev_loss_before = dev_loss(tuned, dev, cfg, pad, is_encoder_decoder, decoder_start_id)
        if on_log:
            on_log(0, {"dev_loss": result.dev_loss_before})
    tuned.train()
    # A `with` block: the CPU sampler thread is stopped (and the bar closed) also when a step
    # raises (a NaN loss, out of memory, a lost lock), not only when training ends.
    with MemoryPeak(device) as memory, OtherCPU() as others, tqdm(
            total=steps, initial=start_step, desc=desc, disable=not progress, leave=False, dynamic_ncols=True,
            file=sys.stderr) as bar:
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
                with autocast(device, cfg.precision):
                    loss = forward_loss(tuned, batch, is_encoder_decoder=is_encoder_decoder, reduction=cfg.loss)
                if faults.poisoned(f"train_step:{step}"):
                    loss = loss * float("nan")
                if not torch.isfinite(loss):
                    raise RunFailure("train", f"non-finite loss ({loss.item()}) at step {step}")
                extra = penalty() if penalty is not None else None
                scaled = (loss if extra is None else loss + extra) / cfg.grad_accum  # reported: the loss alone
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                step_loss += loss.item() / cfg.grad_accum
                result.tokens += int(batch["attention_mask"].sum()) + int(batch.get("decoder_attention_mask", torch.zeros(1)).sum())
            if scaler is not None:
                scaler.unscale_(opt)  # clip the true gradients
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if scaler is not None:
                scaler.step(opt)  # skips the step when a gradient overflowed, then lowers the scale
                scaler.update()
            else:
                opt.step()
            if after_step is not None:
                after_step(step)
            step_lr = float(opt.param_groups[0]["lr"])  # read before the schedule moves it on
            sched.step()
            result.losses.append(step_loss)
            result.step_times.append(time.perf_counter() - ts)
            bar.set_postfix(loss=f"{step_loss:.3f}", refresh=False)
            bar.update(1)
            if on_step:
                on_step(step, step_loss)
            done = step + 1
            if on_log:
                on_log(done, {"loss": step_loss, "lr": step_lr})
            if cfg.early_stopping and dev and (done % cfg.eval_every == 0 or done == steps):
                dl = dev_loss(tuned, dev, cfg, pad, is_encoder_decoder, decoder_start_id)
                result.dev_losses.append((done, dl))
                if on_log:
                    on_log(done, {"dev_loss": dl})
                if dl < best_dev:
                    best_dev, result.best_step = dl, done
                    best_state = {n: p.detach().clone() for n, p in tuned.trainable_parameters()}
                tuned.train()
                if cfg.patience is not None and done < steps and _evals_since_best(result) >= cfg.patience:
                    result.stopped_at = done
                    break
            if checkpoint_path is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < steps:
                _save_checkpoint(checkpoint_path, fingerprint, tuned, opt, sched, done, result, best_dev, best_state,
                                 elapsed_before + time.perf_counter() - t0, scaler)
                faults.checkpoint(f"checkpoint_saved:{done}")
        if best_state is not None:
            with torch.no_grad():
                named = dict(tuned.trainable_parameters())
                for n, t in best_state.items():
                    named[n].copy_(t)
        finish = getattr(tuned, "finish_training", None)
        if finish is not None:
            finish()
        tuned.eval()
        result.train_time_s = elapsed_before + time.perf_counter() - t0
    result.peak_memory_mb = memory.mb
    result.other_cpu = others.share
    result.memory_above_model_mb = memory.above_model_mb
    return result


def _evals_since_best(result: TrainResult) -> int:
    """Dev-loss evaluations after the best one (recomputed from the record, so a resumed run
    counts the evaluations before its checkpoint too)."""
    steps = [step for step, _ in result.dev_losses]
    if result.best_step not in steps:  # no finite dev loss yet
        return len(steps)
    return len(steps) - 1 - steps.index(result.best_step)


def _order_digest(order: Sequence[Sequence[int]]) -> str:
    return hashlib.sha256(json.dumps(order).encode()).hexdigest()[:16]


def _rng_states() -> dict[str, Any]:
    """The global generators' states as tensors and plain values, so that the checkpoint loads
    with ``weights_only=True`` (a pickled numpy array would need the unsafe unpickler)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = states["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))


def _read_checkpoint(path: Path, fingerprint: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint if it belongs to this very training run, else (None, why not)."""
    try:
        # Tensors and plain values only: a results folder may be on shared storage, and a planted
        # pickle would run its code in every process that resumes from it.
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # not a pickle at all, or a damaged one
            return None, "unreadable checkpoint (UnpicklingError: not a tensors-only checkpoint file)"
        return None, ("checkpoint refused: it holds more than tensors and plain values, so weights_only=True "
                      "will not load it (an older checkpoint format, or a file bench did not write); "
                      "training restarts from step 0")
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means: start over
        return None, f"unreadable checkpoint ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})"
    if not isinstance(ck, dict) or ck.get("fingerprint") != fingerprint:
        # Same train_key but another data order or parameter set: the code changed under a
        # VERSION that was not bumped. Training from step 0 is the only honest resumption.
        return None, "checkpoint of a different training setup (code changed without a VERSION bump?)"
    return ck, None


def _save_checkpoint(path: Path, fingerprint: dict[str, Any], tuned: torch.nn.Module, opt: Any, sched: Any,
                     step: int, result: TrainResult, best_dev: float, best_state: Any, elapsed_s: float,
                     scaler: Any = None) -> None:
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
        "dev_loss_before": result.dev_loss_before,
        "best_step": result.best_step,
        "best_dev": best_dev,
        "best_state": best_state,
        "elapsed_s": elapsed_s,
        "scaler": scaler.state_dict() if scaler is not None else None,
        # a method's own training state (AdaLoRA: importance scores, rank pattern), tensors only
        "method_state": tuned.training_state() if hasattr(tuned, "training_state") else None,
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
        with autocast(device, cfg.precision):
            loss = forward_loss(tuned, batch, is_encoder_decoder=is_encoder_decoder, reduction="sequence_sum")
        total += loss.item() * len(chunk)
        n += len(chunk)
    return total / max(n, 1)
