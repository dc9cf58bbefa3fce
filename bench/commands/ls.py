"""`bench ls`: list stored runs with status, method, dataset and key; ``--format csv|json``: every
stored metric value instead, one tidy row per run x split x group x metric (for plots of one's own)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list stored runs")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.add_argument("--failed", action="store_true",
                   help="only failed runs, with the stage that failed and why (`bench run --retry-failed` retries)")
    p.add_argument("--suite", default=None, help="only runs of this suite name")
    p.add_argument("--format", dest="fmt", default="table", metavar="table|csv|json",
                   help="table (default): one line per run; csv / json: one row per run x split x group x metric "
                        "with the run's label, method, dataset, size, subset, seed, model and keys")
    p.add_argument("--out", default=None, metavar="FILE", help="with --format csv|json: write FILE instead of stdout")
    p.set_defaults(handler=handle)


FORMATS = ("table", "csv", "json")
EXPORT_SCHEMA = 1  # of the JSON export ({"schema_version", "columns", "rows"})


def check_format(fmt: str, *, failed: bool, out: str | None) -> None:
    """One line for a format that does not exist or does not go with the other flags."""
    from bench.errors import BenchError, did_you_mean

    if fmt not in FORMATS:
        raise BenchError(f"--format: unknown format {fmt!r}{did_you_mean(fmt, FORMATS)}; one of {', '.join(FORMATS)}")
    if fmt != "table" and failed:
        raise BenchError(f"--format {fmt} lists scores, and failed runs have none; drop --failed or --format")
    if fmt == "table" and out:
        raise BenchError("--out writes --format csv or json; the table goes to the terminal")


def export_scores(*, results: Path, fmt: str, suite: str | None = None) -> tuple[str, int]:
    """The tidy metric rows of ``results`` as CSV or JSON text (``bench.report.data.tidy_scores``),
    and how many rows there are."""
    from bench.report.data import tidy_scores

    tidy = tidy_scores(results=results, suite=suite)
    if fmt == "csv":
        return tidy.to_csv(index=False, lineterminator="\n"), len(tidy)
    rows = [{k: _plain(v) for k, v in r.items()} for r in tidy.to_dict("records")]
    doc = {"schema_version": EXPORT_SCHEMA, "columns": list(tidy.columns), "rows": rows}
    return json.dumps(doc, indent=1) + "\n", len(tidy)


def _plain(value: object) -> object:
    """A JSON value: NaN / pandas' missing as null, numpy scalars as Python numbers."""
    import pandas as pd

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def list_runs(*, results: Path, failed: bool = False, suite: str | None = None) -> pd.DataFrame:
    from bench.store import load_runs

    runs = load_runs(results)
    if suite:
        runs = runs[runs["suite"] == suite]
    if failed:
        runs = runs[runs["status"] == "failed"]
    return runs


def handle(args: argparse.Namespace) -> int:
    check_format(args.fmt, failed=args.failed, out=args.out)
    if args.fmt != "table":
        text, n = export_scores(results=Path(args.results), fmt=args.fmt, suite=args.suite)
        if args.out is None:
            sys.stdout.write(text)
            return 0
        from bench.store import atomic_path

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        print(f"wrote {n} rows (run x split x group x metric) to {out}", file=sys.stderr)
        return 0
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
