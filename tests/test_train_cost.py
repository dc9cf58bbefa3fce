"""Training cost (issue #12): the loss on labelled positions only, mixed precision, batches
grouped by length, the memory a run adds above its loaded model, and run keys that stay
what they were for specs that do not set the new fields."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
import torch

from bench import store
from bench.config import KEYED_WHEN_SET, TrainConfig
from bench.formatting import collate_train, encode, sequence_loss
from bench.identity import digest
from bench.interfaces import Example
from bench.models import load_model
from bench.registry import METHODS
from bench.suite import expand, load_suite
from bench.train import MemoryPeak, _batch_order, forward_loss, train

REPO = Path(__file__).resolve().parents[1]


def _pairs(n: int = 6) -> list[Example]:
    words = ["alpha", "beta gamma", "delta epsilon zeta", "eta", "theta iota kappa lambda", "mu nu"]
    return [Example(f"ex{i}", f"src{i}", f"name[{words[i % 6]}] food[{words[(i + 2) % 6]}]", f"{words[(i + 1) % 6]} is here.")
            for i in range(n)]


def _tuned(model: str, method: str, **cfg: object) -> tuple[torch.nn.Module, object]:
    lm = load_model(model)
    m = METHODS.get(method)()
    torch.manual_seed(0)
    config = m.Config(**cfg) if getattr(m, "Config", None) else dict(cfg)
    return m.apply(lm.model, lm.tokenizer, config), lm


# ----------------------------------------------------------------------------- loss


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama", "tiny-bart"])
# Methods that train nothing (none, peft) have no training loss: tests/test_evaluate_only.py.
@pytest.mark.parametrize("method", [m for m in METHODS.names() if getattr(METHODS.get(m), "needs_training", True)])
@pytest.mark.parametrize("reduction", ["sequence_sum", "token_mean"])
def test_labelled_positions_loss_equals_full_logits_loss(model: str, method: str, reduction: str) -> None:
    if method == "lora" and model == "tiny-gpt2":
        pytest.skip("GPT-2 has no q_proj/v_proj (the default LoRA targets)")
    tuned, lm = _tuned(model, method)
    tuned.train()
    encoded = [encode(lm.tokenizer, e.source, e.target, is_encoder_decoder=lm.is_encoder_decoder,
                      max_source_tokens=64, max_target_tokens=32) for e in _pairs()]
    batch = collate_train(encoded, pad_id=lm.tokenizer.pad_token_id, is_encoder_decoder=lm.is_encoder_decoder,
                          decoder_start_id=getattr(lm.model.config, "decoder_start_token_id", None))
    tuned.eval()  # no dropout: both computations must see the same network
    with torch.no_grad():
        full = tuned(**{k: v for k, v in batch.items() if k != "labels"}).logits
        want, _ = sequence_loss(full, batch["labels"], is_encoder_decoder=lm.is_encoder_decoder, reduction=reduction)
        got = forward_loss(tuned, batch, is_encoder_decoder=lm.is_encoder_decoder, reduction=reduction)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_output_layer_sees_only_the_labelled_columns() -> None:
    """The LM head is called on fewer positions than the batch holds (the point of it)."""
    tuned, lm = _tuned("tiny-llama", "prefix")
    encoded = [encode(lm.tokenizer, e.source, e.target, is_encoder_decoder=False,
                      max_source_tokens=64, max_target_tokens=32) for e in _pairs()]
    batch = collate_train(encoded, pad_id=lm.tokenizer.pad_token_id, is_encoder_decoder=False)
    seen: list[int] = []
    head = lm.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    try:
        forward_loss(tuned, batch, is_encoder_decoder=False, reduction="sequence_sum")
    finally:
        handle.remove()
    # exactly the positions that predict a target token: one per target token, no padding
    assert seen == [sum(len(e.target_ids) for e in encoded)]


# ----------------------------------------------------------------------------- run keys


def test_new_fields_leave_existing_keys_alone() -> None:
    """A spec that does not set the new fields keeps the key computed before they existed."""
    spec = expand(load_suite(REPO / "suites" / "smoke.yaml"))[0]
    identity = spec.train_identity()
    old_train = {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in KEYED_WHEN_SET}
    assert identity["train"] == old_train | {"checkpoint_every": None}
    assert spec.train_key == digest(identity | {"train": old_train | {"checkpoint_every": None}})
    for name, value in (("precision", "bf16"), ("precision", "fp16"), ("group_by_length", True)):
        changed = dataclasses.replace(spec, train=dataclasses.replace(spec.train, **{name: value}))
        assert changed.train_key != spec.train_key, name


def test_committed_results_keep_their_keys() -> None:
    """The CI baseline and the replication runs are still found under today's keys."""
    import pandas as pd

    baseline = pd.read_parquet(REPO / "results" / "baselines" / "ci.parquet")
    specs = expand(load_suite(REPO / "suites" / "smoke.yaml"))
    # The baseline predates keys by value: its runs are found by their legacy keys (issue #13).
    smoke = {sp.train_key for sp in specs} | {v.train_key for sp in specs if (v := sp.legacy_variant())}
    assert set(baseline["train_key"]) <= smoke
    runs = REPO / "results" / "replication_cpu" / "runs"
    # Finished runs only: one the background replication is working on is not committed.
    stored = {p.name for p in runs.iterdir() if (store.read_meta(p) or {}).get("status") == "done"} \
        if runs.exists() else set()
    if not stored:
        pytest.skip("no committed replication runs")
    keys = {sp.train_key for sp in expand(load_suite(REPO / "suites" / "replication_cpu.yaml"))}
    assert stored <= keys
    for folder in runs.iterdir():  # and the stored spec's own key agrees
        assert json.loads((folder / "spec.json").read_text())["spec"]["train_key"] == folder.name


def test_precision_must_be_one_of_three() -> None:
    from bench.config import from_mapping

    problems: list[str] = []
    from_mapping(TrainConfig, {"precision": "bf8"}, "train", problems)
    assert problems and "train.precision" in problems[0]


# ----------------------------------------------------------------------------- group_by_length


def test_group_by_length_batches_similar_lengths_and_keeps_every_example() -> None:
    rng = torch.Generator().manual_seed(3)
    lengths = torch.randint(5, 200, (400,), generator=rng).tolist()
    cfg = TrainConfig(batch_size=8, epochs=1)
    plain = _batch_order(400, 50, cfg, seed=1, lengths=lengths)
    grouped = _batch_order(400, 50, dataclasses.replace(cfg, group_by_length=True), seed=1, lengths=lengths)
    assert sorted(i for b in grouped for i in b) == list(range(400))  # one epoch, each example once

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(grouped) < 0.5 * padding(plain)
    assert grouped == _batch_order(400, 50, dataclasses.replace(cfg, group_by_length=True), seed=1, lengths=lengths)
    assert plain == _batch_order(400, 50, cfg, seed=1)  # off: the order of before, lengths or not


# ----------------------------------------------------------------------------- precision


def test_bf16_training_on_cpu_moves_parameters_with_a_finite_loss() -> None:
    tuned, lm = _tuned("tiny-llama", "prefix")
    before = {n: p.detach().clone() for n, p in tuned.trainable_parameters()}
    cfg = TrainConfig(max_steps=3, batch_size=3, lr=1e-2, precision="bf16")
    result = train(tuned, lm.tokenizer, _pairs(), cfg=cfg, seed=0, is_encoder_decoder=False, progress=False)
    assert all(torch.isfinite(torch.tensor(x)) for x in result.losses)
    moved = [n for n, p in tuned.trainable_parameters() if not torch.equal(p, before[n])]
    assert moved and all(p.dtype == torch.float32 for _, p in tuned.trainable_parameters())


def test_fp16_training_uses_a_grad_scaler_and_trains() -> None:
    tuned, lm = _tuned("tiny-gpt2", "adapter")
    before = {n: p.detach().clone() for n, p in tuned.trainable_parameters()}
    # The scaler starts at 2**16 and skips the steps whose scaled gradients overflow while it
    # backs off (halving each time); after that, steps go through.
    cfg = TrainConfig(max_steps=24, batch_size=3, lr=1e-2, precision="fp16")
    result = train(tuned, lm.tokenizer, _pairs(), cfg=cfg, seed=0, is_encoder_decoder=False, progress=False)
    assert len(result.losses) == 24 and all(math.isfinite(x) for x in result.losses)
    assert any(not torch.equal(p, before[n]) for n, p in tuned.trainable_parameters())


# ----------------------------------------------------------------------------- memory


def test_memory_above_model_sees_what_is_allocated_inside() -> None:
    keep = torch.zeros(64, 2**20)  # 256 MiB live before: part of the baseline, not of the rise
    keep.add_(1)
    with MemoryPeak(torch.device("cpu")) as mem:
        x = torch.ones(48, 2**20)  # 192 MiB touched inside
        del x
    assert mem.above_model_mb is not None
    assert 170 <= mem.above_model_mb <= 260
    assert mem.mb >= mem.above_model_mb + 256 - 10  # the process total includes what was live
    del keep


def test_training_records_memory_above_model_and_process_peak() -> None:
    tuned, lm = _tuned("tiny-gpt2", "full")
    result = train(tuned, lm.tokenizer, _pairs(), cfg=TrainConfig(max_steps=2, batch_size=3), seed=0,
                   is_encoder_decoder=False, progress=False)
    s = result.summary()
    assert s["memory_above_model_mb"] is not None and 0 <= s["memory_above_model_mb"] < s["peak_memory_mb"]


# ----------------------------------------------------------------------------- others' CPU


def test_other_cpu_counts_the_machine_minus_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The share is (machine busy - own CPU) / (wall x CPUs): this process's own work is not
    counted against it (deterministic clocks)."""
    from bench import contention

    clock = {"wall": 100.0, "busy": 5000.0, "own": 10.0}
    monkeypatch.setattr(contention.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(contention, "_machine_busy_s", lambda: clock["busy"])
    monkeypatch.setattr(contention, "_own_cpu_s", lambda: clock["own"])
    monkeypatch.setattr(contention.os, "cpu_count", lambda: 2)
    with contention.OtherCPU() as alone:
        clock.update(wall=110.0, busy=5019.0, own=28.0)  # 18 of the 19 busy seconds were ours
    assert alone.share == pytest.approx(0.05)
    with contention.OtherCPU() as shared:
        clock.update(wall=120.0, busy=5039.0, own=38.0)  # ours 10 s, someone else's 10 s
    assert shared.share == pytest.approx(0.5)
    monkeypatch.setattr(contention, "_machine_busy_s", lambda: None)  # no /proc/stat: not measured
    with contention.OtherCPU() as unknown:
        pass
    assert unknown.share is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux only")
def test_other_cpu_sees_a_competing_process() -> None:
    import subprocess
    import sys
    import time

    from bench.contention import OtherCPU

    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # the interpreter has started and spins
        with OtherCPU() as others:
            time.sleep(1.5)
    finally:
        burner.kill()
        burner.wait()
    # one spinning process out of os.cpu_count() CPUs (on 2 cores: about 0.5); more if others ran too
    assert others.share is not None and others.share >= 0.6 / (os.cpu_count() or 1)


def test_training_records_other_cpu_share() -> None:
    tuned, lm = _tuned("tiny-gpt2", "prefix", length=2, mlp_width=8)
    result = train(tuned, lm.tokenizer, _pairs(), cfg=TrainConfig(max_steps=2, batch_size=3), seed=0,
                   is_encoder_decoder=False, progress=False)
    share = result.summary()["train_other_cpu"]
    assert share is None if not Path("/proc/stat").exists() else 0.0 <= share <= 1.0
