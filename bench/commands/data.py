"""`bench data`: the registered datasets (`ls`) and their statistics (`describe`)."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from bench.errors import BenchError, ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list datasets and describe their splits")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="{ls,describe}")

    ls = data_sub.add_parser(
        "ls", help="registered datasets, their splits and where they load from"
    )
    ls.add_argument("--data-dir", default=None, help="data folder (default: $BENCH_DATA_DIR)")
    ls.set_defaults(handler=handle_ls)

    d = data_sub.add_parser(
        "describe", help="per split: examples, unique sources, refs per source, mean token lengths"
    )
    d.add_argument(
        "name",
        help="dataset name (see `bench data ls`), or a suite file: each of its datasets with the "
        "suite's options (a custom dataset's files)",
    )
    d.add_argument("--split", default=None, help="one split only (default: all)")
    d.add_argument(
        "--tokenizer",
        default=None,
        help="model whose tokenizer counts tokens: any name `load_model` accepts "
        "(default: smollm2-135m; the paper used GPT-2's, unavailable offline)",
    )
    d.add_argument("--data-dir", default=None, help="data folder (default: $BENCH_DATA_DIR)")
    d.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="dataset option, e.g. format=paper (repeatable)",
    )  # fmt: skip
    d.set_defaults(handler=handle_describe)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["format=paper", "n_train_mrs=50"]`` -> ``{"format": "paper", "n_train_mrs": 50}``."""
    import yaml

    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--option {item!r}: expected KEY=VALUE")
        try:
            # A suite's YAML scalars, so "50" is an int and "[2, 5]" a list, as in a suite file.
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise BenchError(f"--option {item!r}: value is not a YAML scalar or list") from None
    return options


def handle_ls(args: argparse.Namespace) -> int:
    from bench.datasets.paths import resolve_data_dir
    from bench.datastats import list_datasets

    data_dir = resolve_data_dir(args.data_dir)
    print(list_datasets(data_dir=data_dir).to_string(index=False))
    if data_dir is None:
        print("\nno data directory: pass --data-dir or set BENCH_DATA_DIR to load local files")
    return 0


def format_describe(df: pd.DataFrame) -> str:
    """The table as printed: counts with thousands separators, means to one decimal."""
    view = df.drop(columns=["dataset"]).copy()
    for col in ("examples", "sources"):
        view[col] = [f"{v:,}" if pd.notna(v) else "-" for v in view[col]]
    for col in ("refs_per_source", "source_tokens", "target_tokens"):
        view[col] = [f"{v:.1f}" if pd.notna(v) else "-" for v in view[col]]
    # Notes (why a split is missing) are long: below the table, not in a padded column.
    notes = [f"{split}: {note}" for split, note in zip(view["split"], view["note"]) if note]
    return "\n".join([view.drop(columns=["note"]).to_string(index=False), *notes])


def handle_describe(args: argparse.Namespace) -> int:
    import sys

    from bench.datasets.paths import resolve_data_dir
    from bench.datastats import DEFAULT_TOKENIZER, PAPER_TABLE1, describe
    from bench.registry import DATASETS

    # Every cheap check before the tokenizer load, which takes seconds for a real model.
    data_dir = resolve_data_dir(args.data_dir)
    options = parse_options(args.option)
    targets = suite_datasets(args.name, options) if args.name.endswith((".yaml", ".yml")) else None
    if targets is None:
        targets = [(args.name, options, args.name + (f" ({', '.join(args.option)})" if args.option else ""))]
    for name, opts, _ in targets:
        check = getattr(DATASETS.get(name), "check_options", None)
        if check is not None:
            check(opts)
    tokenizer = args.tokenizer or DEFAULT_TOKENIZER
    print(f"loading the tokenizer of {tokenizer} ...", file=sys.stderr)
    failed: list[str] = []
    for i, (name, opts, title) in enumerate(targets):
        df = describe(
            name,
            split=args.split,
            tokenizer=tokenizer,
            data_dir=data_dir,
            options=opts,
            progress=True,
        )
        print(("\n" if i else "") + title)
        print(format_describe(df))
        failed += [f"{title} {split}: did not load: {note}" for split, note in zip(df["split"], df["note"]) if note]
    note = (
        f"\nlengths: mean tokens of {tokenizer}'s tokenizer over examples, ' ' + text, no specials"
    )
    if args.tokenizer is None:
        note += (
            "\n(the default tokenizer: the paper's Table 1 counted GPT-2 tokens, but GPT-2's "
            "tokenizer needs the hub; choose another with --tokenizer)"
        )
    print(note)
    for name in dict.fromkeys(t[0] for t in targets):
        if name in PAPER_TABLE1:
            print(PAPER_TABLE1[name])
    if failed:
        # After everything that loaded is printed: a script must still see that a split did not.
        raise ConfigError(failed)
    return 0


def suite_datasets(path: str, options: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(dataset, options, title) of each dataset entry of a suite file, with the suite's options
    (a custom dataset's paths resolved from the suite's folder); ``-o`` is refused beside it."""
    from bench.suite import load_suite

    if options:
        raise BenchError("--option: a suite file sets its datasets' options; edit the suite instead")
    suite = load_suite(path)
    out, seen = [], set()
    for i, d in enumerate(suite.datasets):
        ident = (d.name, repr(sorted(d.options.items())))
        if ident not in seen:
            seen.add(ident)
            out.append((d.name, dict(d.options), f"{d.name} ({path}, datasets[{i}])"))
    return out
