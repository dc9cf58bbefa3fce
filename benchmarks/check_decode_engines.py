"""Do the two decoding engines agree on a real trained run? (issue 11, for issue 10's results)

Loads one stored run (its spec and ``trainable.safetensors``), decodes the same evaluation
sources with transformers' ``generate`` and with the fast engine (bench/beam.py) under the
run's decoding settings and batch size, and prints how many hypotheses are token-for-token
identical, the first differences, and both engines' times. It also says how many of the
``generate`` hypotheses equal the run's stored predictions (the full split was decoded in other
batches, and on CPU a row's floats can depend on its batch's size, so this is informative only).

    python benchmarks/check_decode_engines.py suites/replication_cpu.yaml \
        --results results/replication_cpu --run 1660831 --sources 64

Exit status: 0 when every hypothesis agrees, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench import store
from bench.errors import BenchError
from bench.pipeline import (
    _data_dir,
    _load_trainable,
    base_model,
    build_tuned,
    decode_items,
    load_eval_items,
)
from bench.suite import expand, load_suite


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite", type=Path)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--run", required=True, help="train key or a unique prefix of it")
    p.add_argument("--split", default="test")
    p.add_argument("--sources", type=int, default=64, help="evaluation sources, spread over the split")
    p.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)
    try:
        specs = [s for s in expand(load_suite(a.suite)) if s.train_key.startswith(a.run)]
        if len(specs) != 1:
            raise BenchError(f"--run {a.run}: {len(specs)} runs of {a.suite} match (need exactly one)")
        spec = specs[0]
        folder = store.run_dir(a.results, spec.train_key)
        if spec.method not in ("none", "peft") and not (folder / "trainable.safetensors").exists():
            raise BenchError(f"{folder}: no trainable.safetensors (a run committed without weights cannot be decoded)")
    except BenchError as e:
        print(f"check_decode_engines: {e}", file=sys.stderr)
        return 2

    loaded = base_model(spec.model)
    tuned = build_tuned(spec, loaded)
    if (folder / "trainable.safetensors").exists():
        _load_trainable(folder, tuned)
    tuned.eval()
    items = load_eval_items(spec, a.split, _data_dir(a.data_dir))
    step = max(1, len(items) // a.sources)
    items = items[::step][: a.sources]  # spread over the split: short and long sources alike

    hyps: dict[str, list[str]] = {}
    secs: dict[str, float] = {}
    for engine in ("generate", "fast"):
        os.environ["BENCH_DECODE_ENGINE"] = engine
        t0 = time.perf_counter()
        hyps[engine], _ = decode_items(tuned, loaded, items, spec, progress=True)
        secs[engine] = time.perf_counter() - t0
    same = [g == f for g, f in zip(hyps["generate"], hyps["fast"], strict=True)]
    stored = store.read_predictions(folder, spec.decode_key)
    stored = stored[stored["split"] == a.split].set_index("source_id")["prediction"].to_dict()
    vs_stored = sum(stored.get(it.source_id) == h for it, h in zip(items, hyps["generate"], strict=True))

    print(f"run {spec.train_key} ({spec.method_label}, {spec.model}), {a.split}: {len(items)} sources, "
          f"beam {spec.decode.beam_size}, batch {spec.decode.batch_size}")
    print(f"identical hypotheses, fast vs generate: {sum(same)}/{len(items)}")
    print(f"time: generate {secs['generate']:.1f} s, fast {secs['fast']:.1f} s "
          f"(fast / generate = {secs['fast'] / secs['generate']:.2f})")
    if stored:
        print(f"generate here vs the run's stored predictions: {vs_stored}/{len(items)} identical (informative)")
    for it, g, f, ok in zip(items, hyps["generate"], hyps["fast"], same, strict=True):
        if not ok:
            print(f"  differs at {it.source_id}:\n    generate: {g}\n    fast:     {f}")
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
