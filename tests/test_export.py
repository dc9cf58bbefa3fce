"""`bench export`: a stored prefix / LoRA run becomes a PEFT adapter folder that
``PeftModel.from_pretrained`` loads with the same logits (max abs diff < 1e-5 on real
positions) and the same greedy generations as our wrapper; inexpressible methods get a
one-line error naming the possible formats; ``--format safetensors`` keeps the tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from bench import SCHEMA_VERSION
from bench.cli import main
from bench.errors import BenchError
from bench.export import export_run
from bench.models import load_model
from bench.registry import METHODS
from bench.store import write_json

PAIRS = [
    ("name : Aromi | food : Thai | area : city centre", "Aromi serves Thai food."),
    ("area : city", "In town."),
]


def trained(method: str, cfg: dict[str, Any], model: str, scale: float = 0.3) -> tuple[Any, Any]:
    """(loaded model, our wrapper) with the method's parameters moved off their init."""
    torch.manual_seed(0)
    lm = load_model(model, seed=0)
    m = METHODS.get(method)()
    tuned = m.apply(lm.model, lm.tokenizer, m.Config(**cfg))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in tuned.trainable_parameters():  # off the (identity) init: wiring must show
            p.add_(torch.randn(p.shape, generator=g) * scale)
    tuned.eval()
    return lm, tuned


def fake_run(results: Path, key: str, model: str, method: str, cfg: dict[str, Any], tuned: Any) -> Path:
    """A run folder as the runner leaves it (spec.json + trainable.safetensors)."""
    folder = results / "runs" / key
    folder.mkdir(parents=True)
    spec = {"train_key": key, "model": model, "model_fingerprint": f"{model}:seed=0", "method": method,
            "method_version": "1", "method_config": dict(cfg), "method_label": method}  # fmt: skip
    write_json(folder / "spec.json", {"spec": spec})
    save_file({k: v.contiguous() for k, v in tuned.stored_state().items()}, str(folder / "trainable.safetensors"),
              metadata={"schema_version": str(SCHEMA_VERSION), "method": method})
    return folder


def rows(lm: Any) -> list[list[int]]:
    from bench.formatting import prompt_ids

    return [prompt_ids(lm.tokenizer, s, is_encoder_decoder=False, max_source_tokens=64) for s, _ in PAIRS]


def left_padded(lm: Any) -> dict[str, torch.Tensor]:
    """The prompts left-padded, as the shared decoder batches them."""
    from bench.formatting import collate_prompts

    return collate_prompts(rows(lm), pad_id=lm.tokenizer.pad_token_id)


def right_padded(lm: Any) -> dict[str, torch.Tensor]:
    """Prompt + target, right-padded: the shared training loop's layout."""
    tok = lm.tokenizer
    seqs = [r + tok(" " + t, add_special_tokens=False)["input_ids"] for r, (_, t) in zip(rows(lm), PAIRS)]
    n = max(map(len, seqs))
    return {"input_ids": torch.tensor([s + [tok.pad_token_id] * (n - len(s)) for s in seqs]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in seqs])}


@torch.no_grad()
def greedy_by_forward(model: Any, ids: list[int], n: int) -> list[int]:
    """Greedy decoding by full forward passes (no cache), one unpadded row."""
    seq = torch.tensor([ids])
    for _ in range(n):
        nxt = model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[:, -1].argmax(-1)
        seq = torch.cat([seq, nxt[:, None]], 1)
    return seq[0, len(ids):].tolist()


CASES = [
    ("prefix", {"length": 4, "mlp_width": 16}, "tiny-gpt2"),
    ("prefix", {"length": 4, "mlp_width": None}, "tiny-gpt2"),
    ("prefix", {"length": 4, "mlp_width": 16}, "tiny-llama"),
    ("prefix", {"length": 3, "mlp_width": None}, "tiny-llama"),
    ("lora", {"r": 2}, "tiny-gpt2"),
    ("lora", {"r": 2}, "tiny-llama"),
]
NEW = 10
# The random tiny GPT-2 repeats one token unless its prefix is large; a larger move off
# the init makes its greedy generations vary, so comparing them means something.
SCALE = {("prefix", "tiny-gpt2"): 3.0}


def exported(method: str, cfg: dict, model: str, tmp_path: Path) -> tuple[Any, Any, Any, Path]:
    """(loaded model, ours, PeftModel.from_pretrained of the export, export folder)."""
    lm, ours = trained(method, cfg, model, SCALE.get((method, model), 0.3))
    fake_run(tmp_path / "results", "k" * 16, model, method, cfg, ours)
    out = tmp_path / "adapter"
    assert main(["export", "kkkk", str(out), "--format", "peft", "--results", str(tmp_path / "results")]) == 0
    theirs = PeftModel.from_pretrained(load_model(model, seed=0).model, str(out))
    theirs.eval()
    return lm, ours, theirs, out


@pytest.mark.parametrize("method,cfg,model", CASES, ids=[f"{m}-{x}-{i}" for i, (m, _, x) in enumerate(CASES)])
def test_peft_export_same_logits_and_generations(method: str, cfg: dict, model: str, tmp_path: Path) -> None:
    lm, ours, theirs, out = exported(method, cfg, model, tmp_path)
    if model == "tiny-llama":
        c = lm.model.config
        assert c.num_key_value_heads < c.num_attention_heads  # grouped key/value heads
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == ("PREFIX_TUNING" if method == "prefix" else "LORA")
    if method == "prefix":
        assert config["prefix_projection"] is False and config["num_virtual_tokens"] == ours.length
    batch = right_padded(lm)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        a, b = ours(**batch).logits, theirs(**batch).logits
        with theirs.disable_adapter():
            bare = theirs(**batch).logits
    assert (a - b).abs()[real].max().item() < 1e-5
    assert (bare - a).abs()[real].max().item() > 1e-2  # the adapter matters: the test is not vacuous
    # greedy generations: ours (the shared decoder's generate, left-padded batch) against
    # PEFT's forward pass token by token
    kw = {"max_new_tokens": NEW, "do_sample": False, "num_beams": 1, "pad_token_id": lm.tokenizer.pad_token_id,
          "eos_token_id": None}
    prompt = left_padded(lm)
    with torch.no_grad():
        mine = ours.generate(**prompt, **kw)[:, prompt["input_ids"].shape[1]:].tolist()
    assert mine == [greedy_by_forward(theirs, r, NEW) for r in rows(lm)]
    if method == "lora":  # PEFT's own generate too (LoRA does not touch the cache)
        with torch.no_grad():
            peft_gen = theirs.generate(**prompt, **kw)[:, prompt["input_ids"].shape[1]:].tolist()
        assert peft_gen == mine


@pytest.mark.xfail(strict=True, reason="peft 0.21.2 + transformers 5.24: generate() passes its own empty "
                   "`cache`, which wins over the prefix PEFT injects as `past_key_values`, so the prefix is "
                   "dropped; when this passes, PEFT's generate can be compared directly")
def test_peft_generate_keeps_the_prefix(tmp_path: Path) -> None:
    lm, ours, theirs, _ = exported("prefix", {"length": 4, "mlp_width": 16}, "tiny-llama", tmp_path)
    ids = torch.tensor([rows(lm)[0]])
    kw = {"max_new_tokens": NEW, "do_sample": False, "output_scores": True, "return_dict_in_generate": True}
    with torch.no_grad():
        a = ours.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw).scores
        b = theirs.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw).scores
    assert max((x - y).abs().max().item() for x, y in zip(a, b)) < 1e-5


def test_inexpressible_methods_name_the_possible_formats(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for i, (method, cfg, model) in enumerate([
        ("prefix", {"length": 2, "mlp_width": None}, "tiny-bart"),
        ("adapter", {"bottleneck": 3}, "tiny-gpt2"),
        ("infix", {"length": 2, "mlp_width": None}, "tiny-gpt2"),
        ("embedding_only", {}, "tiny-gpt2"),
        ("top_k", {"k": 1}, "tiny-gpt2"),
    ]):
        _, tuned = trained(method, cfg, model)
        key = f"{i:016d}"
        fake_run(results, key, model, method, cfg, tuned)
        with pytest.raises(BenchError) as e:
            export_run(run=key, out=tmp_path / f"o{i}", fmt="peft", results=results)
        msg = str(e.value)
        assert "\n" not in msg and "--format safetensors" in msg and method in msg, msg
        assert not (tmp_path / f"o{i}").exists()
        # ... and the format it names works: the same tensors, described
        out = export_run(run=key, out=tmp_path / f"s{i}", fmt="safetensors", results=results)
        described = json.loads((out / "bench_adapter.json").read_text())
        tensors = load_file(str(out / "adapter.safetensors"))
        stored = tuned.stored_state()
        assert set(tensors) == set(stored) == set(described["tensors"])
        for k, v in stored.items():
            assert torch.equal(tensors[k], v)
            assert described["tensors"][k]["shape"] == list(v.shape)
        assert described["method"] == method and described["method_config"] == cfg


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    _, tuned = trained("adapter", {"bottleneck": 3}, "tiny-gpt2")
    fake_run(results, "a" * 16, "tiny-gpt2", "adapter", {"bottleneck": 3}, tuned)
    assert main(["export", "aaaa", str(tmp_path / "o"), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--format safetensors" in err[0], err
    assert main(["export", "aaaa", str(tmp_path / "o"), "--format", "pef", "--results", str(results)]) == 2
    assert 'did you mean "peft"' in capsys.readouterr().err
    assert main(["export", "zzzz", str(tmp_path / "o"), "--results", str(results)]) == 2
    assert "no run 'zzzz'" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    _, lora = trained("lora", {"r": 2}, "tiny-gpt2")
    fake_run(results, "b" * 16, "tiny-gpt2", "lora", {"r": 2}, lora)
    assert main(["export", "bbbb", str(tmp_path / "full"), "--results", str(results)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("method,cfg", [("prefix", {"length": 5, "mlp_width": 512}), ("lora", {})])
def test_peft_export_on_smollm2(method: str, cfg: dict, tmp_path: Path) -> None:
    """The embedded SmolLM2-135M (a Llama with 9 query / 3 key-value heads), real tokenizer."""
    from bench.errors import ModelUnavailableError

    try:
        load_model("smollm2-135m")
    except ModelUnavailableError as e:
        pytest.skip(f"embedded model unavailable: {e}")
    lm, ours, theirs, _ = exported(method, cfg, "smollm2-135m", tmp_path)
    batch = right_padded(lm)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        a, b = ours(**batch).logits, theirs(**batch).logits
        with theirs.disable_adapter():
            bare = theirs(**batch).logits
    diff = (a - b).abs()[real].max().item()
    print(f"smollm2 {method}: max abs logit diff {diff:.3g}")
    assert diff < 1e-5
    assert (bare - a).abs()[real].max().item() > 1e-2  # the adapter matters
    kw = {"max_new_tokens": 8, "do_sample": False, "num_beams": 1, "pad_token_id": lm.tokenizer.pad_token_id,
          "eos_token_id": None}
    prompt = left_padded(lm)
    with torch.no_grad():
        mine = ours.generate(**prompt, **kw)[:, prompt["input_ids"].shape[1]:].tolist()
    assert mine == [greedy_by_forward(theirs, r, 8) for r in rows(lm)]


def test_run_named_by_its_label(tmp_path: Path) -> None:
    from bench.compare import resolve_run

    results = tmp_path / "results"
    _, lora = trained("lora", {"r": 2}, "tiny-gpt2")
    fake_run(results, "c" * 16, "tiny-gpt2", "lora", {"r": 2}, lora)
    assert resolve_run("lora", results).name == "c" * 16
    out = export_run(run="lora", out=tmp_path / "o", results=results)
    assert (out / "adapter_config.json").is_file()
    fake_run(results, "d" * 16, "tiny-gpt2", "lora", {"r": 2}, lora)
    with pytest.raises(BenchError, match="label 'lora' names 2 runs"):
        resolve_run("lora", results)
    with pytest.raises(BenchError, match='did you mean "lora"'):
        resolve_run("lorra", results)
