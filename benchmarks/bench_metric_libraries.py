"""Benchmark: our metrics against the libraries that compute the same number (not a timed test).

Where a metric of ours should equal a library's result, this prints both scores on the
shared data's fixture systems, the largest difference, and each side's time, so the notes
in the metric files ("why we do not call the library") stay checked:

- ``multi_bleu`` (multi-bleu.perl) vs sacrebleu ``corpus_bleu(tokenize="none",
  smooth_method="none")``: WebNLG test, the fixture systems, references padded with empty
  lines to three as the official files are;
- ``e2e_bleu_perl`` (mteval-v13a) vs sacrebleu ``tokenize="13a", lowercase=True`` (default
  and no smoothing): E2E test, the fixture systems;
- ``e2e_rouge_l`` / ``e2e_cider`` vs pycocoevalcap ``Rouge`` / ``Cider`` on the same
  COCO-tokenized text;
- ``ter`` (tercom 0.7.25) vs sacrebleu ``TER()`` (case-insensitive like tercom): the first
  ``--ter-items`` WebNLG test items with three references (sacrebleu takes one stream per
  reference; our TER search is slow on the full corpus), and the first 100 items with the
  streams padded by empty lines (what items with fewer references would need).

Run (from the repository root; about two minutes):

    BENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_metric_libraries.py
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import sacrebleu

from bench.interfaces import group_references
from bench.metrics.coco_tokenizer import tokenize_corpus
from bench.registry import DATASETS, METRICS


def _timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _ours(metric_id: str, hyps: list[str], refs: list[list[str]]) -> tuple[float, float]:
    m = METRICS.get(metric_id)()
    return _timed(lambda: m.aggregate(np.asarray(m.stats(hyps, refs))))


def _items(data_dir: Path, dataset: str) -> tuple[list[str], list[list[str]]]:
    items = group_references(DATASETS.get(dataset)().load("test", data_dir=data_dir, options={}))
    return [it.source_id for it in items], [list(it.references) for it in items]


def _systems(data_dir: Path, dataset: str, n: int) -> dict[str, list[str]]:
    out = {}
    for p in sorted((data_dir / dataset / "fixtures").glob("*.txt")):
        lines = p.read_text(encoding="utf-8").splitlines()
        if len(lines) == n:
            out[p.name] = lines
    return out


def _streams(refs: list[list[str]], k: int) -> list[list[str]]:
    padded = [(r + [""] * k)[:k] for r in refs]
    return [list(col) for col in zip(*padded)]


def row(name: str, system: str, ours: float, lib: float, t_ours: float, t_lib: float) -> None:
    print(f"| {name} | {system} | {ours:.6f} | {lib:.6f} | {abs(ours - lib):.2e} | {t_ours:.2f} | {t_lib:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ter-items", type=int, default=300)
    args = ap.parse_args()
    data_dir = Path(os.environ.get("BENCH_DATA_DIR", "../shared/data"))
    print("| metric | system | ours | library | abs diff | ours s | library s |")
    print("|---|---|---:|---:|---:|---:|---:|")

    _, w_refs = _items(data_dir, "webnlg")
    w_refs3 = [(r + [""] * 3)[:3] for r in w_refs]
    for system, hyps in _systems(data_dir, "webnlg", len(w_refs)).items():
        ours, t1 = _ours("multi_bleu", hyps, w_refs3)
        lib, t2 = _timed(lambda: sacrebleu.corpus_bleu(hyps, _streams(w_refs3, 3), tokenize="none",  # noqa: B023
                                                       smooth_method="none", force=True).score)
        row("multi_bleu vs sacrebleu none", system, ours, lib, t1, t2)

    _, e_refs = _items(data_dir, "e2e")
    k = max(len(r) for r in e_refs)
    systems = _systems(data_dir, "e2e", len(e_refs))
    for system, hyps in systems.items():
        ours, t1 = _ours("e2e_bleu_perl", hyps, e_refs)
        for smooth in ("exp", "none"):
            lib, t2 = _timed(lambda: sacrebleu.corpus_bleu(hyps, _streams(e_refs, k), tokenize="13a",  # noqa: B023
                                                           lowercase=True, smooth_method=smooth).score / 100)  # noqa: B023
            row(f"e2e_bleu_perl vs sacrebleu 13a lc smooth={smooth}", system, ours, lib, t1, t2)

    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    for system, hyps in systems.items():
        h_tok, r_tok = tokenize_corpus(hyps, e_refs)
        res = {i: [h] for i, h in enumerate(h_tok)}
        gts = {i: list(r) for i, r in enumerate(r_tok)}
        for metric_id, lib_cls in (("e2e_rouge_l", Rouge), ("e2e_cider", Cider)):
            ours, t1 = _ours(metric_id, hyps, e_refs)
            (lib, _), t2 = _timed(lambda: lib_cls().compute_score(gts, res))  # noqa: B023
            row(f"{metric_id} vs pycocoevalcap", system, ours, float(lib), t1, t2)

    # sacrebleu needs one reference stream per reference: items with three non-empty references.
    full = [i for i, r in enumerate(w_refs3) if all(r)][: args.ter_items]
    refs = [w_refs3[i] for i in full]
    for system, all_hyps in _systems(data_dir, "webnlg", len(w_refs)).items():
        hyps = [all_hyps[i] for i in full]
        ours, t1 = _ours("ter", hyps, refs)
        lib, t2 = _timed(lambda: sacrebleu.metrics.TER(case_sensitive=False).corpus_score(
            hyps, _streams(refs, 3)).score / 100)  # noqa: B023
        row(f"ter vs sacrebleu TER ({len(full)} items, 3 refs)", system, ours, lib, t1, t2)
    # Items with fewer references need padded streams; an empty reference changes sacrebleu's TER.
    for system, all_hyps in _systems(data_dir, "webnlg", len(w_refs)).items():
        hyps, refs = all_hyps[:100], [[x for x in r if x] for r in w_refs3[:100]]
        ours, t1 = _ours("ter", hyps, refs)
        lib, t2 = _timed(lambda: sacrebleu.metrics.TER(case_sensitive=False).corpus_score(
            hyps, _streams(refs, 3)).score / 100)  # noqa: B023
        row("ter vs sacrebleu TER (first 100 items, streams padded with empty lines)", system, ours, lib, t1, t2)


if __name__ == "__main__":
    main()
