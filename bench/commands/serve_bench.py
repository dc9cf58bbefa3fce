"""`bench serve-bench`: measure the paper's serving claim (Li & Liang 2021, Section 4: one frozen
LM serves several tasks' prefixes in one batch) on this machine.

N tasks (N prefixes of one base model, randomly initialised: the cost does not depend on what
they learned) share the same total of real E2E dev sources (assigned round-robin). Served per
task, each task's sources are decoded in their own batches, one task after the other; served
mixed, batches of the same size draw from every task (each row carries its task's prefix;
``bench.decode.decode`` with a list of tasks). Every source gets exactly ``--new-tokens`` new
tokens in both modes (equal work). Reported per N: wall time, sources per second, and the
latency of a source (from the start until its batch is done: mean and max).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve-bench", help="time mixed-task batches against per-task batches (the serving claim)")
    p.add_argument("--model", default="smollm2-135m", help="base model (default smollm2-135m)")
    p.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8], help="numbers of tasks N (default 2 4 8)")
    p.add_argument("--sources", type=int, default=32, help="total E2E dev sources, for every N (default 32)")
    p.add_argument("--beam", type=int, default=5, help="beam size (default 5)")
    p.add_argument("--new-tokens", type=int, default=20, help="new tokens per source, forced (default 20)")
    p.add_argument("--batch-size", type=int, default=16, help="sources per batch in both modes (default 16)")
    p.add_argument("--length", type=int, default=10, help="prefix length of every task (default 10)")
    p.add_argument("--rounds", type=int, default=1, help="rounds; the two modes alternate (default 1)")
    p.add_argument("--data-dir", default=None, help="official data folder (default: BENCH_DATA_DIR)")
    p.set_defaults(handler=handle)


def serve_bench(*, model: str, tasks: list[int], sources: int, beam: int, new_tokens: int, batch_size: int,
                length: int = 10, rounds: int = 1, data_dir: str | Path | None = None,
                items: list[Any] | None = None) -> list[dict[str, Any]]:
    """One row per (N, mode) with medians over rounds: seconds, sources_per_s, latency_mean_s, latency_max_s."""
    from bench.config import DecodeConfig
    from bench.decode import decode
    from bench.models import load_model
    from bench.registry import METHODS

    bad = [n for n in tasks if n < 1]
    if bad or sources < 1 or beam < 1 or new_tokens < 1 or batch_size < 1 or rounds < 1:
        raise BenchError("serve-bench: --tasks, --sources, --beam, --new-tokens, --batch-size and --rounds must be >= 1")
    if items is None:
        import bench.datasets  # noqa: F401  (registers the datasets)
        from bench.datasets.paths import resolve_data_dir
        from bench.interfaces import group_references
        from bench.registry import DATASETS

        found = resolve_data_dir(str(data_dir) if data_dir is not None else None)
        items = group_references(DATASETS.get("e2e")().load("dev", data_dir=found, options={}))[:sources]
    lm = load_model(model)
    m = METHODS.get("prefix")()
    base = copy.deepcopy(lm.model)
    all_tasks = []
    for k in range(max(tasks)):
        torch.manual_seed(1000 + k)  # each task its own prefix, on the one shared base model
        all_tasks.append(m.apply(base, lm.tokenizer, m.Config(length=length, mlp_width=512)).eval())
    cfg = DecodeConfig(beam_size=beam, max_new_tokens=new_tokens, batch_size=batch_size)
    kw = {"cfg": cfg, "is_encoder_decoder": False, "max_source_tokens": 256, "progress": False,
          "min_new_tokens": new_tokens}

    def per_task(n: int) -> tuple[float, list[float]]:
        latency: list[float] = []
        t0 = time.perf_counter()
        for k in range(n):
            mine = [it for i, it in enumerate(items) if i % n == k]
            offset = time.perf_counter() - t0
            stats: dict[str, Any] = {}
            decode(all_tasks[k], lm.tokenizer, mine, stats=stats, **kw)
            latency += [offset + s for s in stats["done_s"]]
        return time.perf_counter() - t0, latency

    def mixed(n: int) -> tuple[float, list[float]]:
        stats: dict[str, Any] = {}
        t0 = time.perf_counter()
        decode(all_tasks[:n], lm.tokenizer, items, task_of_item=[i % n for i in range(len(items))], stats=stats,
               **kw)
        return time.perf_counter() - t0, stats["done_s"]

    rows = []
    for n in tasks:
        runs: dict[str, list[tuple[float, list[float]]]] = {"per-task": [], "mixed": []}
        for r in range(rounds):
            order = [("per-task", per_task), ("mixed", mixed)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                runs[name].append(fn(n))
        for name, got in runs.items():
            secs = statistics.median(s for s, _ in got)
            rows.append({"tasks": n, "mode": name, "sources": len(items), "seconds": secs,
                         "sources_per_s": len(items) / secs,
                         "latency_mean_s": statistics.median(statistics.mean(lat) for _, lat in got),
                         "latency_max_s": statistics.median(max(lat) for _, lat in got),
                         "rounds_s": [s for s, _ in got]})
    return rows


def render(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| tasks N | mode | seconds | sources/s | latency mean (s) | latency max (s) | mixed speed-up |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    by = {(r["tasks"], r["mode"]): r for r in rows}
    for r in rows:
        base = by.get((r["tasks"], "per-task"))
        speed = f"{base['seconds'] / r['seconds']:.2f}x" if r["mode"] == "mixed" and base else ""
        out.append(f"| {r['tasks']} | {r['mode']} | {r['seconds']:.1f} | {r['sources_per_s']:.2f} | "
                   f"{r['latency_mean_s']:.1f} | {r['latency_max_s']:.1f} | {speed} |")
    return out


def handle(args: argparse.Namespace) -> int:
    rows = serve_bench(model=args.model, tasks=args.tasks, sources=args.sources, beam=args.beam,
                       new_tokens=args.new_tokens, batch_size=args.batch_size, length=args.length,
                       rounds=args.rounds, data_dir=args.data_dir)
    print("\n".join(render(rows)))
    return 0
