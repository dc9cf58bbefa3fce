"""`bench ls`: list stored runs with status, method, dataset and key."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list stored runs")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.add_argument("--failed", action="store_true",
                   help="only failed runs, with the stage that failed and why (`bench run --retry-failed` retries)")
    p.add_argument("--suite", default=None, help="only runs of this suite name")
    p.set_defaults(handler=handle)


def list_runs(*, results: Path, failed: bool = False, suite: str | None = None) -> pd.DataFrame:
    from bench.store import load_runs

    runs = load_runs(results)
    if suite:
        runs = runs[runs["suite"] == suite]
    if failed:
        runs = runs[runs["status"] == "failed"]
    return runs


def handle(args: argparse.Namespace) -> int:
    runs = list_runs(results=Path(args.results), failed=args.failed, suite=args.suite)
    if runs.empty:
        print(f"no {'failed ' if args.failed else ''}runs in {args.results}")
        return 0
    cols = ["status", "method_label", "method", "dataset", "train_size", "subset", "seed", "train_key"]
    if args.failed:
        cols += ["attempts", "stage", "error"]
    view = runs[cols].astype(object).rename(columns={"method_label": "label"}).fillna("-")
    print(view.to_string(index=False, max_colwidth=160))
    for r in runs[runs["status"] == "damaged"].to_dict("records"):
        print(f"bench: damaged: {r['error']} (`bench run` redoes what is damaged)", file=sys.stderr)
    return 0
