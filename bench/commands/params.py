"""`bench params SUITE [--from-config]`: trained and stored parameter counts of every method
entry of a suite on its model(s), without training."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params", help="trained and stored parameter counts of a suite's methods, without training"
    )
    p.add_argument("suite", help="suite YAML file")
    p.add_argument(
        "--from-config",
        action="store_true",
        help="build the model from its configuration with random weights (no download; counts only)",
    )
    p.set_defaults(handler=handle)


def suite_params(*, suite: Path, from_config: bool = False) -> dict[str, pd.DataFrame]:
    """Model name -> its parameter table (``bench.params.param_table``), for every model of
    the suite."""
    from bench.params import param_table
    from bench.suite import load_suite

    loaded = load_suite(suite)
    entries = loaded.method_entries()
    models = getattr(loaded, "models", None) or (loaded.model,)
    return {m: param_table(model=m, entries=entries, from_config=from_config) for m in models}


def handle(args: argparse.Namespace) -> int:
    from bench.params import format_table

    tables = suite_params(suite=Path(args.suite), from_config=args.from_config)
    print("\n\n".join(format_table(t, model=m) for m, t in tables.items()))
    return 0
