"""`bench validate SUITE...`: check suites (files or folders, recursively) without running."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from bench.errors import BenchError, ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate suites and show how they expand")
    p.add_argument("suites", nargs="+", help="suite files or folders (searched recursively)")
    p.add_argument("--data-dir", default=None,
                   help="data folder the filters and train sizes are checked against (default: $BENCH_DATA_DIR)")
    p.set_defaults(handler=handle)


def suite_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        found = sorted(p.rglob("*.y*ml")) if p.is_dir() else [p]
        if not found:
            raise BenchError(f"{p}: no suite files (*.yaml) in this folder")
        out.extend(found)
    return out


def validate(path: Path, data_dir: Path | None = None) -> str:
    """One summary line for a valid suite; raises BenchError/ConfigError otherwise. What could
    not be checked here is printed as warnings (stderr)."""
    from bench.checks import validate_suite

    warnings: list[str] = []
    try:
        suite, specs = validate_suite(path, data_dir=data_dir, warnings=warnings)
    finally:
        for w in warnings:
            print(f"bench: warning: {w}", file=sys.stderr)
    methods = Counter(s.method_label for s in specs)
    datasets = Counter(s.data.name for s in specs)
    return (f"{path}: ok, {len(specs)} runs ({len(methods)} methods x {len(datasets)} datasets"
            f"{' x sizes/subsets/seeds' if len(specs) > len(methods) * len(datasets) else ''}; "
            f"model {', '.join(suite.models)})")


def handle(args: argparse.Namespace) -> int:
    from bench.datasets.paths import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    problems: list[str] = []
    for path in suite_files(args.suites):
        try:
            print(validate(path, data_dir))
        except ConfigError as e:
            problems.extend(e.problems)
        except BenchError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(problems)
    return 0
