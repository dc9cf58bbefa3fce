"""`bench report [SUITE]`: the paper's tables and figures from cached results (never trains)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import BenchError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render tables and figures from cached results")
    p.add_argument("suite", nargs="?", default=None,
                   help="a suite YAML file; omitted: one report per suite stored in --results")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.add_argument("--out", default="reports", help="output directory (default: reports/)")
    p.add_argument("--format", dest="fmt", default="md", metavar="md[,latex]",
                   help="md (default): the markdown report and figures; latex: also the tables as booktabs "
                        "LaTeX in <suite>.tex beside it (md,latex is the same)")
    p.set_defaults(handler=handle)


def check_out(out: Path) -> None:
    """``--out`` must be a folder or name one that can be made: not a file, nor under one."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == out else f"is under {p}, a file"
            raise BenchError(f"--out {out}: {what}, not a folder; name a folder for the report")


def handle(args: argparse.Namespace) -> int:
    from bench.report.render import parse_formats, report

    check_out(Path(args.out))
    formats = parse_formats(args.fmt)
    outputs = report(results=Path(args.results), suite=Path(args.suite) if args.suite else None,
                     out=Path(args.out), formats=formats)
    for o in outputs:
        print(f"{o.markdown} ({len(o.figures)} figure{'s' if len(o.figures) != 1 else ''})", file=sys.stderr)
        if o.latex is not None:
            print(f"{o.latex} (LaTeX tables)", file=sys.stderr)
    from bench.store import load_runs

    damaged = int((load_runs(Path(args.results))["status"] == "damaged").sum())
    if damaged:
        # Rendered without them, but a report with runs missing must not pass as complete.
        print(f"bench: {damaged} run(s) missing: damaged run folders were skipped (warnings above); "
              "`bench run` redoes them", file=sys.stderr)
        return 1
    return 0
