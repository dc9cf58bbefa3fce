"""Claim 6 (cost) as a report section: prefix-tuning against full fine-tuning on the costs the
runs themselves recorded — training time per step and per run, memory above the model, and
stored parameters per task.

Only pairs of runs that trained on the same examples (dataset, training size, subset, seed)
with the same batch size are compared, so a step is the same amount of work for both; a pair
where either run shared the machine (others' CPU above ``bench.contention.CONTENDED``, or not
recorded) is left out of the time ratios and counted as such. Each ratio is prefix /
fine-tuning per pair; the section quotes their median and range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import store
from bench.contention import CONTENDED
from bench.report.tables import TableWriter, dataset_name, md_table

CLAIM6 = ("Prefix-tuning trains about 30% faster than fine-tuning, with far less memory, and stores about "
          "1000x fewer parameters per task (Section 4.2/7.1: 0.1% of the parameters, no gradients for the LM's "
          "weights in the optimizer).")
# The paper's figures: step time ratio ~0.7 ("~30% faster"), storage ratio 1/1000.
PAPER_SPEED_RATIO = 0.7
PAPER_STORAGE_FACTOR = 1000.0
PAIR_KEYS = ("dataset", "train_size", "subset", "seed", "batch_size")


@dataclass(frozen=True)
class CostPair:
    """One prefix run and one fine-tuning run trained on the same examples with the same batch."""

    cell: tuple
    prefix: Mapping
    full: Mapping

    def ratio(self, column: str) -> float | None:
        a, b = _num(self.prefix.get(column)), _num(self.full.get(column))
        return None if a is None or b is None or b == 0 else a / b

    @property
    def uncontended(self) -> bool:
        shares = [_num(self.prefix.get("train_other_cpu")), _num(self.full.get("train_other_cpu"))]
        return all(s is not None and s <= CONTENDED for s in shares)


def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else f


def _with_batch(done: pd.DataFrame) -> pd.DataFrame:
    """The runs with their training batch size (from spec.json; the runs frame does not hold it)."""
    sizes = []
    for path in done["path"]:
        spec = store.read_json(Path(path) / "spec.json")["spec"]
        train = spec.get("train", {})
        sizes.append(int(train.get("batch_size", 0)) * int(train.get("grad_accum", 1) or 1))
    return done.assign(batch_size=sizes)


def cost_pairs(runs: pd.DataFrame) -> list[CostPair]:
    """Matched (prefix, full fine-tuning) runs; a cell with several rows of a method (labels)
    pairs the first label of each in name order, so a pair is never counted twice."""
    done = runs[(runs["status"] == "done") & runs["method"].isin(["prefix", "full"])]
    if done.empty or done["method"].nunique() < 2:
        return []
    done = _with_batch(done)
    done = done.assign(train_size=done["train_size"].astype(object).where(done["train_size"].notna(), None))
    pairs = []
    for cell, block in done.groupby(list(PAIR_KEYS), sort=True, dropna=False):
        pre = block[block["method"] == "prefix"].sort_values("row_label")
        full = block[block["method"] == "full"].sort_values("row_label")
        if len(pre) and len(full):
            pairs.append(CostPair(tuple(cell), pre.iloc[0].to_dict(), full.iloc[0].to_dict()))
    return pairs


def _summary(values: Sequence[float]) -> str:
    if not values:
        return "–"
    spec = ",.0f" if min(values) >= 100 else ".2f"
    return (f"{np.median(values):{spec}}x (range {min(values):{spec}}-{max(values):{spec}}, "
            f"{len(values)} pairs)")


def claim6(runs: pd.DataFrame, *, table: TableWriter = md_table) -> list[str]:
    """The claim-6 section, or nothing where no prefix run has a matched fine-tuning run."""
    pairs = cost_pairs(runs)
    if not pairs:
        return []
    clean = [p for p in pairs if p.uncontended]
    step = [r for p in clean if (r := p.ratio("step_time_median_s")) is not None]
    per_run = [r for p in clean if (r := p.ratio("train_time_s")) is not None]
    memory = [r for p in pairs if (r := p.ratio("memory_above_model_mb")) is not None]
    storage = [1 / r for p in pairs if (r := p.ratio("n_stored")) is not None and r > 0]
    rows = []
    for p in pairs:
        ds, size, subset, seed, batch = p.cell
        rows.append([
            f"{dataset_name(str(ds))} {'full' if _num(size) is None else int(size)} / subset {subset} / seed {seed}",
            str(batch) if batch else "–", f"{p.prefix['row_label']} / {p.full['row_label']}",
            *[_ratio_cell(p, c) for c in ("step_time_median_s", "train_time_s", "memory_above_model_mb")],
            f"{(1 / r):,.0f}x" if (r := p.ratio("n_stored")) else "–",
            "yes" if p.uncontended else "no",
        ])
    lines = ["### Claim 6 — cost (prefix-tuning vs full fine-tuning)", "", f"Paper: {CLAIM6}", "",
             ("Each row: one prefix run and one fine-tuning run trained on the same examples with the same batch "
              "size; ratios are prefix / fine-tuning (below 1: prefix cheaper), storage is fine-tuning / prefix. "
              "Time ratios use only the pairs where neither run shared the machine (others' CPU recorded and at "
              f"most {CONTENDED:.0%}); memory is what training added above the loaded model."), "",
             *table(["runs (dataset size / subset / seed)", "batch", "rows", "step time", "time per run",
                        "memory above model", "stored: FT / prefix", "machine to itself"], rows), ""]
    n_skipped = len(pairs) - len(clean)
    lines += [f"- Step time, prefix / fine-tuning: {_summary(step)} (paper: about {PAPER_SPEED_RATIO:.1f}x)",
              f"- Training time per run: {_summary(per_run)} (runs differ in step budgets by design)",
              f"- Memory above the model: {_summary(memory)}",
              (f"- Stored parameters per task, fine-tuning / prefix: {_summary(storage)} (paper: about "
              f"{PAPER_STORAGE_FACTOR:,.0f}x)")]
    if n_skipped:
        lines.append(f"- {n_skipped} pair(s) left out of the time ratios: a run shared the machine or did not record it")
    lines += ["", f"**Verdict: {verdict6(step, memory, storage)}**", ""]
    return lines


def _ratio_cell(p: CostPair, column: str) -> str:
    r = p.ratio(column)
    return "–" if r is None else f"{r:.2f}x"


def verdict6(step: Sequence[float], memory: Sequence[float], storage: Sequence[float]) -> str:
    """Fixed rules, one per part of the claim, each on every matched pair:
    faster: prefix's median step time below fine-tuning's in every uncontended pair;
    less memory: below in every pair with a measurement; storage: at least 1000x less in every
    pair. All three hold: reproduced; any part contradicted by every pair: not reproduced;
    otherwise (mixed pairs, or a part without any measured pair): inconclusive."""
    parts = {"faster": step, "less memory": memory}
    held, failed, unknown = [], [], []
    for name, ratios in parts.items():
        if not ratios:
            unknown.append(f"{name}: no measured pair")
        elif all(r < 1 for r in ratios):
            held.append(f"{name} ({np.median(ratios):.2f}x)")
        elif all(r >= 1 for r in ratios):
            failed.append(f"not {name} ({np.median(ratios):.2f}x)")
        else:
            unknown.append(f"{name} in some pairs only")
    if not storage:
        unknown.append("storage: no counted pair")
    elif all(s >= PAPER_STORAGE_FACTOR for s in storage):
        held.append(f"{np.median(storage):,.0f}x less storage")
    else:
        failed.append(f"only {min(storage):,.0f}x less storage")
    what = "; ".join(held + failed + unknown)
    if failed:
        return f"not reproduced — {what}"
    if unknown:
        return f"inconclusive at this scale — {what}"
    return f"reproduced — {what}"
