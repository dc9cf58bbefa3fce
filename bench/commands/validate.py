"""`bench validate SUITE...`: check suites (files or folders, recursively) without running."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from bench.errors import BenchError, ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate suites and show how they expand")
    p.add_argument("suites", nargs="+", help="suite files or folders (searched recursively)")
    p.set_defaults(handler=handle)


def suite_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        found = sorted(p.rglob("*.y*ml")) if p.is_dir() else [p]
        if not found:
            raise BenchError(f"{p}: no suite files (*.yaml) in this folder")
        out.extend(found)
    return out


def validate(path: Path) -> str:
    """One summary line for a valid suite; raises BenchError/ConfigError otherwise."""
    from bench.suite import expand, load_suite

    suite = load_suite(path)
    specs = expand(suite)
    methods = Counter(s.method_label for s in specs)
    datasets = Counter(s.data.name for s in specs)
    return (f"{path}: ok, {len(specs)} runs ({len(methods)} methods x {len(datasets)} datasets"
            f"{' x sizes/subsets/seeds' if len(specs) > len(methods) * len(datasets) else ''}; "
            f"model {', '.join(suite.models)})")


def handle(args: argparse.Namespace) -> int:
    problems: list[str] = []
    for path in suite_files(args.suites):
        try:
            print(validate(path))
        except ConfigError as e:
            problems.extend(e.problems)
        except BenchError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(problems)
    return 0
