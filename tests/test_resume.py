"""Checkpoint/resume and determinism of the shared training loop and the runner.

- An interrupted training resumed from its last checkpoint ends with parameters bitwise equal
  to an uninterrupted one (AdamW state, LR schedule with warmup, data order, dropout's torch
  RNG, gradient accumulation, early stopping all restored), for several methods.
- A checkpoint of another training setup is discarded (and said so), never half-applied.
- Through the runner: a run failing mid-training is retried from its checkpoint, and the
  same spec run twice gives identical metrics, with every seed recorded.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import store
from bench.config import TrainConfig
from bench.models import load_model
from bench.pipeline import seed_everything
from bench.registry import DATASETS, METHODS
from bench.runner import run_one
from bench.suite import expand, load_suite
from bench.train import train

OPTIONS = {"n_train_mrs": 12, "n_dev_mrs": 4, "n_test_mrs": 4}


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-gpt2", seed=0)


@pytest.fixture(scope="module")
def examples():
    ds = DATASETS.get("synthetic_e2e")()
    return ds.load("train", data_dir=None, options=OPTIONS)[:20], ds.load("dev", data_dir=None, options=OPTIONS)[:6]


def _tuned(tiny, method: str, config: dict) -> torch.nn.Module:
    m = METHODS.get(method)()
    seed_everything(0)
    return m.apply(copy.deepcopy(tiny.model), tiny.tokenizer, m.Config(**config))


def _train(tiny, tuned, data, cfg: TrainConfig, ckpt: Path | None):
    train_ex, dev_ex = data
    return train(tuned, tiny.tokenizer, train_ex, cfg=cfg, seed=3, is_encoder_decoder=False,
                 dev_examples=dev_ex, checkpoint_path=ckpt, progress=False)


CFG = TrainConfig(max_steps=7, lr=5e-3, batch_size=3, grad_accum=2, warmup_steps=2, max_target_tokens=48)


@pytest.mark.parametrize(
    ("method", "config", "cfg"),
    [
        ("full", {}, CFG),  # every weight trains, GPT-2 dropout active: the torch RNG matters
        ("adapter", {"bottleneck": 4}, CFG),
        ("lora", {"r": 2}, CFG),
        ("prefix", {"length": 3, "mlp_width": 8}, CFG),
        # early stopping keeps the best dev state across the interruption
        ("full", {}, TrainConfig(max_steps=7, lr=5e-3, batch_size=3, early_stopping=True, eval_every=2,
                                 max_target_tokens=48)),
    ],
    ids=["full", "adapter", "lora", "prefix", "full-early-stopping"],
)
def test_resume_is_bitwise_equal(tiny, examples, tmp_path, monkeypatch, method, config, cfg):
    ref_model = _tuned(tiny, method, config)
    ref = _train(tiny, ref_model, examples, cfg, None)
    reference = {n: p.detach().clone() for n, p in ref_model.trainable_parameters()}

    cfg_ck = dataclasses.replace(cfg, checkpoint_every=2)
    ckpt = tmp_path / "checkpoint.pt"
    interrupted = _tuned(tiny, method, config)
    monkeypatch.setenv("BENCH_FAULT", "error@train_step:5")  # dies after the step-4 checkpoint
    with pytest.raises(RuntimeError, match="injected fault at train_step:5"):
        _train(tiny, interrupted, examples, cfg_ck, ckpt)
    assert ckpt.exists()
    monkeypatch.delenv("BENCH_FAULT")
    # A new process would rebuild the model from the seed and disturb the global RNGs first.
    torch.manual_seed(12345)
    resumed = _tuned(tiny, method, config)
    torch.rand(7)
    out = _train(tiny, resumed, examples, cfg_ck, ckpt)

    assert out.resumed_from == 4
    assert out.losses == ref.losses
    assert out.dev_losses == ref.dev_losses and out.best_step == ref.best_step
    got = dict(resumed.trainable_parameters())
    assert set(got) == set(reference)
    for name, tensor in reference.items():
        assert torch.equal(got[name], tensor), name


def test_resume_equality_is_not_vacuous(tiny, examples, tmp_path, monkeypatch):
    """Resuming WITHOUT the RNG state (dropout draws differ) gives different parameters, so
    the equality above depends on the restored state."""
    cfg = dataclasses.replace(CFG, checkpoint_every=2)
    ref_model = _tuned(tiny, "full", {})
    _train(tiny, ref_model, examples, CFG, None)
    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setenv("BENCH_FAULT", "error@train_step:5")
    with pytest.raises(RuntimeError):
        _train(tiny, _tuned(tiny, "full", {}), examples, cfg, ckpt)
    monkeypatch.delenv("BENCH_FAULT")
    state = torch.load(ckpt, weights_only=False)
    state["rng"]["torch"] = torch.manual_seed(999).get_state()
    torch.save(state, ckpt)
    resumed = _tuned(tiny, "full", {})
    assert _train(tiny, resumed, examples, cfg, ckpt).resumed_from == 4
    ref = dict(ref_model.trainable_parameters())
    assert any(not torch.equal(p, ref[n]) for n, p in resumed.trainable_parameters())


def test_foreign_checkpoint_is_discarded(tiny, examples, tmp_path, monkeypatch):
    cfg = dataclasses.replace(CFG, checkpoint_every=2)
    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setenv("BENCH_FAULT", "error@train_step:3")
    with pytest.raises(RuntimeError):
        _train(tiny, _tuned(tiny, "adapter", {"bottleneck": 4}), examples, cfg, ckpt)
    monkeypatch.delenv("BENCH_FAULT")
    # Same file, but the run now has more steps: the data order differs.
    longer = dataclasses.replace(cfg, max_steps=9)
    out = _train(tiny, _tuned(tiny, "adapter", {"bottleneck": 4}), examples, longer, ckpt)
    assert out.resumed_from is None
    assert "different training setup" in out.discarded_checkpoint
    ckpt.write_bytes(b"not a checkpoint")
    out = _train(tiny, _tuned(tiny, "adapter", {"bottleneck": 4}), examples, longer, ckpt)
    assert out.resumed_from is None and "unreadable checkpoint" in out.discarded_checkpoint


# ----------------------------------------------------------------------------- through the runner

SUITE = """
name: resume
model: tiny-gpt2
seeds: [4]
train: {max_steps: 6, lr: 3.0e-3, batch_size: 4, max_target_tokens: 64, checkpoint_every: 2}
decode: {beam_size: 2, max_new_tokens: 20}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 30, n_dev_mrs: 4, n_test_mrs: 6}
    train_sizes: [20]
    max_eval_sources: 5
    metrics: {bleu: e2e_bleu, rouge_l: e2e_rouge_l}
methods:
  - {label: adapter, method: adapter, config: {bottleneck: 4}}
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    (spec,) = expand(load_suite(path))
    return spec


def _values(results: Path, key: str) -> pd.DataFrame:
    m = store.read_metrics(store.run_dir(results, key))
    return m[["score_key", "split", "group", "metric", "value", "ci_low", "ci_high", "n"]].sort_values(
        ["split", "group", "metric"]).reset_index(drop=True)


def test_runner_retry_resumes_from_checkpoint(spec, tmp_path, monkeypatch):
    ref = run_one(spec, results=tmp_path / "ref", progress=False)
    assert ref.status == "done"

    res = tmp_path / "res"
    monkeypatch.setenv("BENCH_FAULT", "error@train_step:3")
    failed = run_one(spec, results=res, progress=False)
    assert failed.status == "failed" and failed.error.startswith("train:")
    monkeypatch.delenv("BENCH_FAULT")
    assert run_one(spec, results=res, progress=False).status == "failed"  # failed stays failed...
    assert run_one(spec, results=res, retry_failed=True, progress=False).status == "done"  # ...unless retried

    meta = store.read_meta(store.run_dir(res, spec.train_key))
    assert [a["status"] for a in meta["attempts"]] == ["failed", "done"]
    assert meta["attempts"][1]["resumed_from"] == 2 and meta["train"]["resumed_from"] == 2
    assert sum(a["trained"] for a in meta["attempts"]) == 1
    pd.testing.assert_frame_equal(_values(res, spec.train_key), _values(tmp_path / "ref", spec.train_key))


def test_same_spec_twice_gives_identical_metrics_and_records_seeds(spec, tmp_path):
    for name in ("a", "b"):
        assert run_one(spec, results=tmp_path / name, progress=False).status == "done"
    a, b = _values(tmp_path / "a", spec.train_key), _values(tmp_path / "b", spec.train_key)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) > 0 and a["value"].notna().all()
    preds = [store.read_predictions(store.run_dir(tmp_path / n, spec.train_key)) for n in ("a", "b")]
    pd.testing.assert_frame_equal(preds[0], preds[1])
    seeds = store.read_meta(store.run_dir(tmp_path / "a", spec.train_key))["seeds"]
    assert seeds["train_seed"] == 4 and seeds["global_rngs"] == 4 and seeds["bootstrap"] == 4
    assert seeds["data_order"][0] == 4
    assert seeds["subset"]["index"] == 0 and seeds["subset"]["size"] == 20 and seeds["subset"]["key"]
    assert seeds["base_model_init"] == 0


def test_untrained_dev_loss_leaves_training_unchanged(tiny, examples, monkeypatch):
    """The dev loss before training (bench.runner.learning_stalled's reference) is an eval-mode
    forward: training with it is bitwise the training without it (GPT-2 dropout active)."""
    import bench.train as train_module

    cfg = TrainConfig(max_steps=6, lr=5e-3, batch_size=3, early_stopping=True, eval_every=2, max_target_tokens=48)
    with_it = _tuned(tiny, "full", {})
    a = _train(tiny, with_it, examples, cfg, None)
    assert a.dev_loss_before is not None and a.dev_loss_before > a.dev_losses[-1][1]
    real = train_module.dev_loss
    calls = []

    def skip_first(*args, **kw):  # the step-0 evaluation is the first call: skip it
        calls.append(1)
        return 0.0 if len(calls) == 1 else real(*args, **kw)

    monkeypatch.setattr(train_module, "dev_loss", skip_first)
    without = _tuned(tiny, "full", {})
    b = _train(tiny, without, examples, cfg, None)
    assert b.dev_loss_before == 0.0  # (the skipped call)
    assert a.losses == b.losses and a.dev_losses == b.dev_losses
    for (n, p), (_, q) in zip(with_it.trainable_parameters(), without.trainable_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_patience_stops_after_evaluations_without_improvement(tiny, examples, monkeypatch):
    """train.patience stops once that many dev evaluations pass without a new best; the run
    is the unstopped run's prefix (same schedule) and keeps the best state."""
    import bench.train as train_module

    # scripted dev losses (the first call is the untrained model's): best at step 4, then worse
    scripted = iter([99.0, 10.0, 8.0, 9.0, 9.5, 7.0, 6.0] * 3)
    monkeypatch.setattr(train_module, "dev_loss", lambda *a, **k: next(scripted))
    base = TrainConfig(max_steps=12, lr=5e-3, batch_size=3, early_stopping=True, eval_every=2,
                       max_target_tokens=48)
    full_model = _tuned(tiny, "full", {})
    full = _train(tiny, full_model, examples, base, None)
    assert full.stopped_at is None and len(full.losses) == 12 and full.best_step == 12
    scripted = iter([99.0, 10.0, 8.0, 9.0, 9.5, 7.0, 6.0])
    stopped_model = _tuned(tiny, "full", {})
    stopped = _train(tiny, stopped_model, examples, dataclasses.replace(base, patience=2), None)
    assert stopped.stopped_at == 8 and len(stopped.losses) == 8
    assert stopped.losses == full.losses[:8]
    assert stopped.best_step == 4 and stopped.summary()["stopped_at"] == 8
    scripted = iter([99.0, 10.0, 8.0, 9.0, 9.5, 7.0, 6.0])
    patient = _train(tiny, _tuned(tiny, "full", {}), examples, dataclasses.replace(base, patience=3), None)
    assert patient.stopped_at is None and patient.best_step == 12  # 2 bad evaluations < 3


def test_patience_is_keyed_only_when_set_and_needs_early_stopping():
    assert "patience" not in TrainConfig(max_steps=5).identity()
    assert TrainConfig(max_steps=5, early_stopping=True, patience=3).identity()["patience"] == 3
    assert any("early_stopping" in p for p in TrainConfig(max_steps=5, patience=3).check())
    assert any("patience must be >= 1" in p for p in TrainConfig(early_stopping=True, patience=0).check())


class _Planted:
    """A pickle that runs code when unpickled: what weights_only=False would execute."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_checkpoint_loads_tensors_only_and_refuses_a_planted_pickle(tiny, examples, tmp_path, monkeypatch, capsys):
    """Checkpoints hold tensors and plain values (weights_only=True loads them); a pickle that
    would run code is refused with one line and training restarts from step 0, bitwise as
    an uninterrupted run."""
    cfg = dataclasses.replace(CFG, checkpoint_every=2)
    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setenv("BENCH_FAULT", "error@train_step:3")
    with pytest.raises(RuntimeError):
        _train(tiny, _tuned(tiny, "full", {}), examples, cfg, ckpt)
    monkeypatch.delenv("BENCH_FAULT")
    state = torch.load(ckpt, weights_only=True)  # the format itself needs no unpickler of code
    assert state["fingerprint"]["format"] == 3 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)

    marker = tmp_path / "pwned"
    torch.save({"fingerprint": state["fingerprint"], "payload": _Planted(marker)}, ckpt)
    ref = _train(tiny, _tuned(tiny, "full", {}), examples, CFG, None)
    capsys.readouterr()
    out = _train(tiny, _tuned(tiny, "full", {}), examples, cfg, ckpt)
    assert not marker.exists()
    assert out.resumed_from is None and out.losses == ref.losses
    assert out.discarded_checkpoint.startswith("checkpoint refused")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("bench: warning:")]
    assert len(lines) == 1 and "checkpoint refused" in lines[0] and "step 0" in lines[0]


def test_format2_checkpoint_upgrades_to_the_same_rng_states(tmp_path):
    """benchmarks/upgrade_checkpoint.py: a format-2 checkpoint (numpy's and Python's RNG state
    tuples pickled) becomes format 3, loads with weights_only=True and restores the same states."""
    import random
    import sys

    import numpy as np

    import bench.train as train_module

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from upgrade_checkpoint import upgrade

    np.random.seed(7)
    random.seed(7)
    np.random.rand(3)
    random.random()
    old = {"torch": torch.get_rng_state(), "cuda": None, "numpy": np.random.get_state(), "python": random.getstate()}
    want_np, want_py = np.random.get_state(), random.getstate()
    path = tmp_path / "checkpoint.pt"
    torch.save({"fingerprint": {"format": 2, "steps": 4}, "step": 2, "rng": old}, path)
    assert "upgraded to format 3 (step 2)" in upgrade(path)
    ck = torch.load(path, weights_only=True)
    assert ck["fingerprint"]["format"] == train_module.CHECKPOINT_FORMAT == 3
    np.random.seed(0)
    random.seed(0)
    train_module._set_rng_states(ck["rng"])
    got_np = np.random.get_state()
    assert got_np[0] == want_np[0] and np.array_equal(got_np[1], want_np[1]) and got_np[2:] == want_np[2:]
    assert random.getstate() == want_py
    assert "not 2: left as it is" in upgrade(path)
