"""MLflow: one MLflow run per bench run, in the experiment named after the suite.

Where: ``MLFLOW_TRACKING_URI`` when set (a server, ``sqlite:///mlflow.db``...), else a local
file store ``<results>/mlruns`` (view with ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui
--backend-store-uri results/mlruns``). ``MLFLOW_EXPERIMENT_NAME`` overrides the experiment.
Logged: the flattened spec as parameters (and ``spec.json`` as an artifact), tags with the
train key and the method label; metrics ``train/loss``, ``train/lr`` per step, ``dev/loss``
per evaluation, the final ``<split>/<metric>`` values and ``cost/<name>``. ``mlflow-skinny``
is enough: ``pip install 'prefix-bench[mlflow]'``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.registry import TRACKERS
from bench.trackers import flat_cost, flat_metrics, flat_spec, results_root, run_name

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec

PARAM_CHARS = 500  # the value limit of older MLflow servers (newer ones take 6000)


def tracking_uri(run_dir: Path) -> str:
    """The user's tracking URI, else the local file store beside the runs."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (results_root(run_dir) / "mlruns").as_uri()
    if uri.startswith("file:") or "://" not in uri:
        # MLflow 3 refuses its file store unless asked for it; a local store is what works
        # offline with mlflow-skinny (a sqlite store needs the full mlflow package).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


@TRACKERS.register("mlflow")
class MlflowTracker:
    """One MLflow run (client API: several bench runs in one process never share state)."""

    name = "mlflow"
    module = "mlflow"
    extra = "mlflow"

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id = ""
        self.last_step = 0

    def start(self, spec: RunSpec, run_dir: Path) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri(run_dir))
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or spec.suite
        experiment = self.client.get_experiment_by_name(name)
        exp_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        tags = {"bench.train_key": spec.train_key, "bench.score_key": spec.score_key,
                "bench.method_label": spec.method_label, "bench.suite": spec.suite}
        self.run_id = self.client.create_run(exp_id, run_name=run_name(spec), tags=tags).info.run_id
        params = [Param(k, v[:PARAM_CHARS]) for k, v in flat_spec(spec).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        self.client.log_dict(self.run_id, spec.to_json(), "spec.json")

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def log_step(self, step: int, loss: float, lr: float) -> None:
        self._metrics({"train/loss": loss, "train/lr": lr}, step)
        self.last_step = max(self.last_step, step)

    def log_dev(self, step: int, dev_loss: float) -> None:
        self._metrics({"dev/loss": dev_loss}, step)

    def finish(self, metrics: pd.DataFrame, cost: Mapping[str, Any]) -> None:
        values = flat_metrics(metrics) | flat_cost(cost)
        items = list(values.items())
        for i in range(0, len(items), 1000):  # MLflow's batch limit
            self._metrics(dict(items[i : i + 1000]), self.last_step)
        self.client.set_terminated(self.run_id, "FINISHED")

    def abort(self, reason: str) -> None:
        self.client.set_tag(self.run_id, "bench.error", reason[:PARAM_CHARS])
        self.client.set_terminated(self.run_id, "FAILED")
