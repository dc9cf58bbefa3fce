"""PEFT's tuners trained in the shared loop (``method: peft`` with ``peft_type``).

- Each tuner of issue 23 (LoRA, DoRA, IA3, AdaLoRA, LoHa, LoKr, VeRA, prompt tuning,
  P-tuning, prefix tuning) takes one step of the shared loop's loss on a tiny model: only its
  trainable parameters move, and the counts are PEFT's own.
- Decoding: prompt-type tuners decode through the harness's prefix / embedding-only machinery,
  whose logits equal PEFT's forward pass; weight-changing tuners decode as the adapted model,
  the fast engine giving ``PeftModel.generate``'s tokens.
- A run through ``bench run`` stores PEFT's own folder (the same tensors as
  trainable.safetensors), caches, reports, and ``bench export`` hands out a folder that
  ``PeftModel.from_pretrained`` loads to the same logits.
- Suite errors (unknown field, unknown type, wrong type) are one line each.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from bench.cli import main
from bench.config import DecodeConfig
from bench.decode import decode
from bench.interfaces import EvalItem
from bench.methods.peft_adapter import PeftConfig
from bench.models import load_model
from bench.registry import METHODS
from bench.store import load_runs, read_json, read_predictions
from bench.suite import expand, load_suite
from bench.train import forward_loss
from tests.test_methods_contract import make_batch

# (peft_type, fields, models): every type issue 23 names. LoHa and LoKr adapt Linear layers
# only, not GPT-2's Conv1D (PEFT refuses: a one-line error, tested below).
CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("LORA", {"r": 2}, ("tiny-gpt2", "tiny-llama", "tiny-bart")),
    ("LORA", {"r": 2, "use_dora": True}, ("tiny-gpt2", "tiny-llama")),
    ("IA3", {}, ("tiny-gpt2", "tiny-llama", "tiny-bart")),
    ("ADALORA", {"init_r": 4, "target_r": 2, "total_step": 10}, ("tiny-llama",)),
    ("LOHA", {"r": 2}, ("tiny-llama",)),
    ("LOKR", {"r": 2}, ("tiny-llama",)),
    ("VERA", {"r": 4}, ("tiny-gpt2", "tiny-llama")),
    ("PROMPT_TUNING", {"num_virtual_tokens": 3}, ("tiny-gpt2", "tiny-llama")),
    ("P_TUNING", {"num_virtual_tokens": 3, "encoder_hidden_size": 8}, ("tiny-gpt2", "tiny-llama")),
    ("PREFIX_TUNING", {"num_virtual_tokens": 3}, ("tiny-gpt2", "tiny-llama")),
    ("PREFIX_TUNING", {"num_virtual_tokens": 3, "prefix_projection": True, "encoder_hidden_size": 8},
     ("tiny-llama",)),
]
PARAMS = [pytest.param(t, f, m, id=f"{t}[{','.join(f'{k}={v}' for k, v in f.items())}]-{m}")
          for t, f, models in CASES for m in models]
PROMPT = ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {m: load_model(m, seed=0) for m in ("tiny-gpt2", "tiny-llama", "tiny-bart")}


def build(lm: Any, peft_type: str, fields: dict[str, Any]) -> Any:
    torch.manual_seed(0)
    m = METHODS.get("peft")()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.apply(copy.deepcopy(lm.model), lm.tokenizer, PeftConfig(peft_type=peft_type, **fields))


def moved(tuned: Any, scale: float = 0.5) -> Any:
    """Trainable parameters moved off their init (LoRA's B is zero, VeRA's b too)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in tuned.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return tuned.eval()


def peft_logits(tuned: Any, ids: torch.Tensor) -> torch.Tensor:
    """PEFT's own forward, the virtual tokens' positions dropped."""
    with torch.no_grad():
        out = tuned.peft(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    kind = tuned.peft_type
    return out[:, tuned.n_virtual :] if kind in ("PROMPT_TUNING", "P_TUNING") else out


@pytest.mark.parametrize("peft_type,fields,model", PARAMS)
def test_one_step_moves_only_the_tuner_and_counts_are_pefts(peft_type: str, fields: dict[str, Any], model: str,
                                                          models: dict[str, Any]) -> None:
    from peft.utils import get_peft_model_state_dict

    lm = models[model]
    tuned = build(lm, peft_type, fields)
    assert tuned.needs_training
    trainable_n, _ = tuned.peft.get_nb_trainable_parameters()
    assert tuned.n_trained == trainable_n > 0
    assert tuned.n_stored == sum(t.numel() for t in get_peft_model_state_dict(tuned.peft).values())
    trainable = {n for n, _ in tuned.trainable_parameters()}
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    opt = torch.optim.AdamW([p for _, p in tuned.trainable_parameters()], lr=1e-2, weight_decay=0.0)
    tuned.train()
    batch = make_batch(lm)
    loss = forward_loss(tuned, batch, is_encoder_decoder=lm.is_encoder_decoder, reduction="sequence_sum")
    loss.backward()
    opt.step()
    changed = {n for n, p in tuned.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable, sorted(changed - trainable)[:3]
    # the stored state puts the same tuner back into a fresh wrapper
    fresh = build(lm, peft_type, fields)
    fresh.load_stored(tuned.stored_state())
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    tuned.eval()
    # (prompt types: the reloaded tuner serves through our machinery, PEFT's forward trained;
    # they agree where the rows are not padding)
    real = (inputs["decoder_attention_mask"] if lm.is_encoder_decoder else inputs["attention_mask"]).bool()
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(**inputs).logits[real], tuned(**inputs).logits[real], atol=1e-5)


def test_prompt_types_on_an_encoder_decoder_are_one_line(models: dict[str, Any]) -> None:
    from bench.errors import BenchError

    with pytest.raises(BenchError, match=r"^peft: PROMPT_TUNING is supported on decoder-only models here, not on Bart"):
        build(models["tiny-bart"], "PROMPT_TUNING", {"num_virtual_tokens": 3})


@pytest.mark.parametrize("peft_type,fields,model", [p for p in PARAMS if p.values[0] in PROMPT])
def test_prompt_types_decode_path_equals_pefts_forward(peft_type: str, fields: dict[str, Any], model: str,
                                                       models: dict[str, Any]) -> None:
    lm = models[model]
    tuned = moved(build(lm, peft_type, fields))
    ids = torch.tensor([[5, 17, 9, 33, 2, 41, 8], [12, 7, 7, 19, 30, 4, 6]])
    served = tuned._served()
    with torch.no_grad():
        ours = served(ids, torch.ones_like(ids)).logits
    assert torch.allclose(ours, peft_logits(tuned, ids), atol=1e-5)
    # the key/values the fast engine caches are the ones the served forward injects
    assert tuned.cache_prefix() is not None
    # stored and reloaded (final tensors only, no projection): the same numbers
    fresh = build(lm, peft_type, fields)
    fresh.load_stored(tuned.stored_state())
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(ids, torch.ones_like(ids)).logits, ours, atol=1e-6)


def greedy_by_forward(logits_of: Any, ids: list[int], n: int) -> list[int]:
    seq = torch.tensor([ids])
    for _ in range(n):
        seq = torch.cat([seq, logits_of(seq)[:, -1].argmax(-1)[:, None]], 1)
    return seq[0, len(ids):].tolist()


SOURCES = ["name : Aromi | food : Thai", "area : riverside | priceRange : high", "name : Zizzi"]


def items() -> list[EvalItem]:
    return [EvalItem(f"s{i}", s, ("x",), {}) for i, s in enumerate(SOURCES)]


@pytest.mark.parametrize("peft_type,fields,model", [p for p in PARAMS if p.values[0] in PROMPT])
def test_prompt_types_greedy_decode_equals_greedy_by_pefts_forward(peft_type: str, fields: dict[str, Any],
                                                                   model: str, models: dict[str, Any]) -> None:
    from bench.formatting import prompt_ids

    lm = models[model]
    tuned = moved(build(lm, peft_type, fields), scale=2.0)
    cfg = DecodeConfig(beam_size=1, max_new_tokens=6, block_newline=False, batch_size=1)
    hyps, _ = decode(tuned, lm.tokenizer, items(), cfg=cfg, is_encoder_decoder=False, max_source_tokens=64,
                     progress=False)
    for item, hyp in zip(items(), hyps, strict=True):
        ids = prompt_ids(lm.tokenizer, item.source, is_encoder_decoder=False, max_source_tokens=64)
        want = greedy_by_forward(lambda s: peft_logits(tuned, s), ids, 6)
        eos = lm.tokenizer.eos_token_id
        want = want[: want.index(eos)] if eos in want else want
        assert hyp == lm.tokenizer.decode(want, skip_special_tokens=True).strip()


@pytest.mark.parametrize("peft_type,fields", [("LORA", {"r": 2, "use_dora": True}), ("IA3", {}), ("VERA", {"r": 4}),
                                              ("LOKR", {"r": 2})])
def test_weight_tuners_fast_decode_equals_peft_generate(peft_type: str, fields: dict[str, Any],
                                                        models: dict[str, Any]) -> None:
    lm = models["tiny-llama"]
    tuned = moved(build(lm, peft_type, fields))
    cfg = DecodeConfig(beam_size=3, max_new_tokens=6, block_newline=False, batch_size=4)
    fast, _ = decode(tuned, lm.tokenizer, items(), cfg=cfg, is_encoder_decoder=False, max_source_tokens=64,
                     progress=False, engine="fast")
    # PEFT's own generate on the same batches, through the shared decoding's batching
    class ViaPeft(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.peft = tuned.peft

        def generate(self, **kw: Any) -> torch.Tensor:
            return self.peft.generate(**kw)

    ref, _ = decode(ViaPeft(), lm.tokenizer, items(), cfg=cfg, is_encoder_decoder=False, max_source_tokens=64,
                    progress=False, engine="generate")
    assert fast == ref


# ----------------------------------------------------------------------------- through bench run

SUITE = """
name: peft_train
model: {model}
seeds: [0]
train: {{max_steps: 2, lr: 1.0e-2, batch_size: 4, max_target_tokens: 32}}
decode: {{beam_size: 2, max_new_tokens: 8}}
datasets:
  - name: synthetic_e2e
    options: {{n_train_mrs: 12, n_dev_mrs: 2, n_test_mrs: 4}}
    eval_splits: [test]
    max_eval_sources: 3
methods:
{methods}
"""

RUN_METHODS = """  - label: lora
    method: peft
    config: {peft_type: LORA, r: 2, lora_alpha: 4}
  - label: prompt
    method: peft
    config: {peft_type: PROMPT_TUNING, num_virtual_tokens: 3}
  - label: ptuning
    method: peft
    config: {peft_type: P_TUNING, num_virtual_tokens: 3, encoder_hidden_size: 8}
"""


def test_run_stores_pefts_folder_caches_reports_and_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from peft import PeftModel

    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(model="tiny-llama", methods=RUN_METHODS))
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    runs = load_runs(results).drop_duplicates("train_key").set_index("method_label")
    assert set(runs.index) == {"lora", "prompt", "ptuning"}
    specs = {s.method_label: s for s in expand(load_suite(suite))}
    assert dict(specs["lora"].method_config) == {"peft_type": "LORA", "r": 2, "lora_alpha": 4}
    for label in ("lora", "prompt", "ptuning"):
        folder = results / "runs" / runs.loc[label, "train_key"]
        meta = read_json(folder / "meta.json")
        assert meta["status"] == "done" and meta["train"]["steps"] == 2
        native = folder / "peft_adapter"
        assert (native / "adapter_config.json").is_file()
        ours, theirs = load_file(str(folder / "trainable.safetensors")), load_file(str(native / "adapter_model.safetensors"))
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
        assert meta["params"]["stored"] == sum(t.numel() for t in ours.values())
        # export -> PeftModel.from_pretrained on a fresh base: the run's logits
        out = tmp_path / f"export_{label}"
        assert main(["export", runs.loc[label, "train_key"], str(out), "--results", str(results)]) == 0
        lm = load_model("tiny-llama", seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = PeftModel.from_pretrained(copy.deepcopy(lm.model), str(out)).eval()
        m = METHODS.get("peft")()
        tuned = m.apply(copy.deepcopy(lm.model), lm.tokenizer, PeftConfig(**specs[label].method_config))
        tuned.load_stored(ours)
        ids = torch.tensor([[5, 17, 9, 33, 2, 41]])
        with torch.no_grad():
            theirs_logits = loaded(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            if label != "lora":
                theirs_logits = theirs_logits[:, 3:]
            assert torch.allclose(tuned.eval()(ids, torch.ones_like(ids)).logits, theirs_logits, atol=1e-5)
    capsys.readouterr()
    assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
    assert "3 runs: 0 done, 3 cached, 0 failed" in capsys.readouterr().err
    assert main(["report", str(suite), "--results", str(results), "--out", str(tmp_path / "rep")]) == 0
    # decoded again from the stored tensors (no retraining): the same predictions
    for label in ("lora", "ptuning"):
        folder = results / "runs" / runs.loc[label, "train_key"]
        before = read_predictions(folder, specs[label].decode_key)
        (folder / "predictions.parquet").unlink()
        (folder / "metrics.parquet").unlink()
        assert main(["run", str(suite), "--results", str(results), "--quiet"]) == 0
        assert read_json(folder / "meta.json")["train"]["steps"] == 2
        after = read_predictions(folder, specs[label].decode_key)
        assert list(after.sort_values("source_id")["prediction"]) == list(before.sort_values("source_id")["prediction"])


# ----------------------------------------------------------------------------- suite errors


@pytest.mark.parametrize("config,needle", [
    ("{peft_type: LORA, lora_aplha: 2}", "unknown LORA field 'lora_aplha' (did you mean \"lora_alpha\"?)"),
    ("{peft_type: LORA, rank: 2}", "unknown LORA field 'rank' (PEFT's LoraConfig has r, target_modules, "),
    ("{peft_type: LORAA}", "unknown peft_type 'LORAA' (did you mean \"LORA\"?)"),
    ("{peft_type: lora}", "(did you mean \"LORA\"?)"),
    ("{peft_type: NO_SUCH_THING}", "peft 0.21.2 has ADALORA, "),
    ("{peft_type: LORA, r: two}", "LORA field r: expected int, got 'two'"),
    ("{peft_type: LORA, task_type: CAUSAL_LM}", "task_type is not a suite field"),
    ("{peft_type: PROMPT_TUNING, num_virtual_tokens: 3, token_dim: 8}", "token_dim is not a suite field"),
    ("{peft_type: MULTITASK_PROMPT_TUNING}", "prompt-learning type without a decoding path"),
    ("{peft_type: ADALORA}", "ADALORA config:"),
    ("{peft_type: LORA, path: /x}", "either path"),
    ("{r: 2}", "need a peft_type"),
])
def test_suite_errors_are_one_line(config: str, needle: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(model="tiny-gpt2", methods=f"  - label: p\n    method: peft\n    config: {config}\n"))
    capsys.readouterr()
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_a_tuner_peft_cannot_put_on_the_model_is_a_failed_run_of_one_line(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(model="tiny-gpt2", methods="  - label: loha\n    method: peft\n"
                                                             "    config: {peft_type: LOHA, r: 2}\n"))
    results = tmp_path / "results"
    main(["run", str(suite), "--results", str(results), "--quiet"])
    (key,) = [p.name for p in (results / "runs").iterdir()]
    meta = read_json(results / "runs" / key / "meta.json")
    assert meta["status"] == "failed"
    assert "peft: LOHA cannot adapt GPT2LMHeadModel" in meta["error"] and "\n" not in meta["error"]


def test_config_is_frozen_and_keyed_by_value() -> None:
    cfg = PeftConfig.from_suite({"peft_type": "LORA", "target_modules": ("q_proj",), "lora_dropout": 0}, "here", [])
    assert cfg is not None
    # lists as YAML gives them, an integer given for a float field as the float (one key)
    assert cfg.as_mapping() == {"peft_type": "LORA", "target_modules": ["q_proj"], "lora_dropout": 0.0}
    again = PeftConfig(**cfg.as_mapping())
    assert cfg == again and hash(cfg) == hash(again)
    with pytest.raises(AttributeError):
        cfg.peft_type = "IA3"  # type: ignore[misc]


def test_the_peft_baselines_suite_runs_on_a_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """suites/peft_baselines.yaml's method rows, verbatim, on tiny Llama (SmolLM2's architecture)
    and synthetic data for 2 steps: every row trains, decodes, scores and reports."""
    import yaml

    suite = yaml.safe_load((Path(__file__).resolve().parents[1] / "suites" / "peft_baselines.yaml").read_text())
    suite |= {"model": "tiny-llama",
              "train": {"max_steps": 2, "batch_size": 4, "max_target_tokens": 32},
              "decode": {"beam_size": 2, "max_new_tokens": 8},
              "datasets": [{"name": "synthetic_e2e", "options": {"n_train_mrs": 12, "n_dev_mrs": 2, "n_test_mrs": 4},
                            "eval_splits": ["test"], "max_eval_sources": 3}]}
    for m in suite["methods"]:
        m.pop("train", None)
    path = tmp_path / "peft_baselines_tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = tmp_path / "results"
    capsys.readouterr()
    assert main(["run", str(path), "--results", str(results), "--quiet"]) == 0
    assert "6 runs: 6 done, 0 cached, 0 failed" in capsys.readouterr().err
    out = tmp_path / "rep"
    assert main(["report", str(path), "--results", str(results), "--out", str(out)]) == 0
    text = (out / "peft_baselines.md").read_text()
    for label in ("prefix", "peft_prefix", "lora", "dora", "ia3", "prompt_tuning"):
        assert f"| {label} | tiny-llama |" in text


# scores still averaging when the run is cut (step 5 of 7) and a budget cut at every step
ADALORA_SCHEDULE = {"peft_type": "ADALORA", "init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 0, "deltaT": 1,
                    "total_step": 7}


@pytest.mark.parametrize("config", [{"peft_type": "LORA", "r": 2}, {"peft_type": "P_TUNING", "num_virtual_tokens": 3,
                                                                     "encoder_hidden_size": 8}, ADALORA_SCHEDULE],
                         ids=["LORA", "P_TUNING", "ADALORA"])
def test_interrupted_training_resumes_bitwise_equal(config: dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from bench.registry import DATASETS
    from tests.test_resume import CFG, OPTIONS, _train, _tuned

    tiny = load_model("tiny-gpt2", seed=0)
    ds = DATASETS.get("synthetic_e2e")()
    data = ds.load("train", data_dir=None, options=OPTIONS)[:20], ds.load("dev", data_dir=None, options=OPTIONS)[:6]
    ref_model = _tuned(tiny, "peft", config)
    ref = _train(tiny, ref_model, data, CFG, None)
    cfg = dataclasses.replace(CFG, checkpoint_every=2)
    ckpt = tmp_path / "checkpoint.pt"
    monkeypatch.setenv("BENCH_FAULT", "error@train_step:5")
    with pytest.raises(RuntimeError, match="injected fault"):
        _train(tiny, _tuned(tiny, "peft", config), data, cfg, ckpt)
    monkeypatch.delenv("BENCH_FAULT")
    resumed = _tuned(tiny, "peft", config)
    out = _train(tiny, resumed, data, cfg, ckpt)
    assert out.resumed_from == 4 and out.losses == ref.losses
    got, want = dict(resumed.trainable_parameters()), dict(ref_model.trainable_parameters())
    assert set(got) == set(want) and all(torch.equal(got[n], want[n]) for n in want)
    # AdaLoRA: the allocator's scores and rank pattern came back with the checkpoint
    pattern = [getattr(m.peft.active_peft_config, "rank_pattern", None) for m in (resumed, ref_model)]
    assert pattern[0] == pattern[1] and (config["peft_type"] != "ADALORA" or pattern[0])
    if config["peft_type"] == "ADALORA":
        scores = [m.peft.base_model.rankallocator.exp_avg_ipt for m in (resumed, ref_model)]
        assert scores[1] and set(scores[0]) == set(scores[1])
        assert all(torch.equal(scores[0][n], scores[1][n]) for n in scores[1])


# ----------------------------------------------------------------------------- AdaLoRA's own training


def test_adalora_penalty_is_peft_s(models: dict[str, Any]) -> None:
    """The loop adds the orthogonality penalty PEFT adds inside its forward when labels go in."""
    lm = models["tiny-llama"]
    tuned = moved(build(lm, "ADALORA", {"init_r": 4, "target_r": 2, "total_step": 10, "orth_reg_weight": 0.3}))
    batch = make_batch(lm)
    out = tuned.peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    plain = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                                              ignore_index=-100)
    penalty = tuned.training_penalty()
    assert penalty is not None and penalty.requires_grad and float(penalty) > 0
    torch.testing.assert_close(out.loss - plain, penalty, atol=1e-5, rtol=1e-5)
    assert build(lm, "LORA", {"r": 2}).training_penalty() is None


def test_adalora_reallocates_its_rank_budget(models: dict[str, Any]) -> None:
    """update_and_allocate runs after every optimizer step: at the end the rank pattern holds
    target_r per module on average, masked triplets are zero, what is stored is the pattern's
    triplets only, and a fresh wrapper loaded from it gives the decoded model's logits."""
    from bench.config import TrainConfig
    from bench.registry import DATASETS
    from bench.train import train

    lm = models["tiny-llama"]
    fields = {"init_r": 4, "target_r": 2, "tinit": 2, "tfinal": 3, "deltaT": 2, "total_step": 14}
    tuned = build(lm, "ADALORA", fields)
    ds = DATASETS.get("synthetic_e2e")()
    options = {"n_train_mrs": 12, "n_dev_mrs": 4, "n_test_mrs": 4}
    cfg = TrainConfig(max_steps=14, lr=5e-3, batch_size=3, warmup_steps=2, max_target_tokens=48, early_stopping=True,
                      eval_every=4)
    train(tuned, lm.tokenizer, ds.load("train", data_dir=None, options=options)[:30], cfg=cfg, seed=3,
          is_encoder_decoder=False, dev_examples=ds.load("dev", data_dir=None, options=options)[:6], progress=False)
    pattern = tuned.peft.active_peft_config.rank_pattern
    assert pattern and sum(map(sum, pattern.values())) == fields["target_r"] * len(pattern)
    for name, p in tuned.peft.base_model.model.named_parameters():
        if ".lora_E." in name:
            keep = torch.tensor(pattern[name])
            assert torch.count_nonzero(p[~keep]) == 0 and torch.count_nonzero(p[keep]) == int(keep.sum())
    stored = tuned.stored_state()
    assert sum(t.shape[0] for k, t in stored.items() if k.endswith(".lora_E")) == fields["target_r"] * len(pattern)
    assert tuned.n_stored == sum(t.numel() for t in stored.values()) < tuned.n_trained
    fresh = build(lm, "ADALORA", fields)
    fresh.load_stored(stored)
    batch = make_batch(lm)
    tuned.eval()
    fresh.eval()
    with torch.no_grad():
        mine = tuned(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        again = fresh(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # the same sums over fewer (kept) rank-1 terms: equal up to float rounding
    torch.testing.assert_close(again, mine, atol=1e-6, rtol=0)
    assert not torch.allclose(mine, base)


def test_only_adalora_runs_get_new_keys(tmp_path: Path) -> None:
    """AdaLoRA trains differently from before (reallocation, penalty): its method version is 2;
    every other tuner keeps version 1 and its committed run keys."""
    suite = tmp_path / "s.yaml"
    suite.write_text("""
name: s
model: tiny-llama
seeds: [0]
train: {max_steps: 2}
datasets: [{name: synthetic_e2e, eval_splits: [test]}]
methods:
  - {label: ada, method: peft, config: {peft_type: ADALORA, init_r: 4, target_r: 2, total_step: 2}}
  - {label: lora, method: peft, config: {peft_type: LORA, r: 2}}
  - {label: ours, method: lora, config: {r: 2}}
""")
    versions = {s.method_label: s.method_version for s in expand(load_suite(suite))}
    assert versions == {"ada": "2", "lora": "1", "ours": METHODS.get("lora").VERSION}


@pytest.mark.parametrize(("total", "says"), [(100, "never reaches target_r"), (20, "is final from step 20"), (50, None)])
def test_validate_warns_when_adalora_s_schedule_is_not_the_run_s(total: int, says: str | None, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""
name: s
model: tiny-llama
seeds: [0]
train: {{max_steps: 50}}
datasets: [{{name: synthetic_e2e, eval_splits: [test]}}]
methods:
  - {{label: ada, method: peft, config: {{peft_type: ADALORA, init_r: 4, target_r: 2, total_step: {total}}}}}
""")
    capsys.readouterr()
    assert main(["validate", str(suite)]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "AdaLoRA total_step" in ln]
    assert (warned == []) if says is None else (len(warned) == 1 and says in warned[0])
