"""The paper's serving claim, measured (issue 11): N tasks served in mixed batches against N
per-task batches (N = 2, 4, 8; the same total of real E2E dev sources), throughput and latency,
on SmolLM2-135M with the fast decoder. The measurement is ``bench serve-bench``
(bench/commands/serve_bench.py says what is measured); this script runs it and rewrites the
section "## Mixed-task serving (...)" of reports/performance.md (``--no-write`` prints it).

Rerun: ``flock /tmp/prefix-bench.lock .venv/bin/python benchmarks/bench_mixed_task.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import perf_report  # benchmarks/perf_report.py (the script's folder is on sys.path)

from bench.commands.serve_bench import render, serve_bench

SECTION = "## Mixed-task serving (SmolLM2-135M, E2E dev, prefix length 10)"


def write_section(text: str) -> Path:
    return perf_report.write_section(SECTION, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--sources", type=int, default=32)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-write", action="store_true", help="print, do not edit reports/performance.md")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = serve_bench(model="smollm2-135m", tasks=args.tasks, sources=args.sources, beam=args.beam,
                       new_tokens=args.new_tokens, batch_size=16, rounds=args.rounds)
    cmd = (f"{perf_report.rerun_command('benchmarks/bench_mixed_task.py')} --tasks {' '.join(map(str, args.tasks))} "
           f"--sources {args.sources} --beam {args.beam} --new-tokens {args.new_tokens} --rounds {args.rounds}"
           + (f" --threads {args.threads}" if args.threads else ""))
    text = "\n".join([
        SECTION, "",
        (f"Machine: {platform.node() or 'host'}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
         f"({torch.get_num_threads()} threads). Load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
         "(the machine is shared with other virtual machines; nothing else of ours ran)."),
        f"Rerun: `{cmd}` (or `bench serve-bench` with the same options, which prints the table).", "",
        (f"{args.sources} E2E dev sources assigned round-robin to N tasks (N prefixes of one frozen SmolLM2-135M, "
         f"length 10, MLP width 512), beam {args.beam}, exactly {args.new_tokens} new tokens per source, batches of "
         "up to 16 sources. per-task: each task's sources in their own batches, task after task; mixed: batches "
         "drawn from every task, each row with its task's prefix. Latency: from the start until the source's "
         f"batch is done. Medians over {args.rounds} round(s), the modes alternating."), "",
        *render(rows), "",
    ])
    if args.no_write:
        print(text)
    else:
        print(f"wrote {write_section(text)}", file=sys.stderr)
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
