"""The ``bench`` command line. Parses only: each subcommand lives in ``bench/commands/<name>.py``
with ``add_parser(subparsers)`` that sets ``handler`` (args -> exit status); the work itself is
in keyword-only library functions that tests call directly."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from bench.errors import BenchError

# Explicit, ordered: one line per subcommand module under bench/commands/.
COMMANDS: tuple[str, ...] = (
    "run",
    "ls",
    "validate",
    "report",
    "regress",
    "data",
    "score",
    "compare",
    "params",
    "export",
    "serve_bench",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of ``only`` (``bench run`` need not import the
    modules of ``bench report``: a cached rerun's start-up is mostly imports)."""
    parser = argparse.ArgumentParser(
        prog="bench",
        description="prefix-bench: run, score and report lightweight fine-tuning suites (Li & Liang 2021).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [only] if only in COMMANDS else COMMANDS:
        try:
            module = importlib.import_module(f"bench.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"bench.commands.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


def _quiet_memory_errors() -> None:
    """A worker thread that cannot start or runs out of memory reports it through these hooks
    before the main thread sees its MemoryError; that one becomes the one-line error, so the
    threads' reports would only repeat it as noise."""
    import threading

    unraisable, thread_hook = sys.unraisablehook, threading.excepthook

    def drop_unraisable(u: Any) -> None:
        if not isinstance(u.exc_value, MemoryError):
            unraisable(u)

    def drop_thread(a: Any) -> None:
        if not isinstance(a.exc_value, MemoryError):
            thread_hook(a)

    sys.unraisablehook, threading.excepthook = drop_unraisable, drop_thread


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_memory_errors()
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MemoryError:
        return _out_of_memory(args.command)
    except ImportError as e:
        # Under a memory limit (ulimit -v) a native library cannot even be mapped.
        if "failed to map segment" not in str(e) and "Cannot allocate memory" not in str(e):
            raise
        return _out_of_memory(args.command)
    except BenchError as e:
        # One line per problem, no traceback: these are the user's to fix.
        for line in str(e).splitlines() or ["error"]:
            print(f"bench: error: {line}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


def _out_of_memory(command: str) -> int:
    """One line for a process that ran out of memory: what ran out, and what to lower."""
    module = sys.modules.get(f"bench.commands.{command}")
    hint = getattr(module, "MEMORY_HINT", "give it more memory or work on less at once")
    print(f"bench: error: `bench {command}` ran out of memory (the process hit its memory limit); {hint}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
