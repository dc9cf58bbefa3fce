"""Sliding-window attention (Mistral, Gemma 2/3, Qwen2 with use_sliding_window) beyond the window.

A prefix is the paper's: key/values every position attends to. Under a sliding window that
is what training computes (the prefix enters beside the model's own mask), and decoding must
give the same tokens as decoding by full forward passes of the tuned model ("the truth").
Two ways to get this wrong were found here and are pinned:

- the fast engine caches the prefix as past key/values (PEFT's route), where the model's
  sliding mask hides the oldest slots, the prefix's, once a query is a window away: past the
  window it refuses (``beam.Unsupported``) and the run falls back to ``generate``, recording why;
- ``generate``'s own cache drops keys outside the window, so an infix injected at its token
  index landed on another token: prefix-style ``generate`` now keeps every key.

PEFT's prefix tuning is PEFT's cached route, so it equals ours only inside the window
(tests/test_peft_equivalence.py compares within it); beyond it the two are different models.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import torch

import bench.models
from bench import beam
from bench.config import DecodeConfig
from bench.decode import decode
from bench.formatting import collate_prompts
from bench.interfaces import EvalItem
from bench.methods._arch import sliding_window
from bench.models import load_model
from bench.registry import METHODS

WINDOW = 4
CASES = {"prefix": {"length": 3, "mlp_width": 8}, "infix": {"length": 3, "mlp_width": None},
         "embedding_only": {"length": 3}, "lora": {"r": 2}, "full": {}}


@pytest.fixture
def windowed(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tiny-mistral with a sliding window of ``WINDOW`` tokens (its default, 4096, is never reached)."""
    original = bench.models.tiny_config

    def config(name: str, *args: Any, **kw: Any) -> Any:
        c = original(name, *args, **kw)
        if name == "tiny-mistral":
            c.sliding_window = WINDOW
        return c

    monkeypatch.setattr(bench.models, "tiny_config", config)

    def tuned(method: str) -> tuple[Any, Any]:
        torch.manual_seed(0)
        lm = load_model("tiny-mistral", seed=0)
        assert sliding_window(lm.model.config) == WINDOW
        m = METHODS.get(method)()
        model = m.apply(lm.model, lm.tokenizer, m.Config(**CASES[method]))
        with torch.no_grad():
            for _, p in model.trainable_parameters():
                p.add_(torch.randn_like(p) * 0.2)
        model.eval()
        return lm, model

    return tuned


def _prompts(tok: Any) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    rows = [torch.randint(3, 200, (int(k),), generator=g).tolist() + [tok.bos_token_id] for k in (2, 7, 5, 9)]
    return collate_prompts(rows, pad_id=tok.pad_token_id)


@torch.no_grad()
def _truth(model: Any, batch: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """Greedy tokens from full forward passes (no cache): what training's forward predicts."""
    ids, mask, out = batch["input_ids"], batch["attention_mask"], []
    for _ in range(steps):
        nxt = model(input_ids=ids, attention_mask=mask).logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return torch.cat(out, 1)


def _engine(model: Any, batch: dict[str, torch.Tensor], tok: Any, steps: int, beams: int = 1) -> torch.Tensor:
    base, prefix = beam.model_and_prefix(model)
    serving = getattr(model, "serving", None)
    with serving(batch["input_ids"], batch["attention_mask"]) if serving else contextlib.nullcontext():
        return beam.generate(base, batch["input_ids"], batch["attention_mask"], num_beams=beams,
                             max_new_tokens=steps, length_penalty=1.0, eos_token_id=-1,
                             pad_token_id=tok.pad_token_id, banned_ids=[], prefix=prefix)


@pytest.mark.parametrize("method", list(CASES))
def test_generate_equals_full_forward_passes_past_the_window(windowed: Any, method: str) -> None:
    lm, model = windowed(method)
    batch, steps = _prompts(lm.tokenizer), 12  # 10 + 12 tokens: five windows
    got = model.generate(**batch, num_beams=1, max_new_tokens=steps, do_sample=False,
                         pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=None)
    assert torch.equal(got[:, batch["input_ids"].shape[1]:], _truth(model, batch, steps))


@pytest.mark.parametrize("method", list(CASES))
def test_engine_serves_or_refuses_past_the_window(windowed: Any, method: str) -> None:
    lm, model = windowed(method)
    batch, steps = _prompts(lm.tokenizer), 12
    if method in ("prefix", "embedding_only"):  # a cached prefix: would slide out of the window
        with pytest.raises(beam.Unsupported, match=r"sliding-window attention \(window 4\) is shorter"):
            _engine(model, batch, lm.tokenizer, steps)
        return
    assert torch.equal(_engine(model, batch, lm.tokenizer, steps), _truth(model, batch, steps))
    kw = {"num_beams": 3, "max_new_tokens": steps, "length_penalty": 1.0, "early_stopping": True,
          "do_sample": False, "pad_token_id": lm.tokenizer.pad_token_id, "eos_token_id": lm.tokenizer.eos_token_id}
    ref = model.generate(**batch, **kw)[:, batch["input_ids"].shape[1]:]
    out = _engine(model, batch, lm.tokenizer, steps, beams=3)
    assert torch.equal(out, ref[:, : out.shape[1]]) and out.shape == ref.shape


def test_engine_serves_a_prefix_that_stays_inside_the_window(windowed: Any) -> None:
    """A window longer than prefix + prompt + new tokens (Gemma 3's 512 on E2E) keeps the engine."""
    lm, model = windowed("prefix")
    lm.model.config.sliding_window = 3 + 10 + 12  # exactly enough: prefix + padded prompt + new tokens
    batch = _prompts(lm.tokenizer)
    assert torch.equal(_engine(model, batch, lm.tokenizer, 12), _truth(model, batch, 12))


def test_a_run_records_why_generate_decoded(windowed: Any) -> None:
    lm, model = windowed("prefix")
    items = [EvalItem(source_id=str(i), source=s, references=("x",))
             for i, s in enumerate(["name : Aromi | food : Thai", "area : city centre | near : Burger King"])]
    cfg = DecodeConfig(beam_size=2, max_new_tokens=6, batch_size=2)
    stats: dict[str, Any] = {}
    got, _ = decode(model, lm.tokenizer, items, cfg=cfg, is_encoder_decoder=False, max_source_tokens=64,
                    progress=False, stats=stats)
    assert stats["engine"] == "generate" and "sliding-window attention (window 4)" in stats["engine_fallback"]
    ref, _ = decode(model, lm.tokenizer, items, cfg=cfg, is_encoder_decoder=False, max_source_tokens=64,
                    progress=False, engine="generate")
    assert got == ref


def test_the_prefix_stays_visible_past_the_window_and_old_tokens_do_not(windowed: Any) -> None:
    """Our prefix is attended from every position; the model's own window still hides old tokens
    (two layers: a token reaches at most 2 * (WINDOW - 1) positions ahead)."""
    lm, model = windowed("prefix")
    ids = torch.randint(3, 200, (1, 16), generator=torch.Generator().manual_seed(0))
    other_first = ids.clone()
    other_first[0, 0] = (ids[0, 0] + 1) % 200
    with torch.no_grad():
        a = model(input_ids=ids).logits[0, -1]
        assert torch.equal(a, model(input_ids=other_first).logits[0, -1])  # token 0 is out of reach
        assert (a - lm.model(input_ids=ids).logits[0, -1]).abs().max() > 1e-3  # the prefix is not
