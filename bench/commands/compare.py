"""`bench compare RUN_A RUN_B`: paired bootstrap test of two stored runs on the same examples."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="paired bootstrap test between two stored runs (same examples)",
        description="Rescore two runs' stored predictions and test B against A with a paired "
        "bootstrap: both scores, delta = B - A, its 95%% interval, and p = P(B not better).",
    )
    p.add_argument("run_a", metavar="RUN_A", help="train key, unique key prefix, run folder, or label")
    p.add_argument("run_b", metavar="RUN_B", help="train key, unique key prefix, run folder, or label")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.add_argument("--split", default=None, help="only this split (default: every shared split)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from bench.compare import compare_runs
    from bench.errors import BenchError

    if args.n_boot < 1:
        raise BenchError(f"--n-boot must be at least 1, got {args.n_boot}")
    table = compare_runs(
        run_a=args.run_a,
        run_b=args.run_b,
        results=Path(args.results),
        split=args.split,
        n_boot=args.n_boot,
        seed=args.seed,
    )
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return 0
    view = table.drop(columns=["metric_id", "higher_is_better"]).rename(
        columns={"p_value": "p(B not better)"}
    )
    print(view.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0
