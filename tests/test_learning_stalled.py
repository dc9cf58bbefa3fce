"""A run that trains without learning says so (issue 10: the replication's embedding-only row at
the paper's learning rate moved its dev loss by 4% in 400 steps and scored BLEU 4, and nothing
in `bench run`'s output said why)."""

from __future__ import annotations

from pathlib import Path

from bench import store
from bench.commands.run import run_suite
from bench.runner import learning_stalled

SUITE = """
name: stalled
model: tiny-gpt2
seeds: [0]
train: {max_steps: 16, batch_size: 4, max_target_tokens: 48, early_stopping: true, eval_every: 4}
decode: {beam_size: 1, max_new_tokens: 6, batch_size: 8}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 16, n_dev_mrs: 4, n_test_mrs: 6}
    train_sizes: [20]
    dev_fraction: 0.25
    metrics: {bleu: e2e_bleu}
methods:
  - {label: learns, method: full, train: {lr: 3.0e-2}}
  - {label: stalls, method: full, train: {lr: 1.0e-9}}
"""


def test_rule() -> None:
    assert learning_stalled({"dev_losses": [[20, 90.0], [200, 86.4], [400, 86.5]], "steps": 400}) == (
        "dev loss moved only -4% (90 -> 86.4) in 400 steps")
    assert learning_stalled({"dev_losses": [[20, 87.7], [400, 38.7]], "steps": 400}) is None
    assert learning_stalled({"dev_losses": [[20, 87.7]], "steps": 400}) is None  # one evaluation: no trend
    assert learning_stalled({}) is None  # no early stopping, no dev losses
    # the untrained dev loss, where recorded, is the reference (a fast learner plateaus early)
    assert learning_stalled({"dev_losses": [[20, 40.0], [400, 39.0]], "dev_loss_before": 90.0, "steps": 400}) is None
    assert learning_stalled({"dev_losses": [[20, 88.0]], "dev_loss_before": 90.0, "steps": 20}) == (
        "dev loss moved only -2% (90 -> 88) in 20 steps")


def test_bench_run_warns_beside_the_scores(tmp_path: Path, capsys) -> None:
    (tmp_path / "suite.yaml").write_text(SUITE)
    outcomes = {o.label: o for o in run_suite(suite=tmp_path / "suite.yaml", results=tmp_path / "r", quiet=True)}
    assert outcomes["learns"].status == outcomes["stalls"].status == "done"
    assert "warning" not in outcomes["learns"].summary
    assert "[warning: dev loss moved only -0% (" in outcomes["stalls"].summary  # lr 1e-9: nothing moves
    assert "lr 1e-09: too low for this method?]" in outcomes["stalls"].summary
    assert "[done] stalls" in capsys.readouterr().err  # the line bench run prints carries it
    meta = store.read_meta(store.run_dir(tmp_path / "r", outcomes["stalls"].train_key))
    assert len(meta["train"]["dev_losses"]) == 4 and meta["train"]["dev_loss_before"] > 0
