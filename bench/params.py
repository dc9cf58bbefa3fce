"""Parameter counts of a suite's methods on a model, without training.

Each method entry is applied to its own copy of the model (methods change the model in
place: unfreezing, injected LoRA layers, adapter hooks) and reports two counts, as the
paper does: *trained* (what the optimizer updates; prefix-tuning's MLP included) and
*stored* (what is kept per task; prefix-tuning's final key/values), each also as a
percentage of the base model's own parameter count.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench.errors import BenchError, ConfigError

COLUMNS = (
    "label",
    "method",
    "config",
    "trained",
    "stored",
    "base_total",
    "trained_pct",
    "stored_pct",
    "detail",
)


def make_config(method: Any, config: Mapping[str, Any], where: str) -> Any:
    """The method's frozen Config from a suite mapping; unknown keys and bad values raise."""
    from bench.config import from_mapping

    problems: list[str] = []
    obj = from_mapping(method.Config, config, where, problems)
    if problems:
        raise ConfigError(problems)
    return obj


def _detail(tuned: Any) -> str:
    """What the method resolved on this model (an adapter's solved bottleneck, a prefix's
    length), where it says so."""
    describe = getattr(tuned, "describe", None)
    if callable(describe):
        return str(describe())
    meta = getattr(tuned, "metadata", None)
    if isinstance(meta, Mapping):
        return " ".join(f"{k}={v}" for k, v in meta.items() if k != "method")
    return ""


def param_table(
    *, model: str, entries: Sequence[Any], from_config: bool = False, seed: int = 0
) -> pd.DataFrame:
    """One row per method entry (``label``, ``method``, ``config``) applied to ``model``:
    trained and stored counts and their % of the base model (columns: ``COLUMNS``)."""
    from bench.models import load_model
    from bench.registry import METHODS

    if not entries:
        raise BenchError(f"no method entries to count on {model}")
    loaded = load_model(model, from_config=from_config, seed=seed)
    base_total = sum(p.numel() for p in loaded.model.parameters())
    rows = []
    for entry in entries:
        method = METHODS.get(entry.method)()
        config = make_config(method, entry.config, f"method {entry.label!r} config")
        # Methods modify the model in place; each gets a pristine copy.
        tuned = method.apply(copy.deepcopy(loaded.model), loaded.tokenizer, config)
        trained, stored = int(tuned.n_trained), int(tuned.n_stored)
        rows.append(
            {
                "label": entry.label,
                "method": entry.method,
                "config": json.dumps(dict(entry.config), sort_keys=True, default=list),
                "trained": trained,
                "stored": stored,
                "base_total": base_total,
                "trained_pct": 100.0 * trained / base_total,
                "stored_pct": 100.0 * stored / base_total,
                "detail": _detail(tuned),
            }
        )
        del tuned
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_table(table: pd.DataFrame, *, model: str) -> str:
    """The table as text: counts with thousands separators, percentages to 3 decimals."""
    view = pd.DataFrame(
        {
            "label": table["label"],
            "method": table["method"],
            "trained": table["trained"].map("{:,}".format),
            "trained %": table["trained_pct"].map("{:.3f}".format),
            "stored": table["stored"].map("{:,}".format),
            "stored %": table["stored_pct"].map("{:.3f}".format),
            "detail": table["detail"],
        }
    )
    total = int(table["base_total"].iloc[0]) if len(table) else 0
    return f"{model}: {total:,} parameters\n" + view.to_string(index=False)
