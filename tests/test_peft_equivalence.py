"""Our prefix-tuning and LoRA against PEFT's on the same parameters, on every decoder-only
architecture tested (GPT-2, Llama, Qwen2, Qwen3, Mistral, Gemma 3, Phi-3, OLMo 2, GPT-NeoX,
OPT; LoRA also on BART and T5).

PEFT passes the prefix as cached past key/values (the authors' route); ours enters inside
the attention function with positions offset by the prefix length. With PEFT's P' and MLP
copied into ours, logits, loss and gradients must agree, with grouped key/value heads (the
prefix sized by the key/value heads), explicit head dims (Qwen3, Gemma 3), rotary positions
(which the offset must reach) and OPT's learned positions. Encoder-decoders are not compared
for the prefix: PEFT puts it in the decoder only, ours in every attention (the paper's).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from peft import PrefixTuningConfig, get_peft_model

from bench.models import load_model
from bench.registry import METHODS

LENGTH, WIDTH = 4, 24


def pair(model: str) -> tuple[Any, Any, Any]:
    """(tokenizer, PEFT model, ours) on two identical copies of the base model."""
    torch.manual_seed(0)
    peft_lm, our_lm = load_model(model, seed=0), load_model(model, seed=0)
    peft = get_peft_model(
        peft_lm.model,
        PrefixTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=LENGTH,
            prefix_projection=True,
            encoder_hidden_size=WIDTH,
        ),
    )
    src = peft.prompt_encoder["default"]
    # PEFT's P' is as wide as one layer's key/values (smaller than the hidden size with GQA)
    token_dim = src.embedding.weight.shape[1]
    method = METHODS.get("prefix")()
    ours = method.apply(
        our_lm.model,
        our_lm.tokenizer,
        method.Config(length=LENGTH, mlp_width=WIDTH, input_width=token_dim),
    )
    dst = ours.encoders["self"]
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for p in src.parameters():  # off PEFT's init, so a wiring mistake cannot hide
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        dst.embedding.copy_(src.embedding.weight)
        for i in (0, 2):
            dst.mlp[i].weight.copy_(src.transform[i].weight)
            dst.mlp[i].bias.copy_(src.transform[i].bias)
    peft.eval()
    ours.eval()
    return our_lm, peft, ours


def batch(lm: Any) -> dict[str, torch.Tensor]:
    """The shared loop's layout: ' src' SEP ' tgt' EOS, right-padded, labels on the target."""
    tok = lm.tokenizer
    rows, labels = [], []
    for src, tgt in [
        ("name : Aromi | food : Thai", "Aromi serves Thai food."),
        ("area : city", "In town."),
    ]:
        s = tok(" " + src, add_special_tokens=False)["input_ids"] + [tok.bos_token_id]
        t = tok(" " + tgt, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append(s + t)
        labels.append([-100] * len(s) + t)
    n = max(map(len, rows))
    return {
        "input_ids": torch.tensor([r + [tok.pad_token_id] * (n - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [-100] * (n - len(lab)) for lab in labels]),
    }


DECODER_ONLY = ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-gemma3", "tiny-phi3",
                "tiny-olmo2", "tiny-gpt-neox", "tiny-opt"]


@pytest.mark.parametrize("model", DECODER_ONLY)
def test_same_logits_loss_and_gradients_as_peft(model: str) -> None:
    lm, peft, ours = pair(model)
    cfg = lm.model.config
    if getattr(cfg, "num_key_value_heads", None):
        assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped key/value heads
    b = batch(lm)
    real = b["attention_mask"].bool()
    theirs = peft(**b)
    mine = ours(**b)
    assert (theirs.logits - mine.logits).abs()[real].max() < 1e-5
    # both losses are transformers' mean over target tokens of the same logits and labels
    torch.testing.assert_close(mine.loss, theirs.loss, atol=1e-6, rtol=0)
    theirs.loss.backward()
    mine.loss.backward()
    src, dst = peft.prompt_encoder["default"], ours.encoders["self"]
    torch.testing.assert_close(dst.embedding.grad, src.embedding.weight.grad, atol=1e-6, rtol=1e-4)
    for i in (0, 2):
        torch.testing.assert_close(
            dst.mlp[i].weight.grad, src.transform[i].weight.grad, atol=1e-6, rtol=1e-4
        )


@pytest.mark.parametrize("model", DECODER_ONLY)
def test_stored_key_values_are_peft_past_key_values(model: str) -> None:
    _, peft, ours = pair(model)
    with torch.no_grad():
        past = peft.get_prompt(batch_size=1)
    stored = ours.stored_state()["prefix.self"]  # [layers, 2, kv_heads, L, head_dim]
    assert len(past.layers) == stored.shape[0]
    for i, layer in enumerate(past.layers):
        torch.testing.assert_close(stored[i, 0], layer.keys[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(stored[i, 1], layer.values[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("model", [*DECODER_ONLY, "tiny-bart", "tiny-t5"])
def test_lora_logits_equal_peft(model: str) -> None:
    """Our LoRA (PEFT's layers injected by target names we choose) against get_peft_model with
    the same targets and the same A/B: the same logits (max abs difference < 1e-4)."""
    from peft import LoraConfig

    from bench.methods._arch import arch_of
    from bench.methods.lora import default_targets, fan_in_fan_out

    torch.manual_seed(0)
    peft_lm, our_lm = load_model(model, seed=0), load_model(model, seed=0)
    method = METHODS.get("lora")()
    ours = method.apply(our_lm.model, our_lm.tokenizer, method.Config(r=2, alpha=8.0, dropout=0.0))
    targets = default_targets(arch_of(peft_lm.model))
    task = "SEQ_2_SEQ_LM" if peft_lm.is_encoder_decoder else "CAUSAL_LM"
    peft = get_peft_model(peft_lm.model, LoraConfig(task_type=task, r=2, lora_alpha=8.0, lora_dropout=0.0,
                                                    target_modules=list(targets),
                                                    fan_in_fan_out=fan_in_fan_out(peft_lm.model, targets)))
    theirs = dict(peft.named_parameters())
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        n = 0
        for name, p in ours.named_parameters():
            if "lora_" in name:  # B starts at zero: both off their init, so the update counts
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
                theirs["base_model.model." + name.removeprefix("base.")].copy_(p)
                n += 1
    assert n > 0
    ours.eval()
    peft.eval()
    b = batch(our_lm) if not our_lm.is_encoder_decoder else _seq2seq_batch(our_lm)
    b.pop("labels")
    with torch.no_grad():
        mine, base = ours(**b).logits, None
        theirs_logits = peft(**b).logits
        with peft.disable_adapter():
            base = peft(**b).logits
    assert (mine - base).abs().max() > 1e-3  # the LoRA update is not negligible
    assert (mine - theirs_logits).abs().max() < 1e-4


def _seq2seq_batch(lm: Any) -> dict[str, torch.Tensor]:
    tok = lm.tokenizer
    src = tok("name : Aromi | food : Thai", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    tgt = tok("Aromi serves Thai food.", add_special_tokens=False)["input_ids"]
    start = lm.model.config.decoder_start_token_id
    return {"input_ids": torch.tensor([src]), "attention_mask": torch.ones(1, len(src), dtype=torch.long),
            "decoder_input_ids": torch.tensor([[start, *tgt]]), "labels": torch.tensor([[*tgt, tok.eos_token_id]])}
