"""`bench score`: score a system output file with a dataset's official metrics (JSON on stdout)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# What `bench.cli` tells a user whose `bench score` ran out of memory: the bootstrap holds
# n_boot resampled statistics per metric, and the metrics' models and the JVM need their share.
MEMORY_HINT = ("lower --n-boot (bootstrap resamples) or score without --ci, or raise the process's memory "
               "limit (ulimit -v, or the job's memory request)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score an output file (one line per unique source) with the dataset's metrics",
        description="Score a system's output file with the dataset's official metric set; "
        "prints the scores as JSON (official scales: E2E BLEU/METEOR/ROUGE-L 0-1, "
        "WebNLG/DART BLEU 0-100 and METEOR/TER 0-1).",
    )
    p.add_argument("--dataset", required=True, help="registered dataset (e2e, webnlg, dart, xsum)")
    p.add_argument("--split", required=True, help="split the file answers (dev, test)")
    p.add_argument("--hyp", required=True, type=Path, help="UTF-8 text, one line per unique source")
    p.add_argument("--data-dir", default=None, help="data directory (default: $BENCH_DATA_DIR)")
    p.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="dataset option, as a suite sets it (repeatable); e.g. format=paper scores E2E against the "
        "references a `format: paper` run was scored with",
    )  # fmt: skip
    p.add_argument("--ci", action="store_true", help="add 95%% bootstrap intervals (<metric>_ci95)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for --ci")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed for --ci")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from bench.commands.data import parse_options
    from bench.datasets.paths import resolve_data_dir
    from bench.errors import BenchError
    from bench.score_file import score_file

    if args.n_boot < 1:
        raise BenchError(f"--n-boot must be at least 1, got {args.n_boot}")
    scores = score_file(
        dataset=args.dataset,
        split=args.split,
        hyp=args.hyp,
        data_dir=resolve_data_dir(args.data_dir),
        ci=args.ci,
        n_boot=args.n_boot,
        seed=args.seed,
        options=parse_options(args.option),
    )
    print(json.dumps(scores, indent=2))
    return 0
