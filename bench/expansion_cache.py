"""A suite's expansion, remembered: the resolved RunSpecs of a suite file, without importing
the method, dataset and metric registries (hence torch and transformers).

Expanding a suite needs every component's VERSION and Config class, and the method modules
import torch; a rerun whose runs are all cached needs nothing else from them. So ``bench run``
stores the expansion under ``$BENCH_CACHE/expansions/<key>.json`` and reads it back when
nothing it depends on changed. The key covers the suite file's bytes, the working directory
(suites may name local model folders), the schema version and a digest of every file of the
``bench`` package (a VERSION or a default changed in code changes the key); the models'
fingerprints are recomputed on every read (torch-free) and must match, as must the content hashes
of the data files a suite names (the ``custom`` dataset). A read also checks
that every spec rebuilt from JSON gives back its stored keys. Anything unexpected means: no
cache, expand as usual.

The cached specs only decide what is cached; ``bench run`` expands the suite for real before
any run executes (tests/test_startup.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import SCHEMA_VERSION
from bench.config import DataSpec, DecodeConfig, RunSpec, TrainConfig
from bench.identity import content_digest, digest

FORMAT = 1
PACKAGE = Path(__file__).resolve().parent


@functools.cache
def code_digest() -> str:
    """sha256 over every file of the bench package (paths and bytes), caches excluded."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(root) / name
            h.update(str(path.relative_to(PACKAGE)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _path(suite: Path) -> Path | None:
    from bench.models import cache_dir

    try:
        text = suite.read_bytes()
    except OSError:
        return None
    key = digest({"format": FORMAT, "schema": SCHEMA_VERSION, "suite": hashlib.sha256(text).hexdigest(),
                  "cwd": os.getcwd(), "code": code_digest()})
    return cache_dir() / "expansions" / f"{key}.json"


def spec_from_json(d: Mapping[str, Any]) -> RunSpec:
    """The RunSpec that ``RunSpec.to_json`` wrote (keys checked by the caller)."""
    data = dict(d["data"])
    data["eval_splits"] = tuple(data["eval_splits"])
    data["path_options"] = tuple(data.get("path_options", ()))
    for name in ("train_filter", "eval_filter"):
        data[name] = {k: tuple(v) for k, v in data[name].items()}
    fields = {k: v for k, v in d.items() if k not in ("train_key", "decode_key", "score_key")}
    return RunSpec(**fields | {"data": DataSpec(**data), "train": TrainConfig(**d["train"]),
                               "decode": DecodeConfig(**d["decode"])})


def _data_files_unchanged(spec: RunSpec) -> bool:
    """Whether the files a spec's dataset names (``path_options``) still have the content hashes
    recorded in its ``fingerprint`` option (a custom dataset's files; torch-free)."""
    d = spec.data
    prints = d.options.get("fingerprint") or {}
    for name in d.path_options:
        path = d.options.get(name)
        if path and prints.get(name) != content_digest(Path(path).read_bytes()):
            return False
    return True


def load(suite: Path) -> tuple[str, list[str], list[RunSpec]] | None:
    """(suite name, models, specs) when a valid stored expansion exists, else None."""
    from bench.models import fingerprint

    path = _path(suite)
    if path is None or not path.exists():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("format") != FORMAT:
            return None
        models = dict(stored["models"])
        if any(fingerprint(m) != fp for m, fp in models.items()):
            return None  # the weights changed: their fingerprint enters every key
        specs = []
        for d in stored["specs"]:
            spec = spec_from_json(d)
            if (spec.train_key, spec.decode_key, spec.score_key) != (d["train_key"], d["decode_key"], d["score_key"]):
                return None
            if not _data_files_unchanged(spec):
                return None  # a data file named in the suite changed: its hash enters the keys
            specs.append(spec)
        return str(stored["name"]), list(models), specs
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another layout: expand as usual


def save(suite: Path, name: str, models: Sequence[str], specs: Sequence[RunSpec]) -> None:
    """Remember the expansion of ``suite`` (best effort: a read-only cache costs only time)."""
    from bench.models import fingerprint
    from bench.store import write_json

    path = _path(suite)
    if path is None:
        return
    fps = {m: fingerprint(m) for m in models}
    if any(sp.model_fingerprint != fps.get(sp.model) for sp in specs):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"format": FORMAT, "name": name, "models": fps, "specs": [sp.to_json() for sp in specs]})
    except OSError:
        pass
