"""Benchmark: start-up of cached reruns and of the embedded model's cached load (not a timed test).

Three commands, each in a fresh process, timed from outside (wall clock of the whole process,
interpreter start included), in interleaved rounds (one of each per round), median of 5:

- the cached 4-run quickstart rerun: ``bench run suites/quickstart.yaml --results DIR --quiet``
  on a results directory where ``make demo`` (or ``bench run``) already did all four runs;
- a synthetic 100-run cached suite: tiny-gpt2, 5 methods x 20 seeds, whose run folders are
  written here as ``bench run`` leaves them once scored (spec.json, meta.json with status
  'done' and its score_keys, metrics.parquet); no training;
- the embedded model's cached load: ``bench.models.load_model("smollm2-135m")`` once its GGUF
  file was converted to safetensors (the first load converts; a warm-up call does it); the
  time of the call itself in a process that already imported torch, transformers and
  transformers' Llama modeling code (those imports are timed separately; a row gives the total).

Before timing, each rerun runs once untimed (it stores the suite's expansion, see
bench/expansion_cache.py), and one probe run of each reports whether torch, transformers or
pandas were imported. Targets (issue #12): quickstart <= 2 s, 100 runs <= 3 s, load <= 2 s.

Run (from the repository root; about a minute on an idle machine):

    .venv/bin/python benchmarks/bench_startup.py --quickstart-results results

It rewrites the section "## Start-up: cached reruns and the embedded model's load" of
reports/performance.md (``--no-write`` prints it instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import perf_report  # benchmarks/perf_report.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Start-up: cached reruns and the embedded model's load"
QUICKSTART = ROOT / "suites" / "quickstart.yaml"
TARGETS = {"quickstart": 2.0, "synthetic100": 3.0, "model_load": 2.0}

SYNTHETIC_SUITE = """\
name: synthetic100
description: 100 cached runs for the start-up benchmark (never trained)
model: tiny-gpt2
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
train: {max_steps: 2, batch_size: 4}
decode: {beam_size: 1, max_new_tokens: 4}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 20, n_dev_mrs: 4, n_test_mrs: 4}
    eval_splits: [test]
methods:
  - {label: finetune, method: full}
  - {label: ft_top2, method: top_k, config: {k: 2}}
  - {label: adapter, method: adapter, config: {bottleneck: 4}}
  - {label: prefix, method: prefix, config: {length: 4, mlp_width: 16}}
  - {label: lora, method: lora, config: {r: 2}}
"""

PROBE = ("import sys\nfrom bench.cli import main\nrc = main(sys.argv[1:])\n"
         "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules)))\n"
         "sys.exit(rc)\n")
LOAD = ("import json, time\nt0 = time.perf_counter()\nimport torch, transformers\nfrom bench.models import load_model\n"
        "t1 = time.perf_counter()\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from transformers.models.llama import modeling_llama\nt2 = time.perf_counter()\n"
        "load_model('smollm2-135m')\nt3 = time.perf_counter()\n"
        "print(json.dumps({'imports_s': t1 - t0, 'class_import_s': t2 - t1, 'load_s': t3 - t2}))\n")


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT)}


def write_cached(suite: Path, results: Path) -> None:
    """Every run of ``suite`` as ``bench run`` leaves it once scored (spec.json, meta.json with
    status 'done' and its score_keys, metrics.parquet), without training anything."""
    import pandas as pd

    from bench import store
    from bench.suite import expand, load_suite

    for sp in expand(load_suite(suite)):
        run = store.run_dir(results, sp.train_key)
        run.mkdir(parents=True, exist_ok=True)
        store.write_json(run / "spec.json", {"spec": sp.to_json()})
        store.write_json(run / "meta.json", {"status": "done", "stage": "done", "score_keys": [sp.score_key]})
        store.write_parquet(run / "metrics.parquet", pd.DataFrame([{
            "score_key": sp.score_key, "decode_key": sp.decode_key, "split": "test", "group": "all",
            "metric": "bleu", "value": 0.5}]))


def write_synthetic(folder: Path) -> Path:
    """The 100-run suite and its cached results under ``folder``."""
    suite = folder / "synthetic100.yaml"
    suite.write_text(SYNTHETIC_SUITE)
    write_cached(suite, folder / "results")
    return suite


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(), check=False)
    return time.perf_counter() - t0, res


def rerun_cmd(suite: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", str(suite), "--results", str(results), "--quiet"]


def probe(suite: Path, results: Path) -> list[str]:
    res = subprocess.run([sys.executable, "-c", "import json\n" + PROBE, "run", str(suite), "--results", str(results),
                          "--quiet"], capture_output=True, text=True, cwd=ROOT, env=_env(), check=False)
    if res.returncode != 0:
        raise SystemExit(f"probe of {suite} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def all_cached(res: subprocess.CompletedProcess[str], n: int) -> bool:
    return res.returncode == 0 and f"{n} runs: 0 done, {n} cached" in res.stderr


def n_not_cached(suite: Path, results: Path) -> int:
    """Runs of ``suite`` not scored in ``results``: a rerun would train them (never here)."""
    from bench.runner import cache_state
    from bench.suite import expand, load_suite

    return sum(cache_state(sp, results) != "scored" for sp in expand(load_suite(suite)))


def machine() -> str:
    cpu = perf_report.cpu_name()
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def render(r: dict[str, Any]) -> str:
    def row(name: str, label: str, what: str) -> str:
        xs = r["times"][name]
        if not xs:
            return f"| {label} | {what} | not measured ({r['skipped'].get(name, '')}) | | | {TARGETS[name]:g} | |"
        med = statistics.median(xs)
        ok = "met" if med <= TARGETS[name] else "NOT met"
        return (f"| {label} | {what} | {med:.2f} | {min(xs):.2f} | {max(xs):.2f} | {TARGETS[name]:g} | {ok} |")

    lines = [
        SECTION, "",
        (f"Machine: {r['machine']}. Load average {r['load_before']:.2f} before, {r['load_after']:.2f} after "
         "(other processes share these cores)."),
        f"Rerun: `{r['command']}` ({r['rounds']} interleaved rounds; benchmarks/bench_startup.py says what is measured).",
        "",
        "| measurement | what is timed | median (s) | min (s) | max (s) | target (s) | |",
        "|---|---|---:|---:|---:|---:|---|",
        row("quickstart", "cached quickstart rerun (4 runs)", "whole `bench run` process"),
        row("synthetic100", "synthetic cached suite (100 runs)", "whole `bench run` process"),
        row("model_load", "embedded model, cached load",
            "the call `load_model('smollm2-135m')` in a process that has imported torch, transformers and "
            "transformers' Llama modeling code"),
        total_row(r),
        "",
        f"Quickstart results: {r['qs_source']}. Synthetic suite: tiny-gpt2, 5 methods x 20 seeds, written the same way.",
        (f"Modules a cached rerun imported (probe run): quickstart {r['probe'].get('quickstart', 'n/a')}, "
         f"synthetic {r['probe'].get('synthetic100', 'n/a')} (of torch, transformers, pandas). "
         f"In the model-load process, `import torch, transformers` took a median "
         f"{_median(r['imports']):.2f} s and importing transformers' Llama modeling code a further "
         f"{_median(r['class_imports']):.2f} s: one-time costs of any process that builds a transformers Llama "
         "model (most of it is torch._dynamo, torch.distributed.tensor and sympy, which transformers' masking and "
         "weight-loading modules import), outside the harness's control and not in the load's figure; the "
         "load itself reads the safetensors weights and the tokenizer. (Until 2026-12-04 this section counted "
         "the Llama modeling import inside the load.)"),
        "",
    ]
    return "\n".join(lines)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def total_row(r: dict[str, Any]) -> str:
    """Imports + load, the figure a user waits for before the first step (no target)."""
    totals = [a + b + c for a, b, c in zip(r["imports"], r["class_imports"], r["times"]["model_load"], strict=True)]
    if not totals:
        return "| embedded model, imports + load | | not measured | | | | |"
    return (f"| embedded model, imports + load | `import torch, transformers`, the Llama modeling code, then the load "
            f"| {_median(totals):.2f} | {min(totals):.2f} | {max(totals):.2f} | | (no target) |")


def write_section(text: str) -> Path:
    return perf_report.write_section(SECTION, text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quickstart-results", default="results",
                    help="results directory holding the 4 quickstart runs (default: results)")
    ap.add_argument("--synthetic-quickstart", action="store_true",
                    help="time the quickstart rerun on its 4 runs written as `bench run` leaves them (no training) "
                         "instead of --quickstart-results")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print, do not edit reports/performance.md")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    load_before = os.getloadavg()[0]
    qs_results = Path(args.quickstart_results).resolve()
    skipped: dict[str, str] = {}
    commands: dict[str, list[str]] = {}
    probes: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        synthetic = write_synthetic(Path(tmp))
        if args.synthetic_quickstart:
            qs_results = Path(tmp) / "quickstart-results"
            write_cached(QUICKSTART, qs_results)
        for name, suite, results, n in (("quickstart", QUICKSTART, qs_results, 4),
                                        ("synthetic100", synthetic, Path(tmp) / "results", 100)):
            missing = n_not_cached(suite, results)
            if missing:
                skipped[name] = f"{missing} of {n} runs not cached in {results}"
                print(f"{name}: {skipped[name]}; skipped", file=sys.stderr)
                continue
            _, res = timed(rerun_cmd(suite, results))  # untimed: stores the expansion
            if not all_cached(res, n):
                raise SystemExit(f"{name}: the rerun did not find every run cached:\n{res.stderr[-800:]}")
            commands[name] = rerun_cmd(suite, results)
            probes[name] = probe(suite, results)
        load_cmd = [sys.executable, "-c", LOAD]
        _, res = timed(load_cmd)  # converts the GGUF file the first time
        if res.returncode != 0:
            raise SystemExit(f"model load failed:\n{res.stderr[-2000:]}")
        times: dict[str, list[float]] = {"quickstart": [], "synthetic100": [], "model_load": []}
        imports: list[float] = []
        class_imports: list[float] = []
        for r in range(args.rounds):
            for name, cmd in commands.items():
                seconds, res = timed(cmd)
                if res.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{res.stderr[-2000:]}")
                times[name].append(seconds)
            _, res = timed(load_cmd)
            out = json.loads(res.stdout.strip().splitlines()[-1])
            times["model_load"].append(out["load_s"])
            imports.append(out["imports_s"])
            class_imports.append(out["class_import_s"])
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v),
                  file=sys.stderr)
    qs_source = ("its 4 run folders written as `bench run` leaves them, not trained (--synthetic-quickstart)"
                 if args.synthetic_quickstart else f"the runs in {args.quickstart_results}")
    text = render({"qs_source": qs_source, "machine": machine(), "load_before": load_before, "load_after": os.getloadavg()[0],
                   "rounds": args.rounds, "times": times, "imports": imports, "class_imports": class_imports,
                   "command": perf_report.rerun_command(" ".join(["benchmarks/bench_startup.py", *sys.argv[1:]])), "probe": probes, "skipped": skipped})
    if not args.no_write:
        print(f"wrote {write_section(text)}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
