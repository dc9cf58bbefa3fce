"""Benchmark: rescoring many E2E outputs in one process (not a timed test).

Scores 20 E2E dev outputs (the two fixtures and 18 perturbed copies) with all five official
E2E metrics through ``bench.scoring.score_predictions`` (1000 bootstrap resamples each), in
one process that keeps one METEOR jar alive, and reports:

- time for the first output (JVM and paraphrase-table start-up, cold caches) and the median
  of the other 19, once with the in-process METEOR segment cache (pairs already scored are
  not sent to the jar again; perturbed copies share most lines) and once with that cache
  emptied before every output (every segment through the jar);
- the official path on one file, cold, as measure_scores.py runs it: pycocoevalcap's
  PTBTokenizer (a JVM), Meteor (a fresh JVM, one round trip per segment), Rouge, Cider;
- a check that every number equals the one-at-a-time path (each output scored alone in a
  fresh Python process).

Run (from the repository root):

    flock /tmp/prefix-bench.lock .venv/bin/python benchmarks/bench_rescoring.py

It rewrites the section "## Rescoring E2E outputs" of reports/performance.md.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


import perf_report  # benchmarks/perf_report.py (the script's folder is on sys.path)

from bench.interfaces import EvalItem
from bench.metrics import meteor
from bench.scoring import score_predictions

METRICS = {
    "bleu": "e2e_bleu",
    "nist": "e2e_nist",
    "meteor": "e2e_meteor",
    "rouge_l": "e2e_rouge_l",
    "cider": "e2e_cider",
}
SECTION = "## Rescoring E2E outputs"
COMMAND = perf_report.rerun_command("benchmarks/bench_rescoring.py")


def data_dir() -> Path:
    return Path(os.environ.get("BENCH_DATA_DIR", ROOT.parent / "shared" / "data"))


def dev_items() -> list[EvalItem]:
    """E2E dev MRs with their references, grouped as measure_scores.py groups them."""
    items: list[EvalItem] = []
    with open(data_dir() / "e2e" / "devset.csv", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for mr, ref in reader:
            if items and items[-1].source == mr:
                items[-1] = EvalItem(items[-1].source_id, mr, (*items[-1].references, ref))
            else:
                items.append(EvalItem(f"dev-{len(items)}", mr, (ref,)))
    return items


def fixture(name: str) -> list[str]:
    return (data_dir() / "e2e" / "fixtures" / name).read_text(encoding="utf-8").rstrip("\n").split("\n")


def perturb(lines: list[str], seed: int, fraction: float = 0.3) -> list[str]:
    """A plausible other system: ~30% of lines edited (word dropped, swapped, duplicated,
    or replaced by another MR's output)."""
    rng = random.Random(seed)
    out = list(lines)
    for i in rng.sample(range(len(out)), int(fraction * len(out))):
        words = out[i].split()
        kind = rng.randrange(4)
        if kind == 0 and len(words) > 2:
            del words[rng.randrange(len(words))]
        elif kind == 1 and len(words) > 3:
            a, b = rng.sample(range(len(words)), 2)
            words[a], words[b] = words[b], words[a]
        elif kind == 2 and words:
            j = rng.randrange(len(words))
            words.insert(j, words[j])
        else:
            words = lines[rng.randrange(len(lines))].split()
        out[i] = " ".join(words)
    return out


def outputs() -> list[tuple[str, list[str]]]:
    base = {"oracle_first_ref": fixture("oracle_first_ref.txt"), "template": fixture("template.txt")}
    outs = list(base.items())
    for k in range(18):
        name = "template" if k % 2 else "oracle_first_ref"
        outs.append((f"{name}~perturbed{k}", perturb(base[name], seed=k)))
    return outs


def score(hyps: list[str], items: list[EvalItem]) -> dict[str, float]:
    rows = score_predictions(hypotheses=hyps, items=items, metrics=METRICS, groups={"all": {}}, n_boot=1000)
    return {r["metric"]: (r["value"], r["ci_low"], r["ci_high"]) for r in rows}


def clear_meteor_cache() -> None:
    meteor._SEGMENT_CACHE.clear()


def one_at_a_time(index: int) -> None:
    """Child mode: score output ``index`` alone in this fresh process, print JSON."""
    name, hyps = outputs()[index]
    print(json.dumps({"name": name, "scores": score(hyps, dev_items())}))


def official_cold(hyps: list[str], items: list[EvalItem]) -> dict[str, float]:
    """One file through pycocoevalcap exactly as measure_scores.py drives it (cold JVMs)."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from bench.registry import METRICS as REGISTRY

    times = {}
    t0 = time.perf_counter()
    gts = {i: [{"caption": r} for r in it.references] for i, it in enumerate(items)}
    res = {i: [{"caption": h}] for i, h in enumerate(hyps)}
    tok = PTBTokenizer()
    gts_t, res_t = tok.tokenize(gts), tok.tokenize(res)
    times["tokenize (2 JVMs)"] = time.perf_counter() - t0
    t = time.perf_counter()
    scorer = Meteor()
    value, _ = scorer.compute_score(gts_t, res_t)
    times["METEOR (fresh JVM)"] = time.perf_counter() - t
    del scorer
    t = time.perf_counter()
    Rouge().compute_score(gts_t, res_t)
    Cider().compute_score(gts_t, res_t)
    times["ROUGE-L + CIDEr"] = time.perf_counter() - t
    t = time.perf_counter()
    refs = [list(it.references) for it in items]
    for mid in ("e2e_bleu", "e2e_nist"):  # stands in for pymteval (same computation)
        m = REGISTRY.get(mid)()
        m.aggregate(m.stats(hyps, refs))
    times["BLEU + NIST"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    times["meteor_value"] = value
    return times


def machine() -> str:
    cpu = perf_report.cpu_name()
    java = subprocess.run(["java", "-version"], check=False, capture_output=True, text=True)
    java_lines = java.stderr.splitlines()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.node() or 'host'}: {cpu}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"{java_lines[0] if java_lines else 'java ?'}; 1-min load average at start {load:.2f} "
        f"(the machine is shared)"
    )


def write_section(text: str) -> Path:
    return perf_report.write_section(SECTION, text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print, do not edit reports/performance.md")
    args = ap.parse_args()
    if args.child is not None:
        one_at_a_time(args.child)
        return 0
    if shutil.which("java") is None:
        print("java not found: install default-jre-headless", file=sys.stderr)
        return 2
    host = machine()
    items = dev_items()
    outs = outputs()

    # Pass A: warm process, METEOR segment cache on.
    times_a, jar_segments, results = [], [], {}
    for name, hyps in outs:
        t = time.perf_counter()
        results[name] = score(hyps, items)
        times_a.append(time.perf_counter() - t)
        jar_segments.append(len(meteor._SEGMENT_CACHE))
        print(f"A {name:32s} {times_a[-1]:6.2f} s", flush=True)
    new_segments = [jar_segments[0]] + [b - a for a, b in itertools.pairwise(jar_segments)]

    # Pass B: same process, METEOR segment cache emptied before every output.
    times_b = []
    for name, hyps in outs[1:]:
        clear_meteor_cache()
        t = time.perf_counter()
        again = score(hyps, items)
        times_b.append(time.perf_counter() - t)
        assert again == results[name], f"{name}: scores changed between passes"
        print(f"B {name:32s} {times_b[-1]:6.2f} s", flush=True)

    # One-at-a-time path: fresh processes, cold caches.
    checked = [0, 1, 7]
    identical = True
    for k in checked:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(k)], capture_output=True, text=True, check=True
        )
        alone = json.loads(proc.stdout.strip().splitlines()[-1])
        name = alone["name"]
        same = {m: tuple(v) == tuple(results[name][m]) for m, v in alone["scores"].items()}
        identical &= all(same.values())
        print(f"one-at-a-time {name}: identical={all(same.values())}", flush=True)

    # The official path, cold, once.
    official = official_cold(outs[1][1], items)
    meteor_match = abs(official["meteor_value"] - results[outs[1][0]]["meteor"][0]) < 1e-9
    print("official cold:", {k: round(v, 3) for k, v in official.items()}, flush=True)

    med_a, med_b = statistics.median(times_a[1:]), statistics.median(times_b)
    lines = [
        SECTION,
        "",
        f"Machine: {host}.",
        f"Rerun: `{COMMAND}` (writes this section; `--no-write` only prints).",
        "",
        "20 E2E dev outputs (547 MRs, 4,672 references): `oracle_first_ref.txt`, `template.txt`",
        "and 18 perturbed copies (30% of lines edited, different seeds), each scored with",
        "BLEU, NIST (pymteval), METEOR, ROUGE-L, CIDEr through `score_predictions`",
        "(1000 bootstrap resamples per metric), one process, one METEOR jar.",
        "",
        "| path | first output | median of the other 19 |",
        "|---|---|---|",
        f"| in-process, METEOR segment cache on | {times_a[0]:.2f} s | {med_a:.2f} s |",
        f"| in-process, METEOR segment cache emptied per output | (same) | {med_b:.2f} s |",
        f"| official measure_scores.py path, cold (one file) | {official['total']:.2f} s | - |",
        "",
        "Official path breakdown (one file, fresh JVMs as measure_scores.py starts them): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in official.items() if k not in ("total", "meteor_value"))
        + f". METEOR through pycocoevalcap equals ours: {meteor_match}.",
        "",
        (f"METEOR segments sent to the jar per output with the cache on: first {new_segments[0]},"
        f" then median {int(statistics.median(new_segments[1:]))} (perturbed copies share the"
        " unedited lines; with the cache emptied every output sends all 547)."),
        "",
        (f"Same numbers as the one-at-a-time path (outputs {', '.join(outs[k][0] for k in checked)}"
        f" each scored alone in a fresh Python process, values and CIs compared with ==): "
        f"{'identical' if identical else 'DIFFERENT'}; pass B reproduced pass A exactly."),
        "",
        (f"Target (< 1 s per output after the first): "
        f"{'met' if med_a < 1 else 'not met'} with the cache ({med_a:.2f} s), "
        f"{'met' if med_b < 1 else 'not met'} without it ({med_b:.2f} s). METEOR dominates: the jar"
        " aligns each hypothesis with every reference of its MR (8.5 on average)."),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print("wrote", write_section(text))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
