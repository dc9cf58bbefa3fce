"""The results cache: one folder per trained run, every file atomic and schema-versioned.

    <results>/runs/<train_key>/spec.json             the resolved RunSpec (+ keys)
    <results>/runs/<train_key>/meta.json             status, stage, error, timings, params, provenance
    <results>/runs/<train_key>/trainable.safetensors stored parameters (prefix K/V, adapters, ...)
    <results>/runs/<train_key>/train_ids.json        ids of the examples trained on (and dev)
    <results>/runs/<train_key>/predictions.parquet   split, source_id, source, prediction, references, fields, decode_key
    <results>/runs/<train_key>/metrics.parquet       long form, one row per (score_key, split, group, metric)

Each file is written to a temporary name in the same folder and renamed, so a killed process
never leaves a file that looks finished. A run folder is owned by one process at a time
through ``lock``; a lock whose process is dead (same host) or whose lease expired is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench import SCHEMA_VERSION
from bench.errors import BenchError

LOCK_LEASE_S = 6 * 3600.0  # a lock on another host older than this is considered dead
HEARTBEAT_S = 60.0


def runs_dir(results: Path) -> Path:
    return Path(results) / "runs"


def run_dir(results: Path, train_key: str) -> Path:
    return runs_dir(results) / train_key


# ----------------------------------------------------------------------------- atomic writes


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_replace(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    data = {"schema_version": SCHEMA_VERSION, **obj}
    tmp = _tmp(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    _fsync_replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno})") from None
    _check_version(path, data.get("schema_version"))
    return data


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"schema_version"] = str(SCHEMA_VERSION).encode()
    table = table.replace_schema_metadata(meta)
    tmp = _tmp(path)
    pq.write_table(table, tmp)
    _fsync_replace(tmp, path)


def read_parquet(path: Path) -> pd.DataFrame:
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"schema_version")
    _check_version(path, int(version) if version else None)
    return table.to_pandas()


def _check_version(path: Path, version: Any) -> None:
    if version != SCHEMA_VERSION:
        raise BenchError(
            f"{path}: schema version {version} but this bench reads version {SCHEMA_VERSION}; "
            "use the bench version that wrote it, or move the folder aside and rerun the suite"
        )


# ----------------------------------------------------------------------------- locks


def _lock_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}


def _lock_is_stale(info: Mapping[str, Any]) -> bool:
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, KeyError):
            return False
        return False
    return time.time() - float(info.get("time", 0)) > LOCK_LEASE_S


class LockBusy(Exception):
    """Another live process holds the run's lock."""


@contextlib.contextmanager
def lock(folder: Path) -> Iterator[Path]:
    """Exclusive ownership of a run folder; raises LockBusy when a live process has it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lock"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                info = json.loads(path.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                info = {}
            if info and not _lock_is_stale(info):
                raise LockBusy(str(info)) from None
            if not info:
                # Being written right now, or a crash between create and write: give it a moment.
                time.sleep(0.2)
                try:
                    info = json.loads(path.read_text() or "{}")
                except (OSError, json.JSONDecodeError):
                    info = {}
                if info and not _lock_is_stale(info):
                    raise LockBusy(str(info)) from None
            # Stale: take it over by atomic rename of a fresh lock (never by delete + create,
            # which would let two reclaimers both win).
            tmp = _tmp(path)
            tmp.write_text(json.dumps(_lock_info()))
            os.replace(tmp, path)
            time.sleep(0.05)
            try:
                mine = json.loads(path.read_text()).get("pid") == os.getpid()
            except (OSError, json.JSONDecodeError):
                mine = False
            if mine:
                break
            continue
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(_lock_info()))
            break
    else:
        raise LockBusy(str(path))
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            info = json.loads(path.read_text() or "{}")
            if info.get("pid") == os.getpid():
                path.unlink()


def is_locked(folder: Path) -> bool:
    path = folder / "lock"
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return False
    return bool(info) and not _lock_is_stale(info)


# ----------------------------------------------------------------------------- reading


def read_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / "meta.json"
    return read_json(path) if path.exists() else None


def read_predictions(folder: Path, decode_key: str | None = None) -> pd.DataFrame:
    path = folder / "predictions.parquet"
    if not path.exists():
        return pd.DataFrame(columns=["decode_key", "split", "source_id", "source", "prediction", "references", "fields"])
    df = read_parquet(path)
    return df[df["decode_key"] == decode_key].reset_index(drop=True) if decode_key else df


def read_metrics(folder: Path) -> pd.DataFrame:
    path = folder / "metrics.parquet"
    return read_parquet(path) if path.exists() else pd.DataFrame()


def upsert_parquet(path: Path, new: pd.DataFrame, key: str) -> None:
    """Replace the rows of ``path`` whose ``key`` column equals the new rows' key; atomic."""
    if path.exists():
        old = read_parquet(path)
        old = old[~old[key].isin(set(new[key]))]
        new = pd.concat([old, new], ignore_index=True)
    write_parquet(path, new)


RUN_COLUMNS = [
    "train_key", "suite", "model", "method", "method_label", "method_version", "dataset",
    "dataset_version", "train_size", "subset", "seed", "status", "stage", "error",
    "n_trained", "n_stored", "base_total", "train_time_s", "step_time_median_s",
    "tokens_per_s", "peak_memory_mb", "decode_time_s", "path",
]


def load_runs(results: Path) -> pd.DataFrame:
    """One row per run folder: spec summary + meta (status, params, costs)."""
    rows = []
    root = runs_dir(results)
    for folder in sorted(root.iterdir()) if root.exists() else []:
        if not folder.is_dir() or not (folder / "spec.json").exists():
            continue
        spec = read_json(folder / "spec.json")["spec"]
        meta = read_meta(folder) or {"status": "pending"}
        if meta.get("status") == "running" and not is_locked(folder):
            meta["status"] = "interrupted"
        params = meta.get("params", {})
        cost = meta.get("cost", {})
        rows.append(
            {
                "train_key": folder.name,
                "suite": spec["suite"],
                "model": spec["model"],
                "method": spec["method"],
                "method_label": spec["method_label"],
                "method_version": spec["method_version"],
                "dataset": spec["data"]["name"],
                "dataset_version": spec["data"]["version"],
                "train_size": spec["data"]["train_size"],
                "subset": spec["data"]["subset"],
                "seed": spec["seed"],
                "status": meta.get("status"),
                "stage": meta.get("stage"),
                "error": meta.get("error"),
                "n_trained": params.get("trained"),
                "n_stored": params.get("stored"),
                "base_total": params.get("base_total"),
                "train_time_s": cost.get("train_time_s"),
                "step_time_median_s": cost.get("step_time_median_s"),
                "tokens_per_s": cost.get("tokens_per_s"),
                "peak_memory_mb": cost.get("peak_memory_mb"),
                "decode_time_s": cost.get("decode_time_s"),
                "path": str(folder),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def load_results(results: Path) -> pd.DataFrame:
    """Every stored metric value joined with its run's summary: the frame reports read."""
    runs = load_runs(results)
    frames = []
    for folder in runs["path"]:
        m = read_metrics(Path(folder))
        if not m.empty:
            m.insert(0, "train_key", Path(folder).name)
            frames.append(m)
    if not frames:
        return runs.iloc[0:0].assign(score_key=None, split=None, group=None, metric=None, value=None)
    metrics = pd.concat(frames, ignore_index=True)
    return metrics.merge(runs, on="train_key", how="left")
