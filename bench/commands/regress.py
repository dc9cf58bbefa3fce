"""`bench regress --baseline PATH`: compare stored metrics with a baseline (the CI gate)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bench.regress import DEFAULT_TOLERANCE

    p = sub.add_parser("regress", help="compare results with a baseline; non-zero exit on regression")
    p.add_argument("--baseline", required=True, help="baseline parquet file, e.g. results/baselines/ci.parquet")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.add_argument("--suite", default=None, help="only this suite's runs (its tolerances apply)")
    p.add_argument("--update", action="store_true",
                   help="rewrite the baseline from the results (on purpose; refuses failed or missing runs)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"tolerance for metrics the suite gives none, in stored units (default {DEFAULT_TOLERANCE:g})")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import math

    from bench.errors import BenchError
    from bench.regress import regress

    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        raise BenchError(f"--tolerance must be a finite number >= 0, got {args.tolerance}")
    result, text = regress(baseline=Path(args.baseline), results=Path(args.results),
                           suite=Path(args.suite) if args.suite else None, update=args.update,
                           default_tolerance=args.tolerance)
    print(text, end="")
    if args.update:
        return 0
    assert result is not None
    return result.exit_code
