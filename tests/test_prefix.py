"""Prefix-tuning and its ablations (infix, embedding-only) on tiny GPT-2, Llama and BART.

Each check compares against an independent route where one exists: the model's own cache
for word initialization, the bare model run on [E; x] for embedding-only, step-by-step
forwards for decoding, row-by-row decoding for batched beam search.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.errors import BenchError
from bench.methods._prefix_attention import PrefixKV, injecting
from bench.models import load_model
from bench.registry import METHODS

DECODER_ONLY = ("tiny-gpt2", "tiny-llama")
ALL_MODELS = (*DECODER_ONLY, "tiny-bart")
OURS = ("prefix", "infix", "embedding_only")
SMALL = {
    "prefix": {"length": 3, "mlp_width": 16},
    "infix": {"length": 3, "mlp_width": 16},
    "embedding_only": {"length": 3},
}


def wrap(method: str, model: str, **cfg: Any) -> tuple[Any, Any]:
    torch.manual_seed(0)
    lm = load_model(model, seed=0)
    m = METHODS.get(method)()
    return lm, m.apply(lm.model, lm.tokenizer, m.Config(**cfg))


def perturb(tuned: Any, scale: float = 0.3) -> None:
    """Move the method off its initialization so that comparisons mean something."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in tuned.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def ids_of(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


SOURCES = ["name : Aromi | food : Thai", "area : riverside", "name : Blue Spice | eatType : pub"]


def prompts(lm: Any, sources: list[str], left: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as the shared decoder builds them: decoder-only ' src' + SEP, left-padded;
    BART: the source + EOS, right-padded (the encoder is bidirectional)."""
    tok = lm.tokenizer
    if lm.is_encoder_decoder:
        rows = [ids_of(tok, s) + [tok.eos_token_id] for s in sources]
        left = False
    else:
        rows = [ids_of(tok, " " + s) + [tok.bos_token_id] for s in sources]
    n = max(map(len, rows))
    pad = tok.pad_token_id
    ids = [([pad] * (n - len(r)) + r) if left else (r + [pad] * (n - len(r))) for r in rows]
    mask = [
        ([0] * (n - len(r)) + [1] * len(r)) if left else ([1] * len(r) + [0] * (n - len(r)))
        for r in rows
    ]
    return torch.tensor(ids), torch.tensor(mask)


def training_batch(lm: Any) -> dict[str, torch.Tensor]:
    """Decoder-only training layout: ' src' SEP ' tgt' EOS, right-padded."""
    tok = lm.tokenizer
    rows, labels = [], []
    for src, tgt in [(SOURCES[0], "Aromi serves Thai food."), (SOURCES[1], "By the river.")]:
        s = ids_of(tok, " " + src) + [tok.bos_token_id]
        t = ids_of(tok, " " + tgt) + [tok.eos_token_id]
        rows.append(s + t)
        labels.append([-100] * len(s) + t)
    n = max(map(len, rows))
    return {
        "input_ids": torch.tensor([r + [tok.pad_token_id] * (n - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [-100] * (n - len(lab)) for lab in labels]),
    }


GEN = {"do_sample": False, "eos_token_id": None, "early_stopping": True}


# --------------------------------------------------------------------------- counts


@pytest.fixture(scope="module")
def gpt2_medium() -> Any:
    return load_model("gpt2-medium", from_config=True)


def test_paper_parameter_counts_on_gpt2_medium(gpt2_medium: Any) -> None:
    """The paper's budgets: 24 layers x 2 x 1024 = 49,152 stored values per position."""
    m = METHODS.get("prefix")()
    five = m.apply(gpt2_medium.model, gpt2_medium.tokenizer, m.Config(length=5, mlp_width=512))
    ten = m.apply(gpt2_medium.model, gpt2_medium.tokenizer, m.Config(length=10, mlp_width=512))
    assert five.n_stored == 245_760
    assert ten.n_stored == 491_520
    # P' (5 x 1024) + Linear(1024, 512) + Linear(512, 49152): the paper's "about 25.7M" MLP
    assert five.n_trained == 5 * 1024 + (1024 * 512 + 512) + (512 * 49_152 + 49_152) == 25_744_896
    direct = m.apply(gpt2_medium.model, gpt2_medium.tokenizer, m.Config(length=5, mlp_width=None))
    assert direct.n_trained == direct.n_stored == 245_760


def test_methods_are_registered() -> None:
    assert set(OURS) <= set(METHODS.names())


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("method", OURS)
def test_greedy_equals_stepwise_argmax_of_forward(method: str, model: str) -> None:
    """Padded batch: every generated token is the argmax of a full forward over the prompt
    plus the tokens so far (no cache): positions, masks and the cache path agree."""
    lm, tuned = wrap(method, model, **SMALL[method])
    perturb(tuned)
    tuned.eval()
    ids, mask = prompts(lm, SOURCES)
    steps = 4
    out = tuned.generate(
        input_ids=ids,
        attention_mask=mask,
        num_beams=1,
        max_new_tokens=steps,
        pad_token_id=lm.tokenizer.pad_token_id,
        **GEN,
    )
    with torch.no_grad():
        if lm.is_encoder_decoder:
            for k in range(1, out.shape[1]):
                logits = tuned(
                    input_ids=ids, attention_mask=mask, decoder_input_ids=out[:, :k]
                ).logits
                assert torch.equal(logits[:, -1].argmax(-1), out[:, k]), f"step {k}"
        else:
            n = ids.shape[1]
            assert torch.equal(out[:, :n], ids)
            for k in range(steps):
                seq = out[:, : n + k]
                full_mask = torch.cat([mask, torch.ones(len(seq), k, dtype=mask.dtype)], dim=1)
                logits = tuned(input_ids=seq, attention_mask=full_mask).logits
                assert torch.equal(logits[:, -1].argmax(-1), out[:, n + k]), f"step {k}"


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("method", OURS)
def test_beam_search_batch_equals_row_by_row(method: str, model: str) -> None:
    lm, tuned = wrap(method, model, **SMALL[method])
    perturb(tuned)
    tuned.eval()
    kw = dict(num_beams=3, max_new_tokens=5, pad_token_id=lm.tokenizer.pad_token_id, **GEN)
    ids, mask = prompts(lm, SOURCES)
    batch = tuned.generate(input_ids=ids, attention_mask=mask, **kw)
    for i, src in enumerate(SOURCES):
        one_ids, one_mask = prompts(lm, [src])
        alone = tuned.generate(input_ids=one_ids, attention_mask=one_mask, **kw)
        if lm.is_encoder_decoder:
            assert torch.equal(batch[i, : alone.shape[1]], alone[0]), f"row {i}"
        else:
            assert torch.equal(batch[i, ids.shape[1] :], alone[0, one_ids.shape[1] :]), f"row {i}"


# --------------------------------------------------------------------------- BART wiring


def _bart_outputs(lm: Any, tuned: Any) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = prompts(lm, SOURCES[:2])
    dec = torch.tensor([[lm.model.config.decoder_start_token_id, 70, 71, 72]] * 2)
    with torch.no_grad():
        out = tuned(
            input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True
        )
    return out.encoder_last_hidden_state, out.logits


def test_bart_three_independent_prefixes_each_wired() -> None:
    lm, tuned = wrap("prefix", "tiny-bart", length=3, mlp_width=None)
    tuned.eval()
    assert set(tuned.encoders) == {"encoder", "decoder", "cross"}
    assert {e.kv.data_ptr() for e in tuned.encoders.values()}.__len__() == 3  # own parameters
    enc0, logits0 = _bart_outputs(lm, tuned)
    for role in ("encoder", "decoder", "cross"):
        saved = tuned.encoders[role].kv.detach().clone()
        with torch.no_grad():
            tuned.encoders[role].kv.add_(torch.randn_like(saved))
        enc, logits = _bart_outputs(lm, tuned)
        # a tiny random BART passes little through cross-attention: compare to float noise
        assert (logits - logits0).abs().max() > 1e-5, f"{role} prefix does not reach the output"
        # only the encoder prefix may change the encoder's states
        assert torch.equal(enc, enc0) == (role != "encoder"), role
        with torch.no_grad():
            tuned.encoders[role].kv.copy_(saved)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_zero_length_or_invisible_prefix_equals_bare_model(model: str) -> None:
    lm, tuned = wrap("prefix", model, length=3, mlp_width=None)
    tuned.eval()
    ids, mask = prompts(lm, SOURCES[:2], left=False)
    kw: dict[str, Any] = {}
    if lm.is_encoder_decoder:
        kw["decoder_input_ids"] = torch.tensor(
            [[lm.model.config.decoder_start_token_id, 70, 71]] * 2
        )
    with torch.no_grad():
        bare = lm.model(input_ids=ids, attention_mask=mask, **kw).logits
        with_prefix = tuned(input_ids=ids, attention_mask=mask, **kw).logits
        assert not torch.allclose(with_prefix, bare, atol=1e-4)  # the prefix matters...
        for make in ("empty", "invisible"):
            entries = {}
            for s in tuned.sites:
                kv = tuned.encoders[s.role].kv[s.layer][None]  # [1, 2, heads, L, dim]
                if make == "empty":
                    entries[id(s.module)] = PrefixKV(kv[:, 0, :, :0], kv[:, 1, :, :0])
                else:
                    hidden = torch.zeros(1, kv.shape[3], dtype=torch.bool)
                    entries[id(s.module)] = PrefixKV(kv[:, 0], kv[:, 1], visible=hidden)
            with injecting(entries):
                got = lm.model(input_ids=ids, attention_mask=mask, **kw).logits
            # ...and with nothing to attend to, the wiring is the bare model
            real = (
                mask.bool()
                if not lm.is_encoder_decoder
                else torch.ones(got.shape[:2], dtype=torch.bool)
            )
            torch.testing.assert_close(got[real], bare[real], atol=1e-5, rtol=0, msg=make)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("method", OURS)
def test_frozen_lm_runs_without_dropout(method: str, model: str) -> None:
    lm, tuned = wrap(method, model, **SMALL[method])
    tuned.train()
    assert not lm.model.training and not any(m.training for m in lm.model.modules())
    ids, mask = prompts(lm, SOURCES[:2], left=False)
    kw = {"decoder_input_ids": ids[:, :3]} if lm.is_encoder_decoder else {}
    a, b = (
        tuned(input_ids=ids, attention_mask=mask, **kw),
        tuned(input_ids=ids, attention_mask=mask, **kw),
    )
    assert torch.equal(a.logits, b.logits)  # the tiny configs have dropout 0.1: it is off


def test_bart_every_role_receives_gradient() -> None:
    lm, tuned = wrap("prefix", "tiny-bart", length=2, mlp_width=8)
    ids, mask = prompts(lm, SOURCES[:2])
    out = tuned(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :4])
    out.logits.square().sum().backward()
    for role, enc in tuned.encoders.items():
        assert enc.embedding.grad.abs().sum() > 0, role
        assert enc.mlp[2].weight.grad.abs().sum() > 0, role
    assert all(p.grad is None for p in lm.model.parameters())


@pytest.mark.parametrize("model", ALL_MODELS)
def test_stored_prefix_reloads_without_mlp(model: str, tmp_path: Any) -> None:
    lm, tuned = wrap("prefix", model, length=3, mlp_width=16)
    perturb(tuned)
    tuned.eval()
    ids, mask = prompts(lm, SOURCES[:2], left=False)
    kw = {"decoder_input_ids": ids[:, :3]} if lm.is_encoder_decoder else {}
    with torch.no_grad():
        expected = tuned(input_ids=ids, attention_mask=mask, **kw).logits
    path = tmp_path / "trainable.safetensors"
    save_file(tuned.stored_state(), str(path))
    _, fresh = wrap("prefix", model, length=3, mlp_width=16)
    fresh.load_stored(load_file(str(path)))
    fresh.eval()
    assert all(e.mlp is None and e.embedding is None for e in fresh.encoders.values())
    assert fresh.n_trained == fresh.n_stored == tuned.n_stored
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids, attention_mask=mask, **kw).logits, expected)
    state = load_file(str(path))
    state.pop(next(iter(state)))
    with pytest.raises(BenchError, match="stored state"):
        fresh.load_stored(state)


# --------------------------------------------------------------------------- initialization


@pytest.mark.parametrize("model", DECODER_ONLY)
def test_init_from_words_is_the_words_cache(model: str) -> None:
    """Without the MLP the prefix is the LM's own cache of the word: the prefixed model
    continues x exactly as the bare model continues word + x."""
    word = "table-to-text:"
    lm, tuned = wrap("prefix", model, init=word, mlp_width=None)
    n = len(ids_of(lm.tokenizer, word))
    assert tuned.length == n and tuned.n_stored == tuned.encoders["self"].n_stored
    with torch.no_grad():
        cache = lm.model(input_ids=torch.tensor([ids_of(lm.tokenizer, word)]), use_cache=True).cache
        for i, layer in enumerate(cache.layers):
            torch.testing.assert_close(
                tuned.encoders["self"].kv[i, 0], layer.keys[0], atol=0, rtol=0
            )
            torch.testing.assert_close(
                tuned.encoders["self"].kv[i, 1], layer.values[0], atol=0, rtol=0
            )
        x = torch.tensor([ids_of(lm.tokenizer, " name : Aromi")])
        joined = lm.model(
            input_ids=torch.cat([torch.tensor([ids_of(lm.tokenizer, word)]), x], dim=1)
        ).logits
        ours = tuned(input_ids=x, attention_mask=torch.ones_like(x)).logits
    torch.testing.assert_close(ours[0], joined[0, n:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_init_from_words_fits_the_mlp(model: str) -> None:
    lm, fitted = wrap(
        "prefix", model, init="summarize", mlp_width=16, init_fit_steps=150, init_fit_lr=1e-2
    )
    _, unfitted = wrap("prefix", model, init="summarize", mlp_width=16, init_fit_steps=0)
    meta, before = fitted.stored_metadata(), unfitted.stored_metadata()
    assert fitted.length == len(ids_of(lm.tokenizer, "summarize"))
    for role in fitted.encoders:
        assert float(meta[f"init_fit_mse.{role}"]) < 0.5 * float(before[f"init_fit_mse.{role}"]), (
            role
        )


def test_init_text_length_mismatch_is_one_line_error() -> None:
    with pytest.raises(BenchError, match=r"length 5 but init 'elephant' is 8 tokens") as e:
        wrap("prefix", "tiny-gpt2", init="elephant", length=5)  # byte tokenizer: 8 bytes
    assert "\n" not in str(e.value)
    with pytest.raises(BenchError, match="embedding_only: length 2"):
        wrap("embedding_only", "tiny-llama", init="elephant", length=2)


@pytest.mark.parametrize(
    "method,cfg,message",
    [
        ("prefix", {"length": 0}, "prefix: length must be an integer >= 1"),
        ("prefix", {"mlp_width": "512"}, "prefix: mlp_width"),
        ("prefix", {"mlp_width": None, "input_width": 8}, "input_width"),
        ("prefix", {"init": ""}, "prefix: init"),
        ("infix", {"length": 2.5}, "infix: length"),
        ("embedding_only", {"length": True}, "embedding_only: length"),
    ],
)
def test_config_mistakes_are_bench_errors(method: str, cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(BenchError, match=message):
        METHODS.get(method)().Config(**cfg)


# --------------------------------------------------------------------------- ablations


@pytest.mark.parametrize("model", DECODER_ONLY)
def test_embedding_only_equals_the_lm_on_virtual_tokens_then_input(model: str) -> None:
    lm, tuned = wrap("embedding_only", model, length=4)
    batch = training_batch(lm)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        ours = tuned(input_ids=ids, attention_mask=mask).logits
        embeds = torch.cat(
            [tuned.embedding[None].expand(len(ids), -1, -1), lm.model.get_input_embeddings()(ids)],
            dim=1,
        )
        full_mask = torch.cat([torch.ones(len(ids), 4, dtype=mask.dtype), mask], dim=1)
        ref = lm.model(inputs_embeds=embeds, attention_mask=full_mask).logits[:, 4:]
    torch.testing.assert_close(ours[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", DECODER_ONLY)
def test_infix_is_invisible_to_the_source(model: str) -> None:
    """[x; INFIX; SEP y]: source positions equal the bare model and get no gradient; the
    separator and target positions depend on the infix."""
    lm, tuned = wrap("infix", model, length=3, mlp_width=16)
    batch = training_batch(lm)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    sep = (ids == lm.tokenizer.bos_token_id).int().argmax(-1)
    with torch.no_grad():
        bare = lm.model(input_ids=ids, attention_mask=mask).logits
    out = tuned(input_ids=ids, attention_mask=mask, labels=batch["labels"]).logits
    for row in range(len(ids)):
        s = int(sep[row])
        torch.testing.assert_close(out[row, :s], bare[row, :s], atol=1e-5, rtol=0)
        assert not torch.allclose(
            out[row, s:][mask[row, s:].bool()], bare[row, s:][mask[row, s:].bool()], atol=1e-4
        )
    source_only = sum(out[row, : int(sep[row])].sum() for row in range(len(ids)))
    source_only.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for _, p in tuned.trainable_parameters())


def test_infix_on_bart_reaches_encoder_and_cross_attention_only() -> None:
    _, tuned = wrap("infix", "tiny-bart", length=2, mlp_width=None)
    assert set(tuned.encoders) == {"encoder", "cross"}
