"""Prefix-tuning, infix and embedding-only on the embedded pretrained SmolLM2-135M (slow).

SmolLM2 is a Llama with 9 query heads and 3 key/value heads: the prefix is sized by the
key/value heads. One frozen base serves every wrapper (injection is per call).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.errors import ModelUnavailableError
from bench.models import load_model
from bench.registry import METHODS

pytestmark = pytest.mark.slow

CONFIGS = {
    "prefix": {"length": 5, "mlp_width": 512},
    "infix": {"length": 5, "mlp_width": 512},
    "embedding_only": {"length": 5},
}


@pytest.fixture(scope="module")
def smol() -> Any:
    try:
        return load_model("smollm2-135m")
    except ModelUnavailableError as e:
        pytest.skip(f"embedded model unavailable: {e}")


def batch(lm: Any) -> dict[str, torch.Tensor]:
    tok = lm.tokenizer
    sep = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    pairs = [
        ("name : Aromi | eatType : coffee shop | food : Thai", "Aromi is a Thai coffee shop."),
        ("name : The Eagle | area : riverside", "The Eagle is by the river."),
    ]
    rows, labels = [], []
    for src, tgt in pairs:
        s = tok(" " + src, add_special_tokens=False)["input_ids"] + [sep]
        t = tok(" " + tgt, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append(s + t)
        labels.append([-100] * len(s) + t)
    n = max(map(len, rows))
    return {
        "input_ids": torch.tensor([r + [tok.pad_token_id] * (n - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [-100] * (n - len(lab)) for lab in labels]),
    }


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), reduction="sum"
    )


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_method_trains_decodes_and_reloads_on_smollm2(
    smol: Any, method: str, tmp_path: Any
) -> None:
    torch.manual_seed(0)
    m = METHODS.get(method)()
    tuned = m.apply(smol.model, smol.tokenizer, m.Config(**CONFIGS[method]))
    cfg = smol.model.config
    if method != "embedding_only":
        kv = (
            cfg.num_hidden_layers
            * 2
            * cfg.num_key_value_heads
            * (cfg.hidden_size // cfg.num_attention_heads)
        )
        assert tuned.n_stored == 5 * kv == 5 * 11_520
    b = batch(smol)
    base_before = {n: p.detach().clone() for n, p in smol.model.named_parameters()}
    opt = torch.optim.AdamW([p for _, p in tuned.trainable_parameters()], lr=1e-4, weight_decay=0.0)
    tuned.train()
    losses = []
    for _ in range(4):
        loss = summed_loss(tuned(**b).logits, b["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # a few steps on one batch must lower its loss
    assert all(torch.equal(p, base_before[n]) for n, p in smol.model.named_parameters())

    tuned.eval()
    tok = smol.tokenizer
    prompt = torch.tensor(
        [tok(" name : Aromi | food : Thai", add_special_tokens=False)["input_ids"] + [1]]
    )
    out = tuned.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        num_beams=1,
        max_new_tokens=3,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=tok.pad_token_id,
    )
    ids = prompt
    with torch.no_grad():
        for _ in range(3):
            step = (
                tuned(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].argmax(-1)
            )
            ids = torch.cat([ids, step[:, None]], dim=1)
    assert torch.equal(out, ids)

    path = tmp_path / "trainable.safetensors"
    save_file(tuned.stored_state(), str(path))
    with torch.no_grad():
        expected = tuned(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    fresh = m.apply(smol.model, smol.tokenizer, m.Config(**CONFIGS[method]))
    fresh.load_stored(load_file(str(path)))
    fresh.eval()
    with torch.no_grad():
        got = fresh(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.equal(got, expected)


def test_word_init_on_smollm2(smol: Any) -> None:
    """ "table-to-text:" gives a 6-token prefix; without the MLP the prefixed model continues
    x like the bare model continues the words then x; the MLP fit error is recorded."""
    m = METHODS.get("prefix")()
    word = "table-to-text:"
    n = len(smol.tokenizer(word, add_special_tokens=False)["input_ids"])
    direct = m.apply(smol.model, smol.tokenizer, m.Config(init=word, mlp_width=None))
    assert direct.length == n
    x = smol.tokenizer(" name : Aromi", add_special_tokens=False)["input_ids"]
    w = smol.tokenizer(word, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ours = direct(input_ids=torch.tensor([x]), attention_mask=torch.ones(1, len(x))).logits[0]
        joined = smol.model(input_ids=torch.tensor([w + x])).logits[0, n:]
    torch.testing.assert_close(ours, joined, atol=1e-4, rtol=1e-4)
    fitted = m.apply(smol.model, smol.tokenizer, m.Config(init=word, mlp_width=512))
    meta = fitted.stored_metadata()
    assert float(meta["init_fit_mse.self"]) < float(meta["init_target_mean_square.self"])
