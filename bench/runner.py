"""expand -> skip what is cached -> train -> decode -> score -> store, surviving kills and crashes.

A run is cached at three levels, so the least possible work is redone:
- trained: ``trainable.safetensors`` exists for the train_key (retraining never happens for a
  new decoding config or metric; a kill after it was written never retrains);
- decoded: predictions for the decode_key exist (a new metric only rescores);
- scored: metric rows for the score_key exist and meta.json says ``done`` (the run is done).

Every file is published atomically (``bench.store``) and the run folder is locked while a
process works on it, so a run killed at any moment is picked up where its files end by the
next ``bench run``: training resumes from its last checkpoint, decoding and scoring are
redone. Each attempt is logged in meta.json (start, pid, host, stage reached, whether it
started and finished training, where it resumed from).

A failing run (out of memory, NaN loss, a decoding error, a missing model, a full disk)
becomes a ``failed`` meta.json with its stage and reason; the suite goes on.
"""

from __future__ import annotations

import copy
import errno
import gc
import json
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench import SCHEMA_VERSION, faults, store
from bench.config import RunSpec
from bench.errors import BenchError
from bench.interfaces import EvalItem, Example, group_references
from bench.models import TINY, LoadedModel, load_model
from bench.train import DATA_ORDER_SALT, RunFailure

BASE_MODEL_SEED = 0  # the init seed of the tiny random models (part of their fingerprint)


@dataclass(frozen=True)
class RunOutcome:
    train_key: str
    label: str
    status: str  # done | cached | failed | busy
    seconds: float = 0.0
    error: str | None = None
    summary: str = ""


class LockLost(Exception):
    """This process's lock on the run was taken over (its lease ran out): stop, write nothing."""


# ----------------------------------------------------------------------------- state


def stored_level(spec: RunSpec, folder: Path) -> str:
    """How far the stored files of ``spec`` go: 'scored' | 'decoded' | 'trained' | 'weightless' | 'new'."""
    if not folder.exists():
        return "new"
    meta = store.read_meta(folder) or {}
    metrics = store.read_metrics(folder)
    if meta.get("status") == "done" and not metrics.empty and (metrics["score_key"] == spec.score_key).any():
        return "scored"
    if (folder / "predictions.parquet").exists() and store.read_predictions(folder, spec.decode_key).shape[0] > 0:
        return "decoded"
    if (folder / "trainable.safetensors").exists():
        return "trained"
    if meta.get("trained"):
        # Trained once, but its parameters are not here (a results set committed without
        # weights): only retraining (--force) or the weights file can produce new predictions.
        return "weightless"
    return "new"


WEIGHTLESS = ("trained, but its weights are not in this results set (committed without weights): "
              "new predictions need trainable.safetensors put back in the run folder, or --force to retrain")


def cache_state(spec: RunSpec, results: Path) -> str:
    """'scored' | 'failed' | 'decoded' | 'trained' | 'weightless' | 'new' for this spec in ``results``."""
    folder = store.run_dir(results, spec.train_key)
    level = stored_level(spec, folder)
    if level != "scored":
        meta = store.read_meta(folder) if folder.exists() else None
        if meta and meta.get("status") == "failed":
            return "failed"
    return level


# ----------------------------------------------------------------------------- data


def _data_dir(flag: str | Path | None) -> Path | None:
    from bench.datasets.paths import resolve_data_dir

    return resolve_data_dir(str(flag) if flag is not None else None)


def subset_key(spec: RunSpec) -> str:
    """The string the low-data subset draw is seeded from (with the size and subset index)."""
    d = spec.data
    options = json.dumps(dict(d.options), sort_keys=True)
    filt = json.dumps({k: list(v) for k, v in d.train_filter.items()}, sort_keys=True)
    return f"{d.name}:{d.version}:{options}:{filt}"


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
    train, dev = splits.sample_subset(examples, size=d.train_size, subset=d.subset, key=subset_key(spec),
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


def seeds_used(spec: RunSpec) -> dict[str, Any]:
    """Every seed a run draws from, as recorded in its meta.json."""
    from bench.models import TINY

    d = spec.data
    return {
        "train_seed": spec.seed,
        # torch, numpy and random are seeded with it before the method builds its modules;
        # the torch stream then also drives dropout during training.
        "global_rngs": spec.seed,
        "data_order": [spec.seed, DATA_ORDER_SALT],  # numpy.random.default_rng of the batch order
        "subset": {"key": subset_key(spec), "size": d.train_size, "index": d.subset,
                   "nested": d.nested_subsets} if d.train_size else None,
        "base_model_init": BASE_MODEL_SEED if spec.model in TINY else None,
        "bootstrap": spec.seed,  # confidence intervals of the metrics
    }


# ----------------------------------------------------------------------------- models

_MODELS: dict[str, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def base_model(name: str, seed: int = BASE_MODEL_SEED) -> LoadedModel:
    """The base model, loaded once per process; each run gets its own deep copy."""
    key = f"{name}:{seed}"
    if name in TINY:
        # Tiny test models gain nothing from threads, and a fixed thread count keeps their
        # float reductions (hence metrics) identical across machines: CI's regression gate.
        torch.set_num_threads(1)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_model(name, seed=seed)
        return _MODELS[key]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def build_tuned(spec: RunSpec, loaded: LoadedModel) -> torch.nn.Module:
    from bench.registry import METHODS

    method = METHODS.get(spec.method)()
    cfg_cls = getattr(method, "Config", None)
    cfg = cfg_cls(**spec.method_config) if cfg_cls is not None else dict(spec.method_config)
    model = copy.deepcopy(loaded.model)
    # The method's own random initialisation is part of the seeded run.
    seed_everything(spec.seed)
    tuned = method.apply(model, loaded.tokenizer, cfg)
    return tuned.to(device())


# ----------------------------------------------------------------------------- one run

# torch's random generators and thread count are per process: two runs in threads of one
# process (a Dask worker with several threads) would draw from each other's streams and stop
# being reproducible, so a process does one run at a time (on a GPU worker: one per GPU).
_ONE_RUN_PER_PROCESS = threading.Lock()


def run_one(spec: RunSpec, *, results: Path, data_dir: str | Path | None = None, force: bool = False,
            retry_failed: bool = False, progress: bool = True) -> RunOutcome:
    """Bring one run to 'scored', doing only the missing stages. Never raises for a run failure.

    ``busy``: another live process holds the run. ``failed`` runs stay failed unless
    ``retry_failed`` (or ``force``, which redoes everything).
    """
    folder = store.run_dir(results, spec.train_key)
    t0 = time.perf_counter()
    with _ONE_RUN_PER_PROCESS, faults.context(spec.method_label):
        try:
            with store.lock(folder) as handle:
                outcome = _run_locked(spec, folder, handle, _data_dir(data_dir), force=force,
                                      retry_failed=retry_failed, progress=progress, t0=t0)
        except store.LockBusy as e:
            return RunOutcome(spec.train_key, spec.method_label, "busy", error=f"another process is running it ({e})")
        if outcome.status == "failed":
            _free_memory()  # an out-of-memory run must not starve the next one
        return outcome


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    store.write_json(folder / "meta.json", meta)


RUN_FILES = ("trainable.safetensors", "predictions.parquet", "metrics.parquet", "checkpoint.pt", "meta.json",
             "train_ids.json")


def _run_locked(spec: RunSpec, folder: Path, handle: store.LockHandle, data_dir: Path | None, *, force: bool,
                retry_failed: bool, progress: bool, t0: float) -> RunOutcome:
    faults.checkpoint("lock_acquired")
    store.sweep_tmp(folder)  # leftovers of a writer killed mid-write: we own the folder now
    if force:
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
    meta: dict[str, Any] = store.read_meta(folder) or {}
    level = stored_level(spec, folder)
    if level == "scored":
        return RunOutcome(spec.train_key, spec.method_label, "cached")
    if meta.get("status") == "failed" and not retry_failed:
        return RunOutcome(spec.train_key, spec.method_label, "failed",
                          error=f"failed earlier at {meta.get('stage')}: {meta.get('error')} (--retry-failed retries)")
    if level == "weightless":
        return RunOutcome(spec.train_key, spec.method_label, "weightless", error=WEIGHTLESS)
    if not (folder / "spec.json").exists():
        store.write_json(folder / "spec.json", {"spec": spec.to_json()})

    attempts: list[dict[str, Any]] = meta.setdefault("attempts", [])
    for previous in attempts:
        if previous.get("status") == "running":
            previous["status"] = "killed"  # it held the lock we just took: its process is gone
    attempt: dict[str, Any] = {
        "n": len(attempts) + 1, "started": time.time(), "pid": os.getpid(), "host": socket.gethostname(),
        "from": level, "stage": "load", "status": "running", "train_started": False, "trained": False,
    }
    attempts.append(attempt)
    meta.update({"status": "running", "stage": "load", "error": None, "traceback": None, "started": attempt["started"],
                 "pid": os.getpid(), "seeds": seeds_used(spec)})

    def enter(stage: str) -> None:
        if handle.lost.is_set():
            raise LockLost(stage)
        attempt["stage"] = meta["stage"] = stage
        _write_meta(folder, meta)

    stage = "load"
    try:
        if level == "decoded":
            return _score_and_finish(spec, folder, handle, meta, attempt, enter, t0)
        enter("load")
        faults.checkpoint("load")
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
        if level == "new":
            stage = "preflight"
            enter(stage)
            preflight_disk(folder, tuned, checkpointing=bool(spec.train.checkpoint_every))
            stage = "data"
            enter(stage)
            train_ex, dev_ex = load_train_data(spec, data_dir)
            store.write_json(folder / "train_ids.json", {
                "train": [e.example_id for e in train_ex], "dev": [e.example_id for e in dev_ex]})
            stage = "train"
            attempt["train_started"] = True
            enter(stage)
            from bench.train import train

            tr = train(tuned, loaded.tokenizer, train_ex, cfg=spec.train, seed=spec.seed, is_encoder_decoder=is_ed,
                       decoder_start_id=getattr(loaded.model.config, "decoder_start_token_id", None),
                       dev_examples=dev_ex, checkpoint_path=folder / "checkpoint.pt", progress=progress,
                       desc=f"train {spec.method_label}")
            attempt["resumed_from"] = tr.resumed_from
            summary = tr.summary()
            train_meta = {k: summary[k] for k in ("steps", "final_loss", "best_step", "resumed_from", "dev_losses",
                                                  "discarded_checkpoint")}
            train_meta["n_train_examples"] = len(train_ex)
            train_meta["n_dev_examples"] = len(dev_ex)
            train_cost = {k: summary[k] for k in ("train_time_s", "step_time_median_s", "tokens_per_s",
                                                  "peak_memory_mb")}
            stage = "save"
            enter(stage)
            faults.checkpoint("write_trainable")
            _save_trainable(folder, tuned, spec, {"train": train_meta, "cost": train_cost, "attempt": attempt["n"]})
            attempt["trained"] = True
            faults.checkpoint("trained")
            meta["train"] = train_meta
            cost.update(train_cost)
        else:
            stored = _load_trainable(folder, tuned)
            # A kill right after the parameters were published leaves the meta without them.
            meta.setdefault("train", stored.get("train", {}))
            for k, v in stored.get("cost", {}).items():
                cost.setdefault(k, v)
            n = stored.get("attempt")
            if isinstance(n, int) and 0 < n <= len(attempts):
                attempts[n - 1]["trained"] = True
        meta["trained"] = True
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        if level in ("new", "trained"):
            stage = "decode"
            enter(stage)
            faults.checkpoint("decode")
            frames, seconds = [], 0.0
            for split in spec.data.eval_splits:
                items = load_eval_items(spec, split, data_dir)
                hyps, secs = decode_items(tuned, loaded, items, spec, progress)
                seconds += secs
                frames.append(_predictions_frame(spec, split, items, hyps))
            cost["decode_time_s"] = round(seconds, 3)
            faults.checkpoint("write_predictions")
            if handle.lost.is_set():
                raise LockLost(stage)
            store.upsert_parquet(folder / "predictions.parquet", pd.concat(frames, ignore_index=True), "decode_key")
        return _score_and_finish(spec, folder, handle, meta, attempt, enter, t0)
    except LockLost:
        # Another process reclaimed the run (our lease ran out while we were stalled): the
        # folder is its now, so nothing more is written here.
        return RunOutcome(spec.train_key, spec.method_label, "busy", error="lock taken over by another process")
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, the suite goes on
        stage = getattr(e, "stage", None) or meta.get("stage") or stage
        reason = failure_reason(e, spec)
        attempt.update({"status": "failed", "finished": time.time(), "stage": stage})
        meta.update({"status": "failed", "stage": stage, "error": reason,
                     "traceback": traceback.format_exc()[-4000:], "finished": time.time()})
        try:
            if not handle.lost.is_set():
                _write_meta(folder, meta)
        except OSError:
            pass  # a full disk: the outcome below still reports the failure
        return RunOutcome(spec.train_key, spec.method_label, "failed", time.perf_counter() - t0,
                          error=f"{stage}: {reason[:300]}")


def _score_and_finish(spec: RunSpec, folder: Path, handle: store.LockHandle, meta: dict[str, Any],
                      attempt: dict[str, Any], enter: Any, t0: float) -> RunOutcome:
    """Score the stored predictions and mark the run done (rescoring loads no model)."""
    enter("score")
    faults.checkpoint("score")
    metrics = score_run(spec, folder)
    faults.checkpoint("write_metrics")
    if handle.lost.is_set():
        raise LockLost("score")
    store.upsert_parquet(folder / "metrics.parquet", metrics, "score_key")
    faults.checkpoint("meta_done")
    attempt.update({"status": "done", "finished": time.time()})
    meta.update({"status": "done", "stage": "done", "finished": time.time()})
    attempt["stage"] = "done"
    _write_meta(folder, meta)
    return RunOutcome(spec.train_key, spec.method_label, "done", time.perf_counter() - t0,
                      summary=_headline(metrics))


def failure_reason(e: BaseException, spec: RunSpec) -> str:
    """One line saying why a run failed, with the usual fix where there is one."""
    first = (str(e).strip().splitlines() or [""])[0][:400]
    if isinstance(e, torch.OutOfMemoryError):
        return (f"out of memory ({first}); lower train.batch_size (now {spec.train.batch_size}) and raise "
                f"train.grad_accum, or decode.batch_size (now {spec.decode.batch_size})")
    if isinstance(e, MemoryError):
        return f"out of host memory ({type(e).__name__}: {first})"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({first}); free space in the results directory and run again"
    if isinstance(e, RunFailure):
        return e.reason
    if isinstance(e, BenchError):
        return first
    return f"{type(e).__name__}: {first}"


def preflight_disk(folder: Path, tuned: torch.nn.Module, *, checkpointing: bool, margin_mb: float = 16.0) -> None:
    """Fail before training when the results disk cannot take what this run will write."""
    stored = sum(t.numel() * t.element_size() for t in tuned.stored_state().values())
    trained = sum(p.numel() * p.element_size() for _, p in tuned.trainable_parameters())
    # A checkpoint holds the trained parameters and AdamW's two moments; while it is replaced
    # the old and the new copy both exist.
    need = (stored + (2 * 3 * trained if checkpointing else 0)) / 2**20 + margin_mb
    free = store.free_mb(folder)
    if free < need:
        raise RunFailure("preflight", f"disk full: {free:.0f} MiB free under {folder.parent}, this run needs about "
                                      f"{need:.0f} MiB; free space or use another --results directory")


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


def _save_trainable(folder: Path, tuned: Any, spec: RunSpec, train_record: dict[str, Any]) -> None:
    """Publish the stored parameters; the file is the run's 'trained' mark, so it also carries
    the training summary (a kill before the next meta.json write loses nothing)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in tuned.stored_state().items()}
    with store.atomic_path(folder / "trainable.safetensors") as tmp:
        save_file(state, str(tmp), metadata={
            "schema_version": str(SCHEMA_VERSION), "method": spec.method, "method_version": spec.method_version,
            "train_key": spec.train_key, "train_record": json.dumps(train_record, default=str)})


def _load_trainable(folder: Path, tuned: Any) -> dict[str, Any]:
    """Load the stored parameters into ``tuned``; returns the training summary saved with them."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = folder / "trainable.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
    version = metadata.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise BenchError(f"{path}: schema version {version}, expected {SCHEMA_VERSION}; rerun with --force")
    tuned.load_stored(load_file(str(path)))
    return json.loads(metadata.get("train_record") or "{}")


def check_results_writable(results: Path, need_mb: float = 50.0) -> None:
    """Fail before any training when results/ cannot take files (a full disk, a read-only mount)."""
    runs = store.runs_dir(results)
    try:
        runs.mkdir(parents=True, exist_ok=True)
        probe = runs / f".probe.{os.getpid()}{store.TMP_SUFFIX}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise BenchError(f"results directory {results} is not writable ({e.strerror or e})") from None
    free = store.free_mb(runs)
    if free < need_mb:
        raise BenchError(f"results directory {results} has only {free:.0f} MiB free; need at least {need_mb:.0f} MiB")
