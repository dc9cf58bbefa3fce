"""Experiment trackers (``bench run --log-to`` / suite ``log_to:``): what each one logged is
read back from disk (TensorBoard event files, a local MLflow store, W&B's offline folder), and
a run with trackers has the same keys and the same numbers as one without."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from bench import store
from bench.cli import main
from bench.errors import BenchError
from bench.runner import run_one
from bench.suite import expand, load_suite
from bench.trackers import check_trackers, parse_log_to

STEPS = 4
SUITE = f"""
name: trackers
model: tiny-gpt2
seeds: [1]
train: {{max_steps: {STEPS}, lr: 3.0e-3, batch_size: 4, warmup_steps: 2, max_target_tokens: 64,
        early_stopping: true, eval_every: 2}}
decode: {{beam_size: 1, max_new_tokens: 12}}
datasets:
  - name: synthetic_e2e
    options: {{n_train_mrs: 20, n_dev_mrs: 4, n_test_mrs: 4}}
    train_sizes: [12]
    max_eval_sources: 3
    metrics: {{bleu: e2e_bleu}}
methods:
  - {{label: prefix_2, method: prefix, config: {{length: 2, mlp_width: 8}}}}
"""

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="tensorboard not installed (pip install 'prefix-bench[tensorboard]')")
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow not installed (pip install 'prefix-bench[mlflow]')")


def _suite(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / f"suite{len(extra)}.yaml"
    path.write_text(SUITE + extra)
    return path


def _values(results: Path, key: str) -> pd.DataFrame:
    m = store.read_metrics(store.run_dir(results, key))
    return m[["score_key", "split", "group", "metric", "value", "ci_low", "ci_high", "n"]].sort_values(
        ["split", "group", "metric"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run without trackers and the same run with TensorBoard and MLflow."""
    if importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("mlflow") is None:
        pytest.skip("tensorboard and mlflow not installed (pip install 'prefix-bench[tensorboard,mlflow]')")
    tmp = tmp_path_factory.mktemp("trackers")
    (spec,) = expand(load_suite(_suite(tmp)))
    plain = run_one(spec, results=tmp / "plain", progress=False)
    tracked = run_one(spec, results=tmp / "tracked", progress=False, log_to=("tensorboard", "mlflow"))
    assert plain.status == tracked.status == "done", (plain, tracked)
    return {"spec": spec, "tmp": tmp}


def _dev_points(meta: dict) -> list[tuple[int, float]]:
    """The dev losses a run stored: before training (step 0), then at each evaluation."""
    return [(0, meta["train"]["dev_loss_before"])] + [(int(s), float(v)) for s, v in meta["train"]["dev_losses"]]


def _same_points(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@needs_tensorboard
def test_tensorboard_event_files_hold_steps_dev_loss_lr_and_metrics(logged: dict) -> None:
    spec, tmp = logged["spec"], logged["tmp"]
    runs = list((tmp / "tracked" / "tensorboard" / "trackers" / "prefix_2").iterdir())
    assert len(runs) == 1 and spec.train_key[:10] in runs[0].name
    scalars = _scalars(runs[0])
    meta = store.read_meta(store.run_dir(tmp / "tracked", spec.train_key))
    losses = meta["train"]["losses"]
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, STEPS + 1))
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(losses, rel=1e-5)
    # linear warm-up over 2 steps, then linear decay: the rate each step used
    assert [v for _, v in scalars["train/lr"]] == pytest.approx([1.5e-3, 3e-3, 3e-3, 1.5e-3])
    _same_points(scalars["dev/loss"], _dev_points(meta))
    bleu = _values(tmp / "tracked", spec.train_key).query("group == 'all' and metric == 'bleu'")["value"].item()
    assert scalars["metrics/test/bleu"] == [(STEPS, pytest.approx(bleu, rel=1e-6))]
    assert scalars["cost/train_time_s"][0][1] > 0 and "cost/params_trained" in scalars

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    (text,) = acc.Tensors("spec/text_summary")
    assert spec.train_key in text.tensor_proto.string_val[0].decode()


@needs_mlflow
def test_mlflow_local_store_holds_spec_steps_and_metrics(logged: dict) -> None:
    from mlflow.tracking import MlflowClient

    spec, tmp = logged["spec"], logged["tmp"]
    client = MlflowClient((tmp / "tracked" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("trackers")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["bench.train_key"] == spec.train_key
    assert run.data.params["method_label"] == "prefix_2" and run.data.params["train.lr"] == "0.003"
    meta = store.read_meta(store.run_dir(tmp / "tracked", spec.train_key))
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, STEPS + 1))
    assert [m.value for m in history] == pytest.approx(meta["train"]["losses"], rel=1e-5)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "train/lr")] == pytest.approx(
        [1.5e-3, 3e-3, 3e-3, 1.5e-3])
    _same_points([(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "dev/loss")],
                 _dev_points(meta))
    bleu = _values(tmp / "tracked", spec.train_key).query("group == 'all' and metric == 'bleu'")["value"].item()
    assert run.data.metrics["test/bleu"] == pytest.approx(bleu, rel=1e-9)
    assert run.data.metrics["cost/decode_time_s"] >= 0
    local = client.download_artifacts(run.info.run_id, "spec.json", str(tmp / "artifact"))
    assert json.loads(Path(local).read_text())["train_key"] == spec.train_key


def test_trackers_change_no_key_and_no_number(logged: dict, tmp_path: Path) -> None:
    spec, tmp = logged["spec"], logged["tmp"]
    pd.testing.assert_frame_equal(_values(tmp / "plain", spec.train_key), _values(tmp / "tracked", spec.train_key))
    with_log_to = load_suite(_suite(tmp_path, "log_to: [tensorboard, mlflow]\n"))
    assert with_log_to.log_to == ("tensorboard", "mlflow")
    (same,) = expand(with_log_to)
    assert (same.train_key, same.score_key) == (spec.train_key, spec.score_key)
    assert same.to_json() == spec.to_json()
    plain_meta = store.read_meta(store.run_dir(tmp / "plain", spec.train_key))
    tracked_meta = store.read_meta(store.run_dir(tmp / "tracked", spec.train_key))
    assert plain_meta["train"]["losses"] == tracked_meta["train"]["losses"]
    assert tracked_meta["attempts"][-1]["trackers"]["names"] == ["tensorboard", "mlflow"]
    # nothing of the trackers inside the run folder
    assert not {p.name for p in store.run_dir(tmp / "tracked", spec.train_key).iterdir()} - {
        p.name for p in store.run_dir(tmp / "plain", spec.train_key).iterdir()}


@needs_tensorboard
def test_suite_log_to_reaches_the_runs_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    suite = _suite(tmp_path, "log_to: tensorboard\n")
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    assert len(list((results / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    # a cached rerun logs nothing new
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    assert len(list((results / "tensorboard").rglob("events.out.tfevents.*"))) == 1


def test_unknown_tracker_is_one_line_with_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    assert main(["run", str(_suite(tmp_path)), "--results", str(results), "--log-to", "tensorbord"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['bench: error: --log-to: unknown tracker \'tensorbord\' (did you mean "tensorboard"?)']
    assert not results.exists()
    assert main(["run", str(_suite(tmp_path, "log_to: [mlfow]\n")), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "log_to: unknown tracker 'mlfow' (did you mean \"mlflow\"?)" in err[0]


def test_missing_tracker_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(BenchError, match=r"--log-to wandb: the 'wandb' package is not installed; "
                                         r"pip install 'prefix-bench\[wandb\]'"):
        check_trackers(parse_log_to(["tensorboard,wandb"]))
    assert parse_log_to(["mlflow,tensorboard", "mlflow"]) == ("mlflow", "tensorboard")


def test_a_failing_tracker_never_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.registry import TRACKERS
    from bench.trackers import RunTrackers

    class Broken:
        name, module, extra = "broken", "json", "none"

        def start(self, spec: object, run_dir: Path) -> None:
            raise OSError("disk full")

    TRACKERS._items["broken"] = Broken
    try:
        t = RunTrackers(["broken"])
        t.start(None, Path("."))  # type: ignore[arg-type]
        t.on_log(1, {"loss": 1.0, "lr": 0.1})  # no tracker left: nothing happens
        assert t.active == []
    finally:
        del TRACKERS._items["broken"]
    assert "tracker broken stopped logging this run (start: OSError: disk full)" in capsys.readouterr().err


def _wandb_records(path: Path) -> list:
    """The records of an offline W&B run file (``run-<id>.wandb``: LevelDB's log format, 32 KiB
    blocks of records with a 7-byte header, after a 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    pos, buf, records = 7, b"", []
    while pos + 7 <= len(raw):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        n, kind = int.from_bytes(raw[pos + 4 : pos + 6], "little"), raw[pos + 6]
        chunk = raw[pos + 7 : pos + 7 + n]
        pos += 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
    return records


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                    reason="wandb not installed (pip install 'prefix-bench[wandb]'); not part of the CI extras")
def test_wandb_offline_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    (spec,) = expand(load_suite(_suite(tmp_path)))
    results = tmp_path / "results"
    assert run_one(spec, results=results, progress=False, log_to=("wandb",)).status == "done"
    (folder,) = (results / "wandb").glob("offline-run-*")  # offline by default
    records = _wandb_records(next(folder.glob("run-*.wandb")))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "trackers" and run.run_group == "prefix_2" and spec.train_key[:10] in run.display_name
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["train_key"] == spec.train_key and config["method_config"]["length"] == 2
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    meta = store.read_meta(store.run_dir(results, spec.train_key))
    losses = [(h["_step"], h["train/loss"]) for h in history if "train/loss" in h]
    _same_points(losses, list(enumerate(meta["train"]["losses"], start=1)))
    _same_points([(h["_step"], h["dev/loss"]) for h in history if "dev/loss" in h], _dev_points(meta))
    bleu = _values(results, spec.train_key).query("group == 'all' and metric == 'bleu'")["value"].item()
    assert history[-1]["test/bleu"] == pytest.approx(bleu) and history[-1]["cost/train_time_s"] > 0
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]
