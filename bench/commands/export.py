"""`bench export RUN --format peft|safetensors OUT`: a stored run's trained parameters for use elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's trained prefix / LoRA as a PEFT adapter (or its tensors + a JSON description)",
        description="Write a stored run's trained parameters to OUT. --format peft: a folder that "
        "PeftModel.from_pretrained(base, OUT) loads (prefix-tuning on decoder-only models, LoRA). "
        "--format safetensors: the stored tensors plus bench_adapter.json describing them (every method).",
    )
    p.add_argument("run", metavar="RUN", help="train key, unique key prefix, run folder, or a label naming one run")
    p.add_argument("out", metavar="OUT", type=Path, help="output folder (new or empty)")
    p.add_argument("--format", dest="fmt", default="peft", help="peft (default) or safetensors")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from bench.export import export_run

    out = export_run(run=args.run, out=args.out, fmt=args.fmt, results=Path(args.results))
    print(f"wrote {args.fmt} export of run {args.run} to {out}")
    return 0
