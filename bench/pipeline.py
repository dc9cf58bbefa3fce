"""The pipeline of one run, top-down: load data -> build the tuned model -> train -> decode -> score.

The stages only compute and publish the run's files; ``bench.runner`` owns the run's life
cycle around them (the lock, the attempts log in meta.json, failures and fault points'
effects), and tells :func:`run_stages` which stages the stored files already cover.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

# Everything a run executes is imported when the run's process starts, not when a stage first
# needs it: a long run must not combine the code it started with and files edited on disk since
# (a replication run failed at decoding after two hours that way: old prefix module, new decoder).
import bench.datasets
import bench.decode
import bench.methods
import bench.metrics
import bench.scoring
import bench.splits  # noqa: F401
from bench import SCHEMA_VERSION, faults, store
from bench.config import RunSpec
from bench.contention import OtherCPU
from bench.errors import BenchError
from bench.interfaces import EvalItem, Example, group_references
from bench.models import TINY, LoadedModel, load_model
from bench.train import DATA_ORDER_SALT, RunFailure

if TYPE_CHECKING:
    from bench.trackers import RunTrackers

BASE_MODEL_SEED = 0  # the init seed of the tiny random models (part of their fingerprint)


# ----------------------------------------------------------------------------- data


def _data_dir(flag: str | Path | None) -> Path | None:
    from bench.datasets.paths import resolve_data_dir

    return resolve_data_dir(str(flag) if flag is not None else None)


def subset_key(spec: RunSpec) -> str:
    """The string the low-data subset draw is seeded from (with the size and subset index)."""
    d = spec.data
    options = json.dumps({k: v for k, v in d.options.items() if k not in d.path_options}, sort_keys=True)
    filt = json.dumps({k: list(v) for k, v in d.train_filter.items()}, sort_keys=True)
    return f"{d.name}:{d.version}:{options}:{filt}"


def load_train_data(spec: RunSpec, data_dir: Path | None) -> tuple[list[Example], list[Example]]:
    """The training examples (and dev split for early stopping) of this run."""
    from bench import splits
    from bench.datastats import load_examples

    d = spec.data
    # Through load_examples: a file damaged after `bench validate` read it fails the run with a
    # line naming the file, not zlib's message that names none.
    examples = load_examples(d.name, d.train_split, data_dir=data_dir, options=d.options)
    if d.train_filter:
        examples = splits.apply_filter(examples, d.train_filter)
    if d.train_size is None:
        return list(examples), []
    train, dev = splits.sample_subset(examples, size=d.train_size, subset=d.subset, key=subset_key(spec),
                                      dev_fraction=d.dev_fraction, nested=d.nested_subsets)
    return list(train), list(dev)


def load_eval_items(spec: RunSpec, split: str, data_dir: Path | None) -> list[EvalItem]:
    from bench import splits
    from bench.datastats import load_examples

    d = spec.data
    examples = load_examples(d.name, split, data_dir=data_dir, options=d.options)
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


# ----------------------------------------------------------------------------- build

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


# ----------------------------------------------------------------------------- the stages


def run_stages(spec: RunSpec, folder: Path, level: str, meta: dict[str, Any], attempt: dict[str, Any],
               attempts: list[dict[str, Any]], *, enter: Callable[[str], None], guard: Callable[[], None],
               data_dir: Path | None, progress: bool, trackers: RunTrackers | None = None) -> pd.DataFrame:
    """Bring the run in ``folder`` from ``level`` ('new' | 'trained' | 'decoded') to scored.

    ``enter(stage)`` records each stage as it starts; ``guard()`` raises before a result file is
    published when the run's lock was lost. ``meta`` and ``attempt`` get what the stages learn.
    ``trackers`` (``--log-to``) watch the training loop; they never change what it computes.
    Returns the metric rows (already written to metrics.parquet).
    """
    if level == "decoded":
        return score_stage(spec, folder, enter=enter, guard=guard)  # rescoring needs no model
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
        # batches decoded by earlier parameters of this run (--force) are not this model's
        shutil.rmtree(folder / "decode_parts", ignore_errors=True)
        enter("preflight")
        preflight_disk(folder, tuned, checkpointing=bool(spec.train.checkpoint_every))
        enter("data")
        from bench.registry import METHODS
        from bench.train import TrainResult, train

        # `none` / `peft` with a path evaluate a model as it is: no data, no loop, 0 steps recorded
        # (a wrapper may say otherwise: `peft` with a peft_type trains)
        trains = getattr(tuned, "needs_training", getattr(METHODS.get(spec.method), "needs_training", True))
        train_ex, dev_ex = load_train_data(spec, data_dir) if trains else ([], [])
        store.write_json(folder / "train_ids.json", {
            "train": [e.example_id for e in train_ex], "dev": [e.example_id for e in dev_ex]})
        attempt["train_started"] = True
        enter("train")
        if trains:
            tr = train(tuned, loaded.tokenizer, train_ex, cfg=spec.train, seed=spec.seed, is_encoder_decoder=is_ed,
                       decoder_start_id=getattr(loaded.model.config, "decoder_start_token_id", None),
                       dev_examples=dev_ex, checkpoint_path=folder / "checkpoint.pt", progress=progress,
                       desc=f"train {spec.method_label}", on_log=trackers.on_log if trackers else None)
        else:
            tr = TrainResult(steps=0)
        attempt["resumed_from"] = tr.resumed_from
        summary = tr.summary()
        train_meta = {k: summary[k] for k in ("steps", "final_loss", "best_step", "resumed_from", "dev_losses",
                                              "dev_loss_before", "discarded_checkpoint", "losses", "stopped_at")}
        train_meta["n_train_examples"] = len(train_ex)
        train_meta["n_dev_examples"] = len(dev_ex)
        train_meta["precision"] = spec.train.precision  # autocast dtype (fp32: none)
        train_meta["group_by_length"] = spec.train.group_by_length
        train_cost = {k: summary[k] for k in ("train_time_s", "step_time_median_s", "tokens_per_s",
                                              "memory_above_model_mb", "peak_memory_mb", "train_other_cpu")}
        enter("save")
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
        enter("decode")
        faults.checkpoint("decode")
        frames, seconds = [], 0.0
        resumed, time_complete = 0, True
        others = OtherCPU()
        with others:
            for split in spec.data.eval_splits:
                items = load_eval_items(spec, split, data_dir)
                stats: dict[str, Any] = {}
                hyps, secs = decode_items(tuned, loaded, items, spec, progress, parts=decode_parts(folder, spec) / split,
                                          stats=stats)
                resumed += stats.get("resumed_batches", 0)
                if stats.get("engine_fallback"):  # e.g. an encoder-decoder: generate, not the fast engine
                    attempt[f"decode_engine_fallback.{split}"] = stats["engine_fallback"]
                time_complete &= stats.get("time_complete", True)
                seconds += secs
                frames.append(_predictions_frame(spec, split, items, hyps))
        # A resumed decode counts its stored batches' times; batches stored without one (older
        # versions) leave the total unknown, which is recorded as such rather than understated.
        cost["decode_time_s"] = round(seconds, 3) if time_complete else None
        cost["decode_other_cpu"] = others.share
        attempt["decode_resumed_batches"] = resumed
        attempt["decode_time_complete"] = time_complete
        if not time_complete:
            attempt["decode_time_partial_s"] = round(seconds, 3)
        faults.checkpoint("write_predictions")
        guard()
        store.upsert_parquet(folder / "predictions.parquet", pd.concat(frames, ignore_index=True), "decode_key")
        shutil.rmtree(decode_parts(folder, spec), ignore_errors=True)
        with contextlib.suppress(OSError):  # (kept while another decode config's batches are there)
            decode_parts(folder, spec).parent.rmdir()
    return score_stage(spec, folder, enter=enter, guard=guard)


def score_stage(spec: RunSpec, folder: Path, *, enter: Callable[[str], None], guard: Callable[[], None]) -> pd.DataFrame:
    """Score the stored predictions and publish the metric rows."""
    enter("score")
    faults.checkpoint("score")
    metrics = score_run(spec, folder)
    faults.checkpoint("write_metrics")
    guard()
    store.upsert_parquet(folder / "metrics.parquet", metrics, "score_key")
    return metrics


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


def decode_parts(folder: Path, spec: RunSpec) -> Path:
    """Where the finished batches of a decode in progress are published (removed once the
    predictions are): a kill mid-decode loses at most one batch."""
    return folder / "decode_parts" / spec.decode_key


def decode_items(tuned: torch.nn.Module, loaded: LoadedModel, items: Sequence[EvalItem], spec: RunSpec,
                 progress: bool, parts: Path | None = None, stats: dict[str, Any] | None = None
                 ) -> tuple[list[str], float]:
    from bench.decode import decode

    return decode(tuned, loaded.tokenizer, items, cfg=spec.decode, is_encoder_decoder=loaded.is_encoder_decoder,
                  max_source_tokens=spec.train.max_source_tokens, progress=progress,
                  desc=f"decode {spec.method_label}", parts=parts, stats=stats)


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


NATIVE_FOLDER = "peft_adapter"  # a run's trained tuner in its library's own format, where it has one


def _save_trainable(folder: Path, tuned: Any, spec: RunSpec, train_record: dict[str, Any]) -> None:
    """Publish the stored parameters; the file is the run's 'trained' mark, so it also carries
    the training summary (a kill before the next meta.json write loses nothing)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in tuned.stored_state().items()}
    save_native = getattr(tuned, "save_native", None)
    if save_native is not None:
        # the library's own format beside ours (PEFT's adapter folder), published before the
        # 'trained' mark so that a trained run always has it
        save_native(folder / NATIVE_FOLDER, spec.model)
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


