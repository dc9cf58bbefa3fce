"""Check: every stored run's metrics equal a fresh scoring of its stored predictions (not a test).

For each finished run of a results folder (default ``results/replication_cpu``), this loads
the evaluation split again from the data folder with the run's own dataset options (E2E's
``format: paper`` references, WebNLG's categories), pairs the stored predictions with the
sources by ``source_id``, scores them with the run's metric set and score groups (the
implementations the fixture tests tie to the official scripts), and prints the largest
absolute difference per run against ``metrics.parquet``. It also checks that the stored
references are the data folder's. Exit status 1 if any value differs by more than ``--tol``
or a run cannot be rescored.

Run (from the repository root; about 2 minutes for the 46 runs of the replication suite,
most of it the METEOR jar's start and WebNLG's TER):

    BENCH_DATA_DIR=../shared/data flock /tmp/prefix-bench.lock \\
        .venv/bin/python benchmarks/check_committed_scores.py [--results DIR] [--only KEY ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.datasets.paths import resolve_data_dir
from bench.registry import DATASETS
from bench.score_file import load_items
from bench.scoring import score_predictions


def rescore(run: Path, data: dict[str, Any], data_dir: Path | None, items_cache: dict[str, Any]
            ) -> tuple[float, int, str]:
    """(largest |stored - fresh|, values compared, note) for one run folder; ``data``: its spec's data."""
    predictions = pd.read_parquet(run / "predictions.parquet")
    stored = pd.read_parquet(run / "metrics.parquet")
    groups = DATASETS.get(data["name"])().score_groups
    worst, compared, notes = 0.0, 0, []
    for split, part in predictions.groupby("split", sort=False):
        key = json.dumps([data["name"], split, data.get("options", {})], sort_keys=True)
        if key not in items_cache:
            items_cache[key] = load_items(dataset=data["name"], split=str(split), data_dir=data_dir,
                                          options=data.get("options", {}))
        by_id = {it.source_id: it for it in items_cache[key]}
        ids = list(part["source_id"])
        missing = [i for i in ids if i not in by_id]
        if missing:
            return math.inf, 0, f"{len(missing)} stored source(s) not in the data folder's {split} split"
        items = [by_id[i] for i in ids]
        if data.get("max_eval_sources") is None and len(items) != len(by_id):
            notes.append(f"{split}: {len(items)} of {len(by_id)} sources")
        refs_differ = sum(tuple(r) != it.references for r, it in zip(part["references"], items))
        if refs_differ:
            notes.append(f"{split}: stored references differ on {refs_differ} source(s)")
        rows = score_predictions(hypotheses=list(part["prediction"]), items=items, metrics=data["metrics"],
                                 groups=groups, n_boot=0)
        fresh = {(r["group"], r["metric"]): r["value"] for r in rows}
        for r in stored[stored["split"] == split].itertuples(index=False):
            new = fresh.get((r.group, r.metric))
            if new is None:
                notes.append(f"{split}/{r.group}/{r.metric} not rescored")
                continue
            if math.isnan(r.value) and math.isnan(new):
                continue
            worst = max(worst, abs(float(r.value) - float(new)))
            compared += 1
    return worst, compared, "; ".join(notes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results/replication_cpu"))
    ap.add_argument("--data-dir", default=None, help="data folder (default: $BENCH_DATA_DIR)")
    ap.add_argument("--only", nargs="*", default=None, help="run keys to check (default: every finished run)")
    ap.add_argument("--tol", type=float, default=1e-9, help="largest allowed absolute difference")
    args = ap.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    runs = sorted(p for p in (args.results / "runs").iterdir() if (p / "metrics.parquet").is_file())
    if args.only:
        runs = [p for p in runs if p.name in set(args.only)]
    cache: dict[str, Any] = {}
    failed = 0
    print("| run | label | dataset | values | max abs diff | s | note |\n|---|---|---|---:|---:|---:|---|")
    for run in runs:
        meta = json.loads((run / "meta.json").read_text())
        if meta.get("status") != "done":
            continue
        spec = json.loads((run / "spec.json").read_text())["spec"]
        t0 = time.perf_counter()
        try:
            worst, n, note = rescore(run, spec["data"], data_dir, cache)
        except Exception as e:  # noqa: BLE001 -- report the run and go on: one bad run must not hide the others
            worst, n, note = math.inf, 0, f"{type(e).__name__}: {e}"
        bad = not worst <= args.tol or n == 0
        failed += bad
        print(f"| `{run.name}` | {spec['method_label']} | {spec['data']['name']} | {n} | {worst:.2e} | "
              f"{time.perf_counter() - t0:.1f} | {'FAIL ' if bad else ''}{note} |", flush=True)
    print(f"\n{len(runs)} run folder(s); {failed} failed (tolerance {args.tol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
