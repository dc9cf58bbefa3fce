"""Benchmark: one training step per method on SmolLM2-135M, 8 x 64 tokens (not a timed test).

For our prefix-tuning (length 10, MLP width 512), every other registered method among
full / top_k / adapter / lora (their default configs), PEFT's prefix-tuning
(``prefix_projection=True``, same length and width) and PEFT's LoRA (r=4, alpha=32,
dropout 0.1, q_proj/v_proj), it measures:

- the step time: forward and loss exactly as the shared loop computes them
  (``bench.train.forward_loss``: the output layer only on the labelled positions, the
  per-sequence sum), backward and an AdamW step; PEFT's variants as PEFT users run them
  (``model(input_ids, attention_mask, labels).loss``: HF's loss over the full logits); all variants live in one process, each on its own copy
  of the model, after two warm-up steps each; every round runs ours and PEFT's prefix back
  to back in ABBA order, then the others once in rotated order; the table gives each
  method's median and minimum step, and ratios as medians over rounds of per-round ratios
  (so slow drifts in load, the machine being shared, cancel);
- the peak memory: each variant in a fresh subprocess; after loading and wrapping, the
  kernel's peak-RSS counter (VmHWM) is reset through /proc/self/clear_refs, three steps
  run (the first allocates the optimizer state), and the table gives VmHWM minus the RSS
  before the steps: the memory a step adds on top of the loaded model (tracemalloc cannot
  see torch's allocations);
- the CPU's arithmetic floor: the model's matrix products on this batch, forward and
  input gradients only (2 x N x tokens + 2 x N x tokens for the N weights of its linear
  layers and tied output layer, plus attention's score and value products, forward x 3),
  timed as the same GEMM shapes on this machine in every round (so contention hits floor
  and steps alike); the matmul rate (GFLOP/s) is that FLOP count over that time.

Targets (issue #12): our prefix step at most 0.9 x PEFT's and at most 1.2 x the floor.

Run (from the repository root; minutes):

    flock /tmp/prefix-bench.lock .venv/bin/python benchmarks/bench_methods_step.py

It rewrites the section "## Method step time (SmolLM2-135M, 8 x 64 tokens)" of
reports/performance.md (``--no-write`` prints it instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import perf_report  # benchmarks/perf_report.py (the script's folder is on sys.path)
import torch

from bench.formatting import sequence_loss
from bench.models import load_model
from bench.registry import METHODS
from bench.train import forward_loss

MODEL = "smollm2-135m"
BATCH, SEQ = 8, 64
LENGTH, WIDTH = 10, 512
SECTION = "## Method step time (SmolLM2-135M, 8 x 64 tokens)"
COMMAND = perf_report.rerun_command("benchmarks/bench_methods_step.py")
OTHERS = ("full", "top_k", "adapter", "lora")
OURS = "prefix (ours)"
PEFT_PREFIX = "PEFT prefix"


# --------------------------------------------------------------------------- variants


def fixed_batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    """8 rows x 64 tokens in the loop's layout: 31 source tokens, the separator, 32 target
    tokens (labels), no padding. Token ids are drawn from a fixed generator."""
    g = torch.Generator().manual_seed(0)
    sep = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = torch.randint(100, len(tokenizer) - 100, (BATCH, SEQ), generator=g)
    ids[:, 31] = sep
    labels = ids.clone()
    labels[:, :32] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def build_registered(
    name: str, **cfg: Any
) -> Callable[[], tuple[torch.nn.Module, list[torch.nn.Parameter]]]:
    def build() -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
        torch.manual_seed(0)
        lm = load_model(MODEL)
        m = METHODS.get(name)()
        tuned = m.apply(lm.model, lm.tokenizer, m.Config(**cfg))
        return tuned, [p for _, p in tuned.trainable_parameters()]

    return build


def build_peft(kind: str) -> Callable[[], tuple[torch.nn.Module, list[torch.nn.Parameter]]]:
    def build() -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
        from peft import LoraConfig, PrefixTuningConfig, get_peft_model

        torch.manual_seed(0)
        lm = load_model(MODEL)
        if kind == "prefix":
            cfg: Any = PrefixTuningConfig(
                task_type="CAUSAL_LM",
                num_virtual_tokens=LENGTH,
                prefix_projection=True,
                encoder_hidden_size=WIDTH,
            )
        else:
            cfg = LoraConfig(
                task_type="CAUSAL_LM",
                r=4,
                lora_alpha=32,
                lora_dropout=0.1,
                target_modules=["q_proj", "v_proj"],
            )
        model = get_peft_model(lm.model, cfg)
        return model, [p for p in model.parameters() if p.requires_grad]

    return build


def variants() -> dict[str, Callable[[], tuple[torch.nn.Module, list[torch.nn.Parameter]]]]:
    out = {OURS: build_registered("prefix", length=LENGTH, mlp_width=WIDTH)}
    for name in OTHERS:
        if name in METHODS:
            out[name] = build_registered(name)
    out[PEFT_PREFIX] = build_peft("prefix")
    out["PEFT LoRA"] = build_peft("lora")
    return out


TARGET_PEFT, TARGET_FLOOR = 0.9, 1.2


class Stepper:
    """One variant: its model, optimizer and the fixed batch."""

    def __init__(self, build: Callable[[], tuple[torch.nn.Module, list[torch.nn.Parameter]]], peft: bool = False):
        self.peft = peft
        self.model, self.params = build()
        self.n_trained = sum(p.numel() for p in self.params)
        self.opt = torch.optim.AdamW(self.params, lr=5e-5, weight_decay=0.0)
        self.model.train()

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        t0 = time.perf_counter()
        if self.peft:
            loss = self.model(**batch).loss
        else:
            loss = forward_loss(self.model, batch, is_encoder_decoder=False, reduction="sequence_sum")
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- the floor


def gemm_shapes(model: torch.nn.Module) -> dict[tuple[int, int], int]:
    """(in, out) -> count over the model's linear layers (the output layer included)."""
    shapes: dict[tuple[int, int], int] = {}
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            key = (m.in_features, m.out_features)
            shapes[key] = shapes.get(key, 0) + 1
    return shapes


def attention_flops(config: Any) -> int:
    """Score and value products of every layer, forward (x1) and input gradients (x2)."""
    heads, dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    forward = 2 * 2 * BATCH * heads * SEQ * SEQ * dim
    return 3 * forward * config.num_hidden_layers


class Floor:
    """Times the model's GEMMs (forward and input-gradient products) on this machine."""

    def __init__(self, model: torch.nn.Module):
        self.shapes = gemm_shapes(model)
        self.attn_flops = attention_flops(model.config)
        tokens = BATCH * SEQ
        g = torch.Generator().manual_seed(1)
        self.operands = {
            (i, o): (
                torch.randn(tokens, i, generator=g),
                torch.randn(i, o, generator=g),
                torch.randn(tokens, o, generator=g),
                torch.randn(o, i, generator=g),
            )
            for i, o in self.shapes
        }
        self.linear_flops = sum(4 * tokens * i * o * n for (i, o), n in self.shapes.items())

    def measure(self, reps: int = 3) -> tuple[float, float]:
        """(floor seconds, GFLOP/s) from the median time of each shape's two products."""
        seconds = 0.0
        for (i, o), n in self.shapes.items():
            x, w, gy, wt = self.operands[(i, o)]
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                torch.mm(x, w)
                torch.mm(gy, wt)
                times.append(time.perf_counter() - t0)
            seconds += n * statistics.median(times)
        rate = self.linear_flops / seconds
        return seconds + self.attn_flops / rate, rate / 1e9


# --------------------------------------------------------------------------- memory


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(name: str) -> None:
    """Subprocess mode: peak memory a few steps of ``name`` add to the loaded model."""
    stepper = Stepper(variants()[name], peft=name.startswith("PEFT"))
    batch = fixed_batch(load_tokenizer())
    rss = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (Linux >= 4.0)
    for _ in range(3):
        stepper.step(batch)
    print(json.dumps({"peak_above_loaded": _status("VmHWM") - rss, "rss_loaded": rss}))


def load_tokenizer() -> Any:
    return load_model(MODEL).tokenizer


def peak_memory(name: str) -> dict[str, int] | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if res.returncode != 0:
        print(f"memory run for {name} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = perf_report.cpu_name()
    import peft
    import transformers

    return (
        f"{platform.node() or 'host'}: {cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, peft {peft.__version__}, "
        f"Python {platform.python_version()}"
    )


def write_section(text: str) -> Path:
    return perf_report.write_section(SECTION, text)


def render(results: dict[str, Any]) -> str:
    floor = results["floor_s"]
    lines = [
        SECTION,
        "",
        (
            f"Machine: {results['machine']}. Load average {results['load_before']:.2f} before, "
            f"{results['load_after']:.2f} after (other processes share these cores)."
        ),
        (
            f"Rerun: `{COMMAND}` ({results['rounds']} rounds after 2 warm-up steps per method; "
            "benchmarks/bench_methods_step.py says what is measured)."
        ),
        "",
        (
            f"Arithmetic floor (forward + input gradients of the model's matrix products on this batch, "
            f"{results['floor_gflop']:.1f} GFLOP): median {floor:.3f} s at {results['gflops']:.1f} GFLOP/s, "
            "measured on the model's own GEMM shapes in every round."
        ),
        (
            f"A loss over the full logits alone (sequence_loss over {BATCH} x {SEQ} x vocabulary logits, forward + "
            f"backward): median {results['loss_only_s']:.3f} s, outside the floor; the shared loop computes the "
            f"output layer and the loss on the {SEQ // 2} labelled positions only."
        ),
        "",
        (
            "| method | trained params | step median (s) | step min (s) | / PEFT prefix | / floor "
            "| peak memory above loaded model (MiB) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["steps"].items():
        mem = results["memory"].get(name)
        mem_s = f"{mem['peak_above_loaded'] / 2**20:.0f}" if mem else "n/a"
        lines.append(
            f"| {name} | {r['n_trained']:,} | {r['median']:.3f} | {r['min']:.3f} | "
            f"{r['vs_peft']:.3f} | {r['vs_floor']:.2f} | {mem_s} |"
        )
    ours = results["steps"][OURS]
    vs_peft, vs_floor = ours["vs_peft"], ours["vs_floor"]
    lines += [
        "",
        (
            "Ratios are medians over rounds of the round's step time over the round's PEFT-prefix step "
            "(ours and PEFT's prefix run back to back in ABBA order) or the round's floor. Our methods step "
            "with the shared loop's forward_loss (output layer on labelled positions only); PEFT's with "
            "model(..., labels).loss, as PEFT is used (its loss covers every position's logits)."
        ),
        (
            f"Targets: prefix (ours) / PEFT prefix = {vs_peft:.3f} (target <= {TARGET_PEFT}: "
            f"{'met' if vs_peft <= TARGET_PEFT else 'NOT met'}); prefix (ours) / floor = {vs_floor:.2f} "
            f"(target <= {TARGET_FLOOR}: {'met' if vs_floor <= TARGET_FLOOR else 'NOT met'})."
        ),
        (
            "top_k is below the floor because its backward stops at the lowest trained block; the floor "
            "assumes input gradients through every layer, which prefix-style methods need."
        ),
        (
            "Peak memory: kernel peak RSS (VmHWM, reset via /proc/self/clear_refs after loading) during 3 "
            "steps in a fresh subprocess per method, minus the RSS before them."
        ),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument(
        "--no-write", action="store_true", help="print, do not edit reports/performance.md"
    )
    ap.add_argument(
        "--no-memory", action="store_true", help="skip the per-method memory subprocesses"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0

    load_before = os.getloadavg()[0]
    builders = variants()
    steppers = {name: Stepper(build, peft=name.startswith("PEFT")) for name, build in builders.items()}
    tokenizer = load_tokenizer()
    batch = fixed_batch(tokenizer)
    floor = Floor(steppers[OURS].model.base)
    logits = torch.randn(BATCH, SEQ, len(tokenizer), requires_grad=True)

    def loss_only() -> float:
        t0 = time.perf_counter()
        loss, _ = sequence_loss(
            logits, batch["labels"], is_encoder_decoder=False, reduction="sequence_sum"
        )
        loss.backward()
        logits.grad = None
        return time.perf_counter() - t0

    for s in steppers.values():  # warm-up: allocator, optimizer state, one-time init
        s.step(batch)
        s.step(batch)
    # ours and PEFT's prefix in ABBA order every round (both see the same drift in load);
    # the other variants once per round, in rotated order
    times: dict[str, list[list[float]]] = {name: [] for name in steppers}
    floors, rates, losses = [], [], []
    names = list(steppers)
    others = [n for n in names if n not in (OURS, PEFT_PREFIX)]
    for r in range(args.rounds):
        a, b = (OURS, PEFT_PREFIX) if r % 2 == 0 else (PEFT_PREFIX, OURS)
        rotated = others[r % len(others) :] + others[: r % len(others)]
        this: dict[str, list[float]] = {name: [] for name in names}
        for name in [a, b, b, a, *rotated]:
            this[name].append(steppers[name].step(batch))
        for name in names:
            times[name].append(this[name])
        f, rate = floor.measure()
        floors.append(f)
        rates.append(rate)
        losses.append(loss_only())
        print(
            f"round {r + 1}/{args.rounds}: "
            + ", ".join(f"{n} {statistics.mean(this[n]):.2f}s" for n in names)
            + f", floor {f:.2f}s",
            file=sys.stderr,
        )

    def per_round(name: str, denominator: list[float]) -> float:
        """Median over rounds of (this round's mean step) / (the round's denominator)."""
        return statistics.median(
            statistics.mean(steps) / d for steps, d in zip(times[name], denominator)
        )

    peft_rounds = [statistics.mean(steps) for steps in times[PEFT_PREFIX]]
    results: dict[str, Any] = {
        "machine": machine(),
        "rounds": args.rounds,
        "load_before": load_before,
        "floor_s": statistics.median(floors),
        "gflops": statistics.median(rates),
        "floor_gflop": (floor.linear_flops + floor.attn_flops) / 1e9,
        "loss_only_s": statistics.median(losses),
        "steps": {
            name: {
                "median": statistics.median(x for steps in t for x in steps),
                "min": min(x for steps in t for x in steps),
                "vs_peft": per_round(name, peft_rounds),
                "vs_floor": per_round(name, floors),
                "n_trained": steppers[name].n_trained,
            }
            for name, t in times.items()
        },
    }
    del steppers  # free the copies before the memory subprocesses
    results["memory"] = {} if args.no_memory else {name: peak_memory(name) for name in names}
    results["load_after"] = os.getloadavg()[0]
    text = render(results)
    if args.no_write:
        print(text)
    else:
        print(f"wrote {write_section(text)}")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
