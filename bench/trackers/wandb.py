"""Weights & Biases: one W&B run per bench run, in the project named after the suite.

Offline unless asked otherwise: ``WANDB_MODE`` defaults to ``offline`` here (a benchmark must
never stop at a login prompt); the run folder lands in ``<results>/wandb/`` (``WANDB_DIR``
overrides) and ``wandb sync`` uploads it later. ``WANDB_MODE=online`` (with a login) logs
live; ``WANDB_PROJECT`` / ``WANDB_ENTITY`` override the project / entity. Logged: the spec as
the run's config, ``train/loss`` and ``train/lr`` per step, ``dev/loss`` per evaluation, the
final ``<split>/<metric>`` values and ``cost/<name>`` (in the history and the summary).
``pip install 'prefix-bench[wandb]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.registry import TRACKERS
from bench.trackers import flat_cost, flat_metrics, results_root, run_name

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec


@TRACKERS.register("wandb")
class WandbTracker:
    """One W&B run (its own object: several bench runs in one process never share state)."""

    name = "wandb"
    module = "wandb"
    extra = "wandb"

    def __init__(self) -> None:
        self.run: Any = None
        self.last_step = 0

    def start(self, spec: RunSpec, run_dir: Path) -> None:
        import wandb

        root = Path(os.environ.get("WANDB_DIR") or results_root(run_dir))
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or spec.suite,
            name=run_name(spec), group=spec.method_label, job_type="train", dir=str(root),
            mode=os.environ.get("WANDB_MODE") or "offline", config=spec.to_json(),
            tags=[spec.method, spec.data.name], reinit="create_new",
            # console off: our own progress and error lines stay ours, not W&B's captured log
            settings=wandb.Settings(console="off", quiet=True, silent=True, disable_git=True),
        )  # fmt: skip

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self.run.log({"train/loss": loss, "train/lr": lr}, step=step)
        self.last_step = max(self.last_step, step)

    def log_dev(self, step: int, dev_loss: float) -> None:
        self.run.log({"dev/loss": dev_loss}, step=step)

    def finish(self, metrics: pd.DataFrame, cost: Mapping[str, Any]) -> None:
        values = flat_metrics(metrics) | flat_cost(cost)
        self.run.log(values, step=self.last_step)
        self.run.summary.update(values)
        self.run.finish(exit_code=0)

    def abort(self, reason: str) -> None:
        self.run.summary["bench/error"] = reason
        self.run.finish(exit_code=1)
