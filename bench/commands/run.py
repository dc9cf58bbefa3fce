"""`bench run SUITE`: train, decode and score every run of a suite that is not cached."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.runner import RunOutcome


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a suite (cached runs are skipped)")
    p.add_argument("suite", help="a suite YAML file, e.g. suites/quickstart.yaml")
    p.add_argument("--results", default="results", help="results directory (default: results/)")
    p.add_argument("--data-dir", default=None, help="folder of the official data files (or env BENCH_DATA_DIR)")
    p.add_argument("--force", action="store_true", help="redo runs even when cached")
    p.add_argument("--retry-failed", action="store_true",
                   help="retry runs recorded as failed (from the stage that failed; trained parameters are kept)")
    p.add_argument("--only", nargs="+", default=None, metavar="LABEL", help="only these method labels")
    p.add_argument("--where", nargs="+", default=None, metavar="KEY=V[,V]",
                   help="only runs whose dataset / train_size / subset / seed / model is one of the values "
                        "(e.g. --where subset=0 train_size=50,100): run a grid's cells in the order you choose")
    p.add_argument("--jobs", type=int, default=1,
                   help="local worker processes (default 1); with several GPUs, one run per GPU")
    p.add_argument("--backend", default="local", choices=["local", "dask"], help="local processes or a Dask cluster")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://HOST:PORT (with --backend dask)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (CI logs)")
    p.add_argument("--log-to", action="append", default=None, metavar="TRACKER[,TRACKER]",
                   help="also log training (loss, lr, dev loss), spec, metrics and cost to tensorboard, wandb "
                        "and/or mlflow (offline by default; adds to the suite's log_to; never changes a run key)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    outcomes = run_suite(suite=Path(args.suite), results=Path(args.results), data_dir=args.data_dir,
                         force=args.force, retry_failed=args.retry_failed, only=args.only, where=args.where, jobs=args.jobs,
                         backend=args.backend, scheduler=args.scheduler, quiet=args.quiet, log_to=args.log_to)
    return 1 if any(o.status in ("failed", "weightless") for o in outcomes) else 0


WHERE_KEYS = {
    "dataset": lambda sp: sp.data.name,
    "train_size": lambda sp: sp.data.train_size,
    "subset": lambda sp: sp.data.subset,
    "seed": lambda sp: sp.seed,
    "model": lambda sp: sp.model,
}


def select_where(specs: list, where: list[str]) -> list:
    """The runs matching every ``KEY=V[,V]`` condition (values compared as text)."""
    from bench.errors import BenchError, did_you_mean

    for cond in where:
        key, sep, values = cond.partition("=")
        if not sep or not values:
            raise BenchError(f"--where: expected KEY=VALUE[,VALUE], got {cond!r}")
        if key not in WHERE_KEYS:
            raise BenchError(f"--where: unknown key {key!r}{did_you_mean(key, list(WHERE_KEYS))} "
                             f"(one of {', '.join(WHERE_KEYS)})")
        allowed = set(values.split(","))
        specs = [sp for sp in specs if str(WHERE_KEYS[key](sp)) in allowed]
    return specs


def _expand(suite: Path, data_dir: str | None) -> tuple[str, list[str], list, tuple[str, ...]]:
    """Load and validate the suite (its models and data too), expand it, and remember the
    expansion for the next rerun. Returns (name, models, specs, the suite's log_to)."""
    from bench import expansion_cache
    from bench.checks import validate_suite
    from bench.datasets.paths import resolve_data_dir
    from bench.errors import BenchError
    from bench.models import check_available

    warnings: list[str] = []

    def warn() -> None:
        for w in warnings:
            print(f"bench: warning: {w}", file=sys.stderr)

    try:
        s, specs = validate_suite(suite, data_dir=resolve_data_dir(data_dir), warnings=warnings)
    except BenchError:
        warn()
        raise
    # A model `bench validate` could only warn about (hub unreachable, nothing cached) stops the
    # run here with its one-line fix; its "not checked" warning would only repeat that line.
    for model in s.models:
        check_available(model)
    warn()
    expansion_cache.save(suite, s.name, list(s.models), specs)
    return s.name, list(s.models), specs, s.log_to


def _select(specs: list, suite: Path, results: Path, models: list[str], only: list[str] | None,
            where: list[str] | None, force: bool, retry_failed: bool) -> tuple[list, list, list[RunOutcome]]:
    """(selected specs, runs to do, outcomes of the runs skipped) for this command line."""
    from bench import store
    from bench.errors import BenchError
    from bench.models import check_available
    from bench.runner import RunOutcome, cache_state, check_results_writable

    for model in models:
        check_available(model)  # one line, nothing written, before any run starts
    if only:
        labels = {sp.method_label for sp in specs}
        unknown = [x for x in only if x not in labels and not any(lb.startswith(x + "[") for lb in labels)]
        if unknown:
            raise BenchError(f"--only: no method labelled {unknown[0]!r} in {suite} (labels: {', '.join(sorted(labels))})")
        specs = [sp for sp in specs if sp.method_label in only or sp.method_label.split("[")[0] in only]
    if where:
        specs = select_where(specs, where)
    check_results_writable(results)
    specs = store.adopt_stored_keys(specs, results)
    todo, skipped = [], []
    for sp in specs:
        state = "new" if force else cache_state(sp, results)
        if state == "scored":
            store.tidy_finished(store.run_dir(results, sp.train_key))
            skipped.append(RunOutcome(sp.train_key, sp.method_label, "cached"))
        elif state == "weightless":
            from bench.runner import WEIGHTLESS

            skipped.append(RunOutcome(sp.train_key, sp.method_label, "weightless", error=WEIGHTLESS))
        elif state == "failed" and not retry_failed:
            skipped.append(RunOutcome(sp.train_key, sp.method_label, "failed",
                                      error="failed earlier (see `bench ls --failed`; --retry-failed retries)"))
        else:
            todo.append(sp)
    return specs, todo, skipped


def run_suite(*, suite: Path, results: Path = Path("results"), data_dir: str | None = None, force: bool = False,
              retry_failed: bool = False, only: list[str] | None = None, where: list[str] | None = None,
              jobs: int = 1, backend: str = "local",
              scheduler: str | None = None, quiet: bool = False,
              log_to: list[str] | None = None) -> list[RunOutcome]:
    """Validate the whole suite first (nothing under results/ is touched on error), then run.

    ``log_to``: experiment trackers (``--log-to``, comma lists allowed) on top of the suite's
    ``log_to:``; checked (known, library installed) before any run, never part of a run key.

    A rerun whose runs are all cached reads the suite's stored expansion
    (``bench.expansion_cache``) and never imports torch or transformers; as soon as one run
    has work to do, the suite is loaded and expanded for real."""
    from bench import expansion_cache
    from bench.errors import BenchError

    t0 = time.perf_counter()
    if jobs < 1:
        raise BenchError(f"--jobs must be >= 1, got {jobs}")  # before anything is printed or written
    trackers: tuple[str, ...] = ()
    if log_to:
        from bench.trackers import check_trackers, parse_log_to

        trackers = parse_log_to(log_to)
        check_trackers(trackers)
    cached = None if force else expansion_cache.load(suite)
    if cached is not None:
        name, models, specs = cached
        specs, todo, skipped = _select(specs, suite, results, models, only, where, force, retry_failed)
    if cached is None or todo:
        name, models, specs, suite_log_to = _expand(suite, data_dir)
        if suite_log_to:
            from bench.trackers import check_trackers

            check_trackers(suite_log_to, where=f"{suite}: log_to")
            trackers = tuple(dict.fromkeys(suite_log_to + trackers))
        specs, todo, skipped = _select(specs, suite, results, models, only, where, force, retry_failed)

    def report(o: RunOutcome) -> None:
        line = f"[{o.status}] {o.label} {o.train_key}"
        if o.seconds:
            line += f" {o.seconds:.1f}s"
        if o.summary:
            line += f" {o.summary}"
        if o.error:
            line += f" ({o.error})"
        print(line, file=sys.stderr)

    if not quiet:
        print(f"bench: {name}: {len(specs)} runs, {len(skipped)} cached or failed before, {len(todo)} to do",
              file=sys.stderr)
    from bench.execute import execute

    done = execute(todo, results=results, data_dir=data_dir, jobs=jobs, backend=backend, scheduler=scheduler,
                   force=force, retry_failed=retry_failed, progress=not quiet, on_outcome=report, log_to=trackers)
    outcomes = skipped + done
    for o in skipped:
        if o.status in ("failed", "weightless"):
            report(o)
    counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "cached", "failed", "weightless")}
    needs = f", {counts['weightless']} need their weights" if counts["weightless"] else ""
    print(f"bench: {name}: {len(outcomes)} runs: {counts['done']} done, {counts['cached']} cached, "
          f"{counts['failed']} failed{needs} ({time.perf_counter() - t0:.1f}s); results in {results}", file=sys.stderr)
    if counts["failed"]:
        print(f"bench: see why with `bench ls --failed --results {results}`; retry with --retry-failed",
              file=sys.stderr)
    return outcomes
