"""Our prefix-tuning against PEFT's on the same parameters.

PEFT passes the prefix as cached past key/values (the authors' route); ours enters inside
the attention function with positions offset by the prefix length. With PEFT's P' and MLP
copied into ours, logits, loss and gradients must agree on tiny GPT-2 and on a tiny Llama
with grouped key/value heads (the prefix sized by the key/value heads).
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


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_same_logits_loss_and_gradients_as_peft(model: str) -> None:
    lm, peft, ours = pair(model)
    if model == "tiny-llama":
        cfg = lm.model.config
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


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
def test_stored_key_values_are_peft_past_key_values(model: str) -> None:
    _, peft, ours = pair(model)
    with torch.no_grad():
        past = peft.get_prompt(batch_size=1)
    stored = ours.stored_state()["prefix.self"]  # [layers, 2, kv_heads, L, head_dim]
    assert len(past.layers) == stored.shape[0]
    for i, layer in enumerate(past.layers):
        torch.testing.assert_close(stored[i, 0], layer.keys[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(stored[i, 1], layer.values[0], atol=1e-6, rtol=0)
