"""TensorBoard: event files under ``<results>/tensorboard/<suite>/<label>/<run>/``.

View with ``tensorboard --logdir results/tensorboard``. Scalars: ``train/loss``,
``train/lr`` per optimizer step, ``dev/loss`` per evaluation, the final metrics as
``metrics/<split>/<metric>`` and the cost as ``cost/<name>`` at the last step; the resolved
spec as text (``spec``). Written with torch's ``SummaryWriter`` (needs the ``tensorboard``
package: ``pip install 'prefix-bench[tensorboard]'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.registry import TRACKERS
from bench.trackers import flat_cost, flat_metrics, results_root, safe_path_part

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec


def log_dir(spec: RunSpec, run_dir: Path) -> Path:
    """Where a run's event files go: one folder per run, grouped by suite and method label."""
    d = spec.data
    size = f"n{d.train_size}-subset{d.subset}" if d.train_size is not None else "full"
    run = f"{d.name}-{size}-seed{spec.seed}-{spec.train_key[:10]}"
    return results_root(run_dir) / "tensorboard" / safe_path_part(spec.suite) / safe_path_part(spec.method_label) / \
        safe_path_part(run)


@TRACKERS.register("tensorboard")
class TensorBoardTracker:
    """Event files for TensorBoard (offline by nature)."""

    name = "tensorboard"
    module = "tensorboard"
    extra = "tensorboard"

    def __init__(self) -> None:
        self.writer: Any = None
        self.last_step = 0

    def start(self, spec: RunSpec, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir(spec, run_dir)))
        # TensorBoard renders text as markdown: a code block keeps the JSON readable
        self.writer.add_text("spec", "```\n" + json.dumps(spec.to_json(), indent=2, default=str) + "\n```", 0)

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.last_step = max(self.last_step, step)

    def log_dev(self, step: int, dev_loss: float) -> None:
        self.writer.add_scalar("dev/loss", dev_loss, step)

    def finish(self, metrics: pd.DataFrame, cost: Mapping[str, Any]) -> None:
        for name, value in flat_metrics(metrics).items():
            self.writer.add_scalar(f"metrics/{name}", value, self.last_step)
        for name, value in flat_cost(cost).items():
            self.writer.add_scalar(name, value, self.last_step)
        self.writer.close()

    def abort(self, reason: str) -> None:
        self.writer.add_text("error", reason, self.last_step)
        self.writer.close()
