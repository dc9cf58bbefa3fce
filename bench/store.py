"""The results cache: one folder per trained run, every file atomic and schema-versioned.

    <results>/runs/<train_key>/spec.json             the resolved RunSpec (+ keys)
    <results>/runs/<train_key>/meta.json             status, stage, error, attempts, seeds, timings, params, provenance
    <results>/runs/<train_key>/trainable.safetensors stored parameters (prefix K/V, adapters, ...)
    <results>/runs/<train_key>/train_ids.json        ids of the examples trained on (and dev)
    <results>/runs/<train_key>/checkpoint.pt         resumable training state (only while training)
    <results>/runs/<train_key>/predictions.parquet   split, source_id, source, prediction, references, fields, decode_key
    <results>/runs/<train_key>/metrics.parquet       long form, one row per (score_key, split, group, metric)

Each file is written to a temporary name in the same folder, fsynced and renamed, so a killed
process never leaves a file that looks finished; the leftovers of a dead writer are swept by
the next owner. A run folder is owned by one process at a time through ``lock`` (see there).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import SCHEMA_VERSION, faults
from bench.errors import BenchError

if TYPE_CHECKING:  # pandas and pyarrow load where a frame or a parquet file is used
    import pandas as pd

# A lock whose owner cannot be checked by process id (another host, another container) is
# dead once its file has not been touched for this long; owners touch it every HEARTBEAT_S.
# Both can be set from the environment (a cluster with slow shared storage may want more).
LOCK_LEASE_S = float(os.environ.get("BENCH_LOCK_LEASE_S", "300"))
HEARTBEAT_S = float(os.environ.get("BENCH_LOCK_HEARTBEAT_S", "30"))
RECLAIM_MUTEX_STALE_S = 30.0  # a reclaimer holds its mutex for milliseconds


def runs_dir(results: Path) -> Path:
    return Path(results) / "runs"


def run_dir(results: Path, train_key: str) -> Path:
    return runs_dir(results) / train_key


def adopt_stored_keys(specs: list[Any], results: Path) -> list[Any]:
    """Each RunSpec, or its ``legacy_variant`` where only that key's folder is stored: runs keyed
    before keys were built from values stay cached, reported and comparable."""
    out = []
    for spec in specs:
        old = spec.legacy_variant()
        if old is not None and not run_dir(results, spec.train_key).exists() and run_dir(results, old.train_key).exists():
            spec = old
        out.append(spec)
    return out


# ----------------------------------------------------------------------------- atomic writes

TMP_SUFFIX = ".tmp"


def _tmp(path: Path) -> Path:
    # pid and thread: a Dask worker runs tasks in threads of one process.
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    # The rename itself must survive a crash of the machine, not only of the process.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, path: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    faults.checkpoint(f"replace:{path.name}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; published on success, removed on error."""
    tmp = _tmp(path)
    try:
        yield tmp
        _publish(tmp, path)
    except BaseException:
        # A full disk must not keep the partial file (it holds the space the next run needs).
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def sweep_tmp(folder: Path) -> list[str]:
    """Remove the temporary files of dead writers; call only while holding the folder's lock."""
    removed = []
    for p in folder.glob(f".*{TMP_SUFFIX}"):
        if p.name.startswith(".lock."):
            # Lock candidates are written by processes that do not own the folder: only
            # old ones are leftovers.
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime < RECLAIM_MUTEX_STALE_S:
                    continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p.name)
    return removed


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    data = {"schema_version": SCHEMA_VERSION, **obj}
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BenchError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError as e:
        raise BenchError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise BenchError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a JSON object, got {type(data).__name__}")
    _check_version(path, data.get("schema_version"))
    return data


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"schema_version"] = str(SCHEMA_VERSION).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BenchError(f"{path}: not a readable parquet file (damaged or truncated: {first})") from None
    version = (table.schema.metadata or {}).get(b"schema_version")
    _check_version(path, int(version) if version else None)
    return table.to_pandas()


def _check_version(path: Path, version: Any) -> None:
    if version != SCHEMA_VERSION:
        raise BenchError(
            f"{path}: schema version {version} but this bench reads version {SCHEMA_VERSION}; "
            "use the bench version that wrote it, or move the folder aside and rerun the suite"
        )


def free_mb(results: Path) -> float:
    """Free space on the file system holding ``results`` (its nearest existing ancestor)."""
    import shutil

    p = Path(results).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free / 2**20


# ----------------------------------------------------------------------------- locks
#
# ``<run folder>/lock`` holds {token, pid, host, pidns, boot, start, time} of its owner.
# - Taking it is exclusive and atomic: the owner's record is written to a private file and
#   hard-linked to ``lock`` (link fails when ``lock`` exists; NFS-safe, and readers never see
#   a half-written lock).
# - A lock is stale when its owner is provably dead: same machine (host, boot id and pid
#   namespace equal) and the pid is gone, a zombie, or a newer process with the same pid (its
#   start time differs). Otherwise (another host or container) the owner must touch the file
#   every HEARTBEAT_S; one untouched for LOCK_LEASE_S is stale.
# - A stale lock is removed under a short mkdir mutex, after checking that it is still the
#   same stale lock, then taken the ordinary way: two reclaimers never both win.
# - The owner's heartbeat thread notices if its lock was taken over (its lease ran out while
#   it was frozen); ``LockHandle.lost`` is then set and the runner stops before writing.


class LockBusy(Exception):
    """Another live process holds the run's lock."""


@functools.lru_cache(maxsize=1)
def _machine() -> dict[str, str]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return {"host": socket.gethostname(), "boot": read("/proc/sys/kernel/random/boot_id"), "pidns": pidns}


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a live process from /proc, None where unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], fields[19]


def _owner_record(token: str) -> dict[str, Any]:
    stat = _proc_stat(os.getpid())
    return {"token": token, "pid": os.getpid(), **_machine(), "start": stat[1] if stat else "", "time": time.time()}


def _same_machine(info: Mapping[str, Any]) -> bool:
    me = _machine()
    return all(info.get(k) == me[k] for k in ("host", "boot", "pidns")) and bool(me["boot"] or me["host"])


def _pid_dead(info: Mapping[str, Any]) -> bool:
    try:
        pid = int(info["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False  # exists but not ours to signal, or an unreadable record: not provably dead
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, start = stat
    # A zombie is dead (killed, not yet reaped); a different start time is a reused pid.
    return state == "Z" or bool(info.get("start") and info["start"] != start)


def _lease_expired(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > LOCK_LEASE_S
    except FileNotFoundError:
        return True


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The owner record, {} for an unreadable/empty file, None when there is no lock."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def lock_is_stale(path: Path, info: Mapping[str, Any]) -> bool:
    if not info:
        # Only a damaged file or a file system without hard links (below) leaves this;
        # give a writer time to finish before calling it dead.
        return _age(path) > RECLAIM_MUTEX_STALE_S
    if _same_machine(info):
        return _pid_dead(info)
    return _lease_expired(path)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _create(path: Path, record: Mapping[str, Any]) -> bool:
    """Create ``path`` holding ``record`` iff it does not exist; atomic."""
    tmp = path.with_name(f".lock.{record['token']}{TMP_SUFFIX}")
    tmp.write_text(json.dumps(record))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some FUSE/SMB mounts): exclusive create, then write.
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        return True
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _remove_if_same(path: Path, seen: Mapping[str, Any]) -> None:
    """Delete the stale lock ``seen`` unless someone replaced it meanwhile (under a mutex)."""
    mutex = path.with_name("lock.reclaim")
    try:
        os.mkdir(mutex)
    except FileExistsError:
        if _age(mutex) > RECLAIM_MUTEX_STALE_S:  # its holder died within those milliseconds
            with contextlib.suppress(OSError):
                os.rmdir(mutex)
        else:
            time.sleep(0.05)
        return
    try:
        current = _read_lock(path)
        if current is not None and current.get("token") == seen.get("token") and lock_is_stale(path, current):
            path.unlink()
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(mutex)


@dataclass
class LockHandle:
    """A held run lock; ``lost`` is set if it was taken over while held."""

    path: Path
    token: str
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def still_mine(self) -> bool:
        info = _read_lock(self.path)
        return bool(info) and info.get("token") == self.token

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if not self.still_mine():
                self.lost.set()
                return
            with contextlib.suppress(OSError):
                os.utime(self.path)


def acquire(folder: Path, attempts: int = 6) -> LockHandle:
    """Take the run folder's lock or raise LockBusy naming the live owner."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lock"
    token = uuid.uuid4().hex
    for _ in range(attempts):
        if _create(path, _owner_record(token)):
            handle = LockHandle(path, token)
            threading.Thread(target=handle._beat, name=f"bench-lock-{folder.name}", daemon=True).start()
            return handle
        info = _read_lock(path)
        if info is None:
            continue  # released between our two looks
        if not lock_is_stale(path, info):
            raise LockBusy(_describe(info))
        _remove_if_same(path, info)
    raise LockBusy(f"{path}: could not take the lock after {attempts} tries")


def release(handle: LockHandle) -> None:
    handle._stop.set()
    if handle.still_mine():
        with contextlib.suppress(OSError):
            handle.path.unlink()


@contextlib.contextmanager
def lock(folder: Path) -> Iterator[LockHandle]:
    """Exclusive ownership of a run folder; raises LockBusy when a live process has it."""
    handle = acquire(folder)
    try:
        yield handle
    finally:
        release(handle)


def _describe(info: Mapping[str, Any]) -> str:
    if not info:
        return "a lock being written"
    return f"pid {info.get('pid')} on {info.get('host')} since {time.strftime('%H:%M:%S', time.localtime(info.get('time', 0)))}"


def tidy_finished(folder: Path) -> None:
    """Clean a finished run whose process was killed after it wrote 'done' but before it released
    its lock (or swept a temporary file): later reruns skip the run without locking it."""
    if not (folder / "lock").exists() and not any(folder.glob(f".*{TMP_SUFFIX}")):
        return
    try:
        with lock(folder):  # reclaims the lock only when its owner is gone
            sweep_tmp(folder)
    except LockBusy:
        pass  # a live process holds it; it cleans up itself


def lock_owner(folder: Path) -> dict[str, Any] | None:
    """The live owner's record of the run's lock, None when it is free or stale."""
    path = folder / "lock"
    info = _read_lock(path)
    if info is None or lock_is_stale(path, info):
        return None
    return info


def is_locked(folder: Path) -> bool:
    return lock_owner(folder) is not None


# ----------------------------------------------------------------------------- damage
#
# A file is published atomically, so a damaged one comes from outside (a bad copy, a disk
# error, a hand edit). Readers report it instead of raising: `bench ls` lists the run as
# damaged, report/regress skip it (and fail with "missing"), `bench run` removes the damaged
# files under the run's lock and redoes only the stages whose files went.

SPEC_FIELDS = ("suite", "model", "method", "method_label", "method_version", "data", "seed")


def _spec_problem(path: Path) -> str | None:
    spec = read_json(path).get("spec")
    if not isinstance(spec, dict):
        return f"{path}: no 'spec' object"
    lacking = [k for k in SPEC_FIELDS if k not in spec]
    if lacking or not isinstance(spec["data"], dict) or not all(k in spec["data"] for k in ("name", "version")):
        return f"{path}: spec lacks {', '.join(lacking) or 'data.name/version'}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """Header and length check (no tensor is read): a truncated or overwritten file fails it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n > size - 8:
                return f"{path}: truncated safetensors file ({size} bytes)"
            header = json.loads(f.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        return f"{path}: not a safetensors file ({type(e).__name__})"
    if 8 + n + max(ends, default=0) != size:
        return f"{path}: truncated safetensors file ({size} bytes, header says {8 + n + max(ends, default=0)})"
    return None


def _file_problem(path: Path) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.name == "spec.json":
            return _spec_problem(path)
        if path.suffix == ".json":
            read_json(path)
        elif path.suffix == ".parquet":
            version = (pq.read_schema(path).metadata or {}).get(b"schema_version")
            _check_version(path, int(version) if version else None)
        elif path.suffix == ".safetensors":
            return _safetensors_problem(path)
    except BenchError as e:
        return str(e).splitlines()[0]
    except (pa.ArrowException, OSError, ValueError) as e:
        return f"{path}: unreadable ({(str(e).splitlines() or [type(e).__name__])[0][:160]})"
    return None


RUN_FILE_NAMES = ("spec.json", "meta.json", "train_ids.json", "trainable.safetensors", "predictions.parquet",
                  "metrics.parquet")


def damaged_files(folder: Path) -> dict[str, str]:
    """``{file name: one-line reason}`` for the run files of ``folder`` that do not read; a
    folder holding results but no spec.json counts its spec as damaged."""
    out = {}
    present = [name for name in RUN_FILE_NAMES if (folder / name).exists()]
    for name in present:
        problem = _file_problem(folder / name)
        if problem is not None:
            out[name] = problem
    if present and "spec.json" not in present:
        out["spec.json"] = f"{folder / 'spec.json'}: missing (the folder holds {', '.join(present)})"
    return out


def read_or(default: Any, reader: Any, *args: Any) -> Any:
    """``reader(*args)``, or ``default`` when the file it reads is damaged."""
    try:
        return reader(*args)
    except BenchError:
        return default


# ----------------------------------------------------------------------------- reading


def read_meta(folder: Path) -> dict[str, Any] | None:
    path = folder / "meta.json"
    return read_json(path) if path.exists() else None


def read_predictions(folder: Path, decode_key: str | None = None) -> pd.DataFrame:
    import pandas as pd

    path = folder / "predictions.parquet"
    if not path.exists():
        return pd.DataFrame(columns=["decode_key", "split", "source_id", "source", "prediction", "references", "fields"])
    df = read_parquet(path)
    return df[df["decode_key"] == decode_key].reset_index(drop=True) if decode_key else df


def scored_keys(folder: Path, meta: Mapping[str, Any] | None = None) -> set[str]:
    """The score_keys with rows in ``folder``'s metrics.parquet.

    meta.json lists them (``score_keys``, written with status 'done'), so a rerun checks its
    cache without opening a parquet file (or importing pandas); runs stored before that list
    existed are read from the file, only its score_key column."""
    import pyarrow.parquet as pq

    path = folder / "metrics.parquet"
    if not path.exists():
        return set()
    listed = (meta or {}).get("score_keys")
    if isinstance(listed, list):
        return {str(k) for k in listed}
    table = pq.ParquetFile(path).read(columns=["score_key"])  # read_table would import pyarrow.dataset
    version = (table.schema.metadata or {}).get(b"schema_version")
    _check_version(path, int(version) if version else None)
    return {str(k) for k in table.column("score_key").to_pylist()}


def read_metrics(folder: Path) -> pd.DataFrame:
    import pandas as pd

    path = folder / "metrics.parquet"
    return read_parquet(path) if path.exists() else pd.DataFrame()


def upsert_parquet(path: Path, new: pd.DataFrame, key: str) -> None:
    """Replace the rows of ``path`` whose ``key`` column equals the new rows' key; atomic."""
    import pandas as pd

    if path.exists():
        old = read_parquet(path)
        old = old[~old[key].isin(set(new[key]))]
        new = pd.concat([old, new], ignore_index=True)
    write_parquet(path, new)


RUN_COLUMNS = [
    "train_key", "suite", "model", "method", "method_label", "method_version", "dataset",
    "dataset_version", "train_size", "subset", "seed", "status", "stage", "error",
    "n_trained", "n_stored", "base_total", "train_time_s", "step_time_median_s",
    "tokens_per_s", "memory_above_model_mb", "peak_memory_mb", "decode_time_s", "train_other_cpu",
    "decode_other_cpu", "attempts", "path",
]


def _decode_time_complete(meta: Mapping[str, Any]) -> bool:
    """False when the run's decode resumed stored batches whose times were not kept: versions
    before the batch times were stored recorded only the resumed attempt's part of the decode."""
    decoding = [a for a in meta.get("attempts", []) if "decode_resumed_batches" in a]
    if not decoding:
        return True
    last = decoding[-1]
    return not last["decode_resumed_batches"] or bool(last.get("decode_time_complete", False))


def load_runs(results: Path) -> pd.DataFrame:
    """One row per run folder: spec summary + meta (status, params, costs)."""
    import pandas as pd

    rows = []
    root = runs_dir(results)
    if Path(results).exists() and not Path(results).is_dir():
        raise BenchError(f"results directory {results} is a file, not a folder")
    if root.exists() and not root.is_dir():
        raise BenchError(f"{root}: is a file; a results folder holds its runs in the folder runs/")
    for folder in sorted(root.iterdir()) if root.exists() else []:
        if not folder.is_dir():
            continue
        damage = damaged_files(folder)
        if damage:
            rows.append({**dict.fromkeys(RUN_COLUMNS), "train_key": folder.name, "status": "damaged",
                         "error": next(iter(damage.values())), "attempts": 0, "path": str(folder)})
            continue
        if not (folder / "spec.json").exists():
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
                "memory_above_model_mb": cost.get("memory_above_model_mb"),
                "peak_memory_mb": cost.get("peak_memory_mb"),
                "decode_time_s": cost.get("decode_time_s") if _decode_time_complete(meta) else None,
                "train_other_cpu": cost.get("train_other_cpu"),
                "decode_other_cpu": cost.get("decode_other_cpu"),
                "attempts": len(meta.get("attempts", [])),
                "path": str(folder),
            }
        )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)
