"""expand -> skip what is cached -> train -> decode -> score -> store.

A run is cached at three levels, so the least possible work is redone:
- trained: ``trainable.safetensors`` exists for the train_key (retraining never happens for a
  new decoding config or metric);
- decoded: predictions for the decode_key exist (a new metric only rescores);
- scored: metric rows for the score_key exist (the run is done).

A failing run becomes a ``failed`` meta.json with its stage and reason; the suite goes on.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench import SCHEMA_VERSION, faults, store
from bench.config import RunSpec
from bench.errors import BenchError
from bench.interfaces import EvalItem, Example, group_references
from bench.models import LoadedModel, load_model
from bench.train import RunFailure


@dataclass(frozen=True)
class RunOutcome:
    train_key: str
    label: str
    status: str  # done | cached | failed | busy
    seconds: float = 0.0
    error: str | None = None
    summary: str = ""


# ----------------------------------------------------------------------------- state


def cache_state(spec: RunSpec, results: Path) -> str:
    """'scored' | 'decoded' | 'trained' | 'failed' | 'new' for this spec in ``results``."""
    folder = store.run_dir(results, spec.train_key)
    meta = store.read_meta(folder) if folder.exists() else None
    metrics = store.read_metrics(folder) if folder.exists() else pd.DataFrame()
    if not metrics.empty and (metrics["score_key"] == spec.score_key).any():
        return "scored"
    if meta and meta.get("status") == "failed":
        return "failed"
    preds = folder / "predictions.parquet"
    if preds.exists() and (store.read_predictions(folder, spec.decode_key).shape[0] > 0):
        return "decoded"
    if (folder / "trainable.safetensors").exists() and meta and meta.get("trained"):
        return "trained"
    return "new"


# ----------------------------------------------------------------------------- data


def _data_dir(flag: str | Path | None) -> Path | None:
    from bench.datasets.paths import resolve_data_dir

    return resolve_data_dir(str(flag) if flag is not None else None)


def load_train_data(spec: RunSpec, data_dir: Path | None) -> tuple[list[Example], list[Example]]:
    """The training examples (and dev split for early stopping) of this run."""
    from bench import splits
    from bench.registry import DATASETS

    d = spec.data
    examples = DATASETS.get(d.name)().load(d.train_split, data_dir=data_dir, options=d.options)
    if d.train_filter:
        examples = splits.apply_filter(examples, d.train_filter)
    if d.train_size is None:
        return list(examples), []
    key = f"{d.name}:{d.version}:{json.dumps(dict(d.options), sort_keys=True)}:{json.dumps({k: list(v) for k, v in d.train_filter.items()}, sort_keys=True)}"
    train, dev = splits.sample_subset(examples, size=d.train_size, subset=d.subset, key=key,
                                      dev_fraction=d.dev_fraction, nested=d.nested_subsets)
    return list(train), list(dev)


def load_eval_items(spec: RunSpec, split: str, data_dir: Path | None) -> list[EvalItem]:
    from bench import splits
    from bench.registry import DATASETS

    d = spec.data
    examples = DATASETS.get(d.name)().load(split, data_dir=data_dir, options=d.options)
    if d.eval_filter:
        examples = splits.apply_filter(examples, d.eval_filter)
    items = group_references(examples)
    if d.max_eval_sources is not None:
        items = items[: d.max_eval_sources]  # the first N sources in dataset order; recorded in the spec
    return items


# ----------------------------------------------------------------------------- models

_MODELS: dict[str, LoadedModel] = {}


def base_model(name: str, seed: int = 0) -> LoadedModel:
    """The base model, loaded once per process; each run gets its own deep copy."""
    key = f"{name}:{seed}"
    if key not in _MODELS:
        _MODELS[key] = load_model(name, seed=seed)
    return _MODELS[key]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_tuned(spec: RunSpec, loaded: LoadedModel) -> torch.nn.Module:
    from bench.registry import METHODS

    method = METHODS.get(spec.method)()
    cfg_cls = getattr(method, "Config", None)
    cfg = cfg_cls(**spec.method_config) if cfg_cls is not None else dict(spec.method_config)
    model = copy.deepcopy(loaded.model)
    # The method's own random initialisation is part of the seeded run.
    torch.manual_seed(spec.seed)
    tuned = method.apply(model, loaded.tokenizer, cfg)
    return tuned.to(device())


# ----------------------------------------------------------------------------- one run


def run_one(spec: RunSpec, *, results: Path, data_dir: str | Path | None = None, force: bool = False,
            progress: bool = True, log: Callable[[str], None] | None = None) -> RunOutcome:
    """Bring one run to 'scored', doing only the missing stages. Never raises for a run failure."""
    log = log or (lambda s: print(s, file=sys.stderr))
    folder = store.run_dir(results, spec.train_key)
    t0 = time.perf_counter()
    try:
        with store.lock(folder):
            return _run_locked(spec, folder, results, _data_dir(data_dir), force, progress, t0)
    except store.LockBusy:
        return RunOutcome(spec.train_key, spec.method_label, "busy", error="another process is running it")


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    store.write_json(folder / "meta.json", meta)


def _run_locked(spec: RunSpec, folder: Path, results: Path, data_dir: Path | None, force: bool,
                progress: bool, t0: float) -> RunOutcome:
    state = "new" if force else cache_state(spec, results)
    if state == "scored":
        return RunOutcome(spec.train_key, spec.method_label, "cached")
    if force:
        for name in ("trainable.safetensors", "predictions.parquet", "metrics.parquet", "checkpoint.pt", "meta.json"):
            (folder / name).unlink(missing_ok=True)
    if not (folder / "spec.json").exists():
        store.write_json(folder / "spec.json", {"spec": spec.to_json()})
    meta = store.read_meta(folder) or {}
    meta.update({"status": "running", "stage": "load", "error": None, "started": time.time(), "pid": os.getpid()})
    meta.setdefault("seeds", {"train_seed": spec.seed, "subset": spec.data.subset})
    _write_meta(folder, meta)
    stage = "load"
    try:
        loaded = base_model(spec.model)
        tuned = build_tuned(spec, loaded)
        dev = device()
        meta["params"] = {
            "trained": int(tuned.n_trained),
            "stored": int(tuned.n_stored),
            "base_total": int(sum(p.numel() for p in loaded.model.parameters())),
        }
        meta["provenance"] = __import__("bench.provenance", fromlist=["provenance"]).provenance(dev)
        cost = meta.setdefault("cost", {})
        is_ed = loaded.is_encoder_decoder
        if state in ("new", "failed"):
            stage = "data"
            meta["stage"] = stage
            _write_meta(folder, meta)
            train_ex, dev_ex = load_train_data(spec, data_dir)
            store.write_json(folder / "train_ids.json", {
                "train": [e.example_id for e in train_ex], "dev": [e.example_id for e in dev_ex]})
            stage = "train"
            meta["stage"] = stage
            _write_meta(folder, meta)
            from bench.train import train

            tr = train(tuned, loaded.tokenizer, train_ex, cfg=spec.train, seed=spec.seed, is_encoder_decoder=is_ed,
                       decoder_start_id=getattr(loaded.model.config, "decoder_start_token_id", None),
                       dev_examples=dev_ex, checkpoint_path=folder / "checkpoint.pt", progress=progress,
                       desc=f"train {spec.method_label}")
            faults.checkpoint("write_trainable")
            _save_trainable(folder, tuned, spec)
            (folder / "checkpoint.pt").unlink(missing_ok=True)
            summary = tr.summary()
            cost.update({k: summary[k] for k in ("train_time_s", "step_time_median_s", "tokens_per_s", "peak_memory_mb")})
            meta["train"] = {k: summary[k] for k in ("steps", "final_loss", "best_step", "resumed_from", "dev_losses")}
            meta["train"]["n_train_examples"] = len(train_ex)
            meta["train"]["n_dev_examples"] = len(dev_ex)
            meta["trained"] = True
            _write_meta(folder, meta)
        else:
            _load_trainable(folder, tuned)
        if state in ("new", "failed", "trained"):
            stage = "decode"
            meta["stage"] = stage
            _write_meta(folder, meta)
            faults.checkpoint("decode")
            frames, seconds = [], 0.0
            for split in spec.data.eval_splits:
                items = load_eval_items(spec, split, data_dir)
                hyps, secs = decode_items(tuned, loaded, items, spec, progress)
                seconds += secs
                frames.append(_predictions_frame(spec, split, items, hyps))
            cost["decode_time_s"] = round(seconds, 3)
            faults.checkpoint("write_predictions")
            store.upsert_parquet(folder / "predictions.parquet", pd.concat(frames, ignore_index=True), "decode_key")
        stage = "score"
        meta["stage"] = stage
        _write_meta(folder, meta)
        faults.checkpoint("score")
        metrics = score_run(spec, folder)
        faults.checkpoint("write_metrics")
        store.upsert_parquet(folder / "metrics.parquet", metrics, "score_key")
        meta.update({"status": "done", "stage": "done", "finished": time.time()})
        _write_meta(folder, meta)
        return RunOutcome(spec.train_key, spec.method_label, "done", time.perf_counter() - t0,
                          summary=_headline(metrics))
    except (RunFailure, BenchError, RuntimeError, ValueError, OSError, torch.cuda.OutOfMemoryError) as e:
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        stage = getattr(e, "stage", stage)
        meta.update({"status": "failed", "stage": stage, "error": str(reason).splitlines()[0][:500],
                     "traceback": traceback.format_exc()[-4000:], "finished": time.time()})
        try:
            _write_meta(folder, meta)
        except OSError:
            pass  # a full disk: the outcome below still reports the failure
        return RunOutcome(spec.train_key, spec.method_label, "failed", time.perf_counter() - t0,
                          error=f"{stage}: {str(reason).splitlines()[0][:300]}")


def decode_items(tuned: torch.nn.Module, loaded: LoadedModel, items: Sequence[EvalItem], spec: RunSpec,
                 progress: bool) -> tuple[list[str], float]:
    from bench.decode import decode

    return decode(tuned, loaded.tokenizer, items, cfg=spec.decode, is_encoder_decoder=loaded.is_encoder_decoder,
                  max_source_tokens=spec.train.max_source_tokens, progress=progress,
                  desc=f"decode {spec.method_label}")


def _predictions_frame(spec: RunSpec, split: str, items: Sequence[EvalItem], hyps: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "decode_key": spec.decode_key,
        "split": split,
        "source_id": [it.source_id for it in items],
        "source": [it.source for it in items],
        "prediction": list(hyps),
        "references": [list(it.references) for it in items],
        "fields": [json.dumps(dict(it.fields), sort_keys=True) for it in items],
    })


def score_run(spec: RunSpec, folder: Path) -> pd.DataFrame:
    """Score the stored predictions of ``spec.decode_key`` with the spec's metrics."""
    from bench.registry import DATASETS
    from bench.scoring import score_predictions

    preds = store.read_predictions(folder, spec.decode_key)
    groups = dict(getattr(DATASETS.get(spec.data.name), "score_groups", {"all": {}}) or {"all": {}})
    rows = []
    for split, df in preds.groupby("split", sort=False):
        items = [EvalItem(r.source_id, r.source, tuple(r.references), json.loads(r.fields)) for r in df.itertuples()]
        for row in score_predictions(hypotheses=list(df["prediction"]), items=items, metrics=dict(spec.data.metrics),
                                     groups=groups, seed=spec.seed):
            rows.append({"score_key": spec.score_key, "decode_key": spec.decode_key, "split": split, **row})
    if not rows:
        raise RunFailure("score", "no predictions to score")
    return pd.DataFrame(rows)


def _headline(metrics: pd.DataFrame) -> str:
    first = metrics[metrics["group"] == metrics["group"].iloc[0]]
    return " ".join(f"{r.metric}={r.value:.4g}" for r in first.drop_duplicates("metric").itertuples())


def _save_trainable(folder: Path, tuned: Any, spec: RunSpec) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in tuned.stored_state().items()}
    tmp = folder / f".trainable.{os.getpid()}.tmp"
    save_file(state, str(tmp), metadata={"schema_version": str(SCHEMA_VERSION), "method": spec.method,
                                          "method_version": spec.method_version, "train_key": spec.train_key})
    os.replace(tmp, folder / "trainable.safetensors")


def _load_trainable(folder: Path, tuned: Any) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = folder / "trainable.safetensors"
    with safe_open(str(path), "pt") as f:
        version = (f.metadata() or {}).get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise BenchError(f"{path}: schema version {version}, expected {SCHEMA_VERSION}; rerun with --force")
    tuned.load_stored(load_file(str(path)))


def check_results_writable(results: Path, need_mb: float = 50.0) -> None:
    """Fail before any training when results/ cannot take files (issue: full disk, read-only)."""
    try:
        store.runs_dir(results).mkdir(parents=True, exist_ok=True)
        probe = store.runs_dir(results) / f".probe.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BenchError(f"results directory {results} is not writable ({e.strerror})") from None
    free_mb = shutil.disk_usage(store.runs_dir(results)).free / 2**20
    if free_mb < need_mb:
        raise BenchError(f"results directory {results} has only {free_mb:.0f} MiB free; need at least {need_mb:.0f} MiB")
