"""Canonical JSON and the run keys.

``train_key`` = sha256 over what determines the trained parameters (schema version, model
fingerprint, method + resolved config + VERSION, dataset + VERSION + split definition, train
size, subset, seed, training config). ``decode_key`` adds the decoding config;
``score_key`` adds ``{metric id: VERSION}``. Paths, device, worker count and logging are not
part of any key: they do not change the numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

KEY_CHARS = 16  # 64 bits: collisions are irrelevant at any realistic number of runs


def _normalize(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            raise ValueError("non-finite float in a run key")
        # 5e-05 and 0.00005 must hash alike; repr is shortest round-trip in Python 3.
        return float(repr(obj)) if not obj.is_integer() else obj
    if isinstance(obj, dict):
        return {str(k): _normalize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalize(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: equal content gives equal text."""
    return json.dumps(_normalize(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:KEY_CHARS]


def content_digest(data: bytes) -> str:
    """``sha256:<16 hex>`` of a data file's bytes: its fingerprint in a run key."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:KEY_CHARS]
