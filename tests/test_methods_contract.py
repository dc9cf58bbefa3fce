"""The method contract, for every registered method on every tested architecture.

Tiny random models built from each architecture's transformers config (``bench.models``):
GPT-2, Llama, Qwen2, Qwen3, Mistral, Gemma 3, Phi-3, OLMo 2, GPT-NeoX, OPT (decoder-only),
BART and T5 (encoder-decoder), and Gemma 2 for the methods that do not need the prefix route.
For each (method, model): the trained and stored counts equal an expected count computed
here from the model's configuration (closed forms per architecture and method, not a re-sum
of the method's own parameters); one AdamW step moves exactly the method's parameters; the
stored state, through a safetensors file into a fresh wrapper, gives identical logits;
greedy ``generate`` agrees with the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.errors import BenchError
from bench.models import load_model
from bench.registry import METHODS

MODELS = (
    "tiny-gpt2", "tiny-llama", "tiny-bart", "tiny-qwen2", "tiny-qwen3", "tiny-mistral", "tiny-gemma3",
    "tiny-phi3", "tiny-olmo2", "tiny-gpt-neox", "tiny-opt", "tiny-t5", "tiny-gemma2",
)  # fmt: skip
# Methods whose key/values enter through the attention registry; Gemma 2 soft-caps its
# attention logits, which that route cannot do: refused (test_prefix_route_refusal_is_one_line).
PREFIX_ROUTE = {"prefix", "infix", "embedding_only"}
NO_PREFIX_ROUTE = {"tiny-gemma2"}

# Configs under test per method (default: the method's defaults). Tiny models have two
# decoder blocks, so top-k uses k=1 to tell "top blocks" from "all blocks".
CASES: dict[str, list[dict[str, Any]]] = {
    "top_k": [{"k": 1}, {"k": 1, "train_embeddings": True}],
    "adapter": [{"bottleneck": 3}, {"design": "houlsby", "bottleneck": 3}],
    "lora": [{}, {"r": 2, "target_modules": ["v_proj"]}],
    "prefix": [{}, {"length": 3, "mlp_width": None}],
    "infix": [{"length": 4, "mlp_width": 16}],
    "embedding_only": [{}],
}
# (method, config index) -> models it does not apply to (fused query/key/value: no v_proj).
NOT_FOR = {("lora", 1): {"tiny-gpt2", "tiny-gpt-neox", "tiny-phi3", "tiny-t5"}}


# --------------------------------------------------------------- closed-form counts


def _dims(c: Any) -> dict[str, int]:
    """Sizes of a tiny model, read from its HF config. ``q``/``kv``: the width of one layer's
    queries / keys (= values); they differ from ``d`` with grouped key/value heads or an
    explicit head dim."""
    t = c.model_type
    if t == "gpt2":
        d = c.n_embd
        return {"d": d, "L": c.n_layer, "V": c.vocab_size, "P": c.n_positions, "F": c.n_inner or 4 * d,
                "q": d, "kv": d, "tied": 1}
    if t == "bart":
        d = c.d_model
        return {"d": d, "Le": c.encoder_layers, "L": c.decoder_layers, "V": c.vocab_size,
                "P": c.max_position_embeddings, "F": c.decoder_ffn_dim, "q": d, "kv": d, "tied": 1}
    if t == "t5":
        inner = c.num_heads * c.d_kv
        return {"d": c.d_model, "Le": c.num_layers, "L": c.num_decoder_layers, "V": c.vocab_size, "F": c.d_ff,
                "q": inner, "kv": inner, "H": c.num_heads, "B": c.relative_attention_num_buckets,
                "tied": int(c.tie_word_embeddings)}
    d, heads = c.hidden_size, c.num_attention_heads
    hd = getattr(c, "head_dim", None) or d // heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    return {"d": d, "L": c.num_hidden_layers, "V": c.vocab_size, "P": c.max_position_embeddings,
            "F": c.ffn_dim if t == "opt" else c.intermediate_size, "hd": hd, "q": heads * hd,
            "kv": kv_heads * hd, "tied": int(c.tie_word_embeddings)}  # fmt: skip


def _gpt2_block(d: int, F: int) -> int:
    # ln_1, c_attn (d -> 3d), c_proj, ln_2, c_fc, mlp c_proj; all with biases (GPT-NeoX: the
    # same sizes: two LayerNorms, query_key_value, dense, dense_h_to_4h, dense_4h_to_h)
    return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * F + F) + (F * d + d)


def _llama_block(d: int, F: int, kv: int, q: int | None = None) -> int:
    # q, k, v, o without biases; gate/up/down; two RMSNorms (Phi-3's fused qkv_proj and
    # gate_up_proj have the same sizes)
    q = d if q is None else q
    return d * q + 2 * d * kv + q * d + 3 * d * F + 2 * d


def _bart_encoder_block(d: int, F: int) -> int:
    # (OPT's decoder block has the same sizes: k, v, q, out with biases, two LayerNorms, fc1, fc2)
    return 4 * (d * d + d) + 2 * d + (d * F + F) + (F * d + d) + 2 * d


def _bart_decoder_block(d: int, F: int) -> int:
    return _bart_encoder_block(d, F) + 4 * (d * d + d) + 2 * d  # + cross-attention and its norm


def _t5_encoder_block(d: int, F: int, q: int) -> int:
    # q, k, v, o without biases; wi, wo; two weight-only norms (relative bias: block 0 only)
    return 4 * d * q + d * F + F * d + 2 * d


def _t5_decoder_block(d: int, F: int, q: int) -> int:
    return _t5_encoder_block(d, F, q) + 4 * d * q + d  # + cross-attention and its norm


def block_params(c: Any) -> int:
    """Parameters of the top decoder block."""
    k, t = _dims(c), c.model_type
    d, F, q, kv = k["d"], k["F"], k["q"], k["kv"]
    if t in ("gpt2", "gpt_neox"):
        return _gpt2_block(d, F)
    if t in ("llama", "mistral", "phi3"):
        return _llama_block(d, F, kv, q)
    if t == "qwen2":  # biases on q, k, v
        return _llama_block(d, F, kv, q) + q + 2 * kv
    if t == "qwen3":  # per-head RMSNorms of queries and keys
        return _llama_block(d, F, kv, q) + 2 * k["hd"]
    if t == "gemma3_text":  # four RMSNorms per block, per-head q/k norms
        return _llama_block(d, F, kv, q) + 2 * d + 2 * k["hd"]
    if t == "gemma2":  # four RMSNorms per block
        return _llama_block(d, F, kv, q) + 2 * d
    if t == "olmo2":  # q/k RMSNorms over the whole projection
        return _llama_block(d, F, kv, q) + q + kv
    if t == "opt":
        return _bart_encoder_block(d, F)
    if t == "t5":
        return _t5_decoder_block(d, F, q)
    return _bart_decoder_block(d, F)


def final_norm_params(c: Any) -> int:
    t, d = c.model_type, _dims(c)["d"]
    if t in ("gpt2", "gpt_neox", "opt"):  # LayerNorm: weight and bias
        return 2 * d
    return 0 if t == "bart" else d  # BART is post-LN; RMSNorm / T5's norm: weight only


def total_params(c: Any) -> int:
    """Every parameter of the base model, from the architecture's formula."""
    k, t = _dims(c), c.model_type
    d = k["d"]
    if t == "gpt2":  # wte (tied to lm_head), wpe, blocks, ln_f
        return k["V"] * d + k["P"] * d + k["L"] * _gpt2_block(d, k["F"]) + 2 * d
    if t == "bart":
        # shared embeddings (tied), two learned position tables (offset 2), two embedding norms
        return (
            k["V"] * d
            + 2 * (k["P"] + 2) * d
            + 2 * 2 * d
            + k["Le"] * _bart_encoder_block(d, k["F"])
            + k["L"] * _bart_decoder_block(d, k["F"])
        )
    if t == "t5":  # shared embeddings, blocks, a relative bias table per stack, two final norms
        return (k["V"] * d * (2 - k["tied"]) + k["Le"] * _t5_encoder_block(d, k["F"], k["q"])
                + k["L"] * _t5_decoder_block(d, k["F"], k["q"]) + 2 * k["H"] * k["B"] + 2 * d)
    positions = (k["P"] + 2) * d if t == "opt" else 0  # OPT's learned positions (offset 2)
    # embeddings, lm_head unless tied, blocks, final norm
    return k["V"] * d * (2 - k["tied"]) + positions + k["L"] * block_params(c) + final_norm_params(c)


def expect_full(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    n = total_params(c)
    return n, n


def expect_top_k(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    # the top k decoder blocks and the final norm (BART: none)
    n = cfg.get("k", 2) * block_params(c) + final_norm_params(c)
    if cfg.get("train_embeddings"):
        n += _dims(c)["V"] * _dims(c)["d"]
    return n, n


def expect_adapter(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    k, d, b = _dims(c), _dims(c)["d"], cfg["bottleneck"]
    blocks = k["L"] + k.get("Le", 0)
    if cfg.get("design", "lin") == "lin":  # LayerNorm(d), Linear(d, b), Linear(b, d)
        n = blocks * (2 * d + (d * b + b) + (b * d + d))
    else:  # two norm-free adapters per block
        n = blocks * 2 * ((d * b + b) + (b * d + d))
    return n, n


def expect_lora(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    """A is r x in, B is out x r for each target of each attention."""
    k, d, r, t = _dims(c), _dims(c)["d"], cfg.get("r", 4), c.model_type
    if t in ("gpt2", "gpt_neox"):  # the fused query/key/value projection: d -> 3d
        return (n := k["L"] * r * (d + 3 * d)), n
    if t == "phi3":  # qkv_proj: d -> q + 2 kv
        return (n := k["L"] * r * (d + k["q"] + 2 * k["kv"])), n
    per = {"q": r * (d + k["q"]), "v": r * (d + k["kv"])}
    targets = [m.removesuffix("_proj") for m in cfg.get("target_modules") or ["q", "v"]]
    attentions = k["L"] + (k["Le"] + k["L"] if "Le" in k else 0)  # + encoder self and cross
    return (n := attentions * sum(per[m] for m in targets)), n


def _prefix_roles(c: Any, roles: tuple[str, ...]) -> list[tuple[int, int]]:
    """(layers, key/value width) of each attention role that gets its own key/values."""
    k = _dims(c)
    if "Le" not in k:
        return [(k["L"], k["kv"])]
    layers = {"encoder": k["Le"], "decoder": k["L"], "cross": k["L"]}
    return [(layers[r], k["kv"]) for r in roles]


def _kv_method(c: Any, cfg: dict[str, Any], roles: tuple[str, ...]) -> tuple[int, int]:
    """Prefix-style: stored L x layers x 2 x kv per role; trained P' (L x hidden) + MLP
    Linear(hidden, k) Tanh Linear(k, layers x 2 x kv) per role, or the key/values themselves."""
    d, length, k = _dims(c)["d"], cfg.get("length") or 10, cfg.get("mlp_width", 512)
    trained = stored = 0
    for layers, kv in _prefix_roles(c, roles):
        out = layers * 2 * kv
        stored += length * out
        trained += length * out if k is None else length * d + (d * k + k) + (k * out + out)
    return trained, stored


def expect_prefix(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    # encoder-decoder: encoder self-attention, decoder self-attention, decoder cross-attention
    return _kv_method(c, cfg, ("encoder", "decoder", "cross"))


def expect_infix(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    # encoder-decoder: [x; INFIX] is the encoder's sequence: encoder self-attention and cross
    return _kv_method(c, cfg, ("encoder", "cross"))


def expect_embedding_only(c: Any, cfg: dict[str, Any]) -> tuple[int, int]:
    n = (cfg.get("length") or 10) * _dims(c)["d"]  # L virtual token embeddings
    return n, n


EXPECTED: dict[str, Callable[[Any, dict[str, Any]], tuple[int, int]]] = {
    "full": expect_full,
    "top_k": expect_top_k,
    "adapter": expect_adapter,
    "lora": expect_lora,
    "prefix": expect_prefix,
    "infix": expect_infix,
    "embedding_only": expect_embedding_only,
}


def _cases() -> list[Any]:
    out = []
    for method in METHODS.names():
        if not getattr(METHODS.get(method), "needs_training", True):
            continue  # none / peft train nothing: tests/test_evaluate_only.py
        for i, cfg in enumerate(CASES.get(method, [{}])):
            for model in MODELS:
                if model in NOT_FOR.get((method, i), ()):
                    continue
                if method in PREFIX_ROUTE and model in NO_PREFIX_ROUTE:
                    continue
                tag = ",".join(f"{k}={v}" for k, v in cfg.items())
                out.append(pytest.param(method, cfg, model, id=f"{method}[{tag}]-{model}"))
    return out


# --------------------------------------------------------------- batches


def _tokens(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


PAIRS = [
    ("name : Aromi | food : Thai", "Aromi serves Thai food."),
    ("area : riverside", "By the river."),
]


def make_batch(lm: Any) -> dict[str, torch.Tensor]:
    """The shared loop's layout: decoder-only ' src' SEP ' tgt' EOS, right-padded, labels -100
    on source, separator and padding; BART source -> (start + target) with labels target + EOS."""
    tok = lm.tokenizer
    pad, eos = tok.pad_token_id, tok.eos_token_id
    if not lm.is_encoder_decoder:
        sep = tok.bos_token_id if tok.bos_token_id is not None else eos
        rows, labels = [], []
        for src, tgt in PAIRS:
            s, t = _tokens(tok, " " + src) + [sep], _tokens(tok, " " + tgt) + [eos]
            rows.append(s + t)
            labels.append([-100] * len(s) + t)
        n = max(map(len, rows))
        return {
            "input_ids": torch.tensor([r + [pad] * (n - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows]),
            "labels": torch.tensor([lab + [-100] * (n - len(lab)) for lab in labels]),
        }
    start = lm.model.config.decoder_start_token_id
    srcs = [_tokens(tok, src) + [eos] for src, _ in PAIRS]
    tgts = [_tokens(tok, tgt) + [eos] for _, tgt in PAIRS]
    ns, nt = max(map(len, srcs)), max(map(len, tgts))
    return {
        "input_ids": torch.tensor([s + [pad] * (ns - len(s)) for s in srcs]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (ns - len(s)) for s in srcs]),
        "decoder_input_ids": torch.tensor([[start] + t[:-1] + [pad] * (nt - len(t)) for t in tgts]),
        "decoder_attention_mask": torch.tensor([[1] * len(t) + [0] * (nt - len(t)) for t in tgts]),
        "labels": torch.tensor([t + [-100] * (nt - len(t)) for t in tgts]),
    }


def summed_target_loss(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> torch.Tensor:
    """Sum of cross-entropies over target tokens (the authors' per-sequence sum)."""
    if shift:  # decoder-only: position i predicts token i + 1
        logits, labels = logits[:, :-1], labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum"
    )


def wrap(method: str, cfg: dict[str, Any], model: str) -> tuple[Any, Any]:
    torch.manual_seed(0)
    lm = load_model(model, seed=0)
    m = METHODS.get(method)()
    return lm, m.apply(lm.model, lm.tokenizer, m.Config(**cfg))


def logits_of(tuned: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    tuned.eval()
    with torch.no_grad():
        return tuned(**batch).logits


# --------------------------------------------------------------- the contract


@pytest.mark.parametrize("method,cfg,model", _cases())
def test_method_contract(method: str, cfg: dict[str, Any], model: str, tmp_path: Any) -> None:
    if method not in EXPECTED:
        pytest.fail(
            f"method {method!r} has no independent expected count in EXPECTED here; add one"
        )
    torch.manual_seed(0)
    lm, tuned = wrap(method, cfg, model)
    batch = make_batch(lm)

    # 1. exact counts
    trained, stored = EXPECTED[method](lm.model.config, cfg)
    assert tuned.n_trained == trained
    assert tuned.n_stored == stored

    # 2. one AdamW step moves only the method's parameters
    trainable = {n for n, _ in tuned.trainable_parameters()}
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    opt = torch.optim.AdamW([p for _, p in tuned.trainable_parameters()], lr=1e-2, weight_decay=0.0)
    tuned.train()
    loss = summed_target_loss(tuned(**batch).logits, batch["labels"], not lm.is_encoder_decoder)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    with_grad = 0
    for n, p in tuned.named_parameters():
        if n in trainable:
            assert p.grad is not None, f"{n} is trainable but not in the graph"
            if p.grad.abs().sum() > 0:
                with_grad += 1
                assert not torch.equal(p, before[n]), f"{n} had a gradient but did not move"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} moved"
    assert with_grad > 0

    # 3. stored state -> safetensors -> fresh wrapper: identical logits
    path = tmp_path / "trainable.safetensors"
    save_file(tuned.stored_state(), str(path))
    expected = logits_of(tuned, batch)
    _, fresh = wrap(method, cfg, model)
    assert not torch.equal(logits_of(fresh, batch), expected)  # the step changed the model
    fresh.load_stored(load_file(str(path)))
    assert torch.equal(logits_of(fresh, batch), expected)


@pytest.mark.parametrize("method,cfg,model", _cases())
def test_generate_matches_forward(method: str, cfg: dict[str, Any], model: str) -> None:
    """Greedy decoding goes through the method: its tokens are the forward pass's argmax."""
    lm, tuned = wrap(method, cfg, model)
    # Move the method off its (often identity) initialisation so the check means something.
    with torch.no_grad():
        for _, p in tuned.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    tuned.eval()
    tok = lm.tokenizer
    prompt = torch.tensor([_tokens(tok, " name : Aromi") + [tok.bos_token_id]])
    if lm.is_encoder_decoder:
        prompt = torch.tensor([_tokens(tok, "name : Aromi") + [tok.eos_token_id]])
    out = tuned.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        num_beams=1,
        max_new_tokens=2,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=None,
    )
    with torch.no_grad():
        if lm.is_encoder_decoder:
            start = lm.model.config.decoder_start_token_id
            assert out[0, 0].item() == start
            dec = out[:, :1]
            for _ in range(2):
                step = tuned(
                    input_ids=prompt, attention_mask=torch.ones_like(prompt), decoder_input_ids=dec
                )
                dec = torch.cat([dec, step.logits[:, -1:].argmax(-1)], dim=1)
            assert torch.equal(out[:, :3], dec)
        else:
            assert torch.equal(out[:, : prompt.size(1)], prompt)  # HF layout: prompt, then new ids
            ids = prompt
            for _ in range(2):
                step = tuned(input_ids=ids, attention_mask=torch.ones_like(ids))
                ids = torch.cat([ids, step.logits[:, -1:].argmax(-1)], dim=1)
            assert torch.equal(out, ids)


def test_lora_names_missing_target_module() -> None:
    with pytest.raises(BenchError, match=r"v_proj.*GPT2LMHeadModel.*c_attn"):
        wrap("lora", {"target_modules": ["v_proj"]}, "tiny-gpt2")


def test_unsupported_architecture_names_the_class() -> None:
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(
        BertConfig(
            vocab_size=50,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
        )
    )
    for method in ("full", "top_k", "adapter", "lora"):
        m = METHODS.get(method)()
        with pytest.raises(BenchError, match="BertForMaskedLM"):
            m.apply(bert, None, m.Config())


def test_top_k_larger_than_depth_is_an_error() -> None:
    with pytest.raises(BenchError, match="k=3.*2 decoder blocks"):
        wrap("top_k", {"k": 3}, "tiny-gpt2")


def test_adapter_twice_on_one_model_is_an_error() -> None:
    lm, _ = wrap("adapter", {"bottleneck": 2}, "tiny-llama")
    m = METHODS.get("adapter")()
    with pytest.raises(BenchError, match="already carries adapters"):
        m.apply(lm.model, lm.tokenizer, m.Config(bottleneck=2))


def test_fresh_adapter_is_the_identity() -> None:
    lm = load_model("tiny-bart")
    batch = make_batch(lm)
    base_logits = logits_of(lm.model, batch)
    for design in ("lin", "houlsby"):
        _, tuned = wrap("adapter", {"design": design, "bottleneck": 4}, "tiny-bart")
        assert torch.equal(logits_of(tuned, batch), base_logits)


@pytest.mark.parametrize("method", sorted(PREFIX_ROUTE))
def test_prefix_route_refusal_is_one_line(method: str) -> None:
    """Gemma 2 soft-caps attention logits; sdpa (the prefix's route) cannot: refused on apply."""
    lm = load_model("tiny-gemma2")
    m = METHODS.get(method)()
    with pytest.raises(BenchError) as e:
        m.apply(lm.model, lm.tokenizer, m.Config())
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{method}: ") and "Gemma2ForCausalLM" in msg and "soft-caps" in msg


def test_validate_answers_from_the_discovered_layout() -> None:
    """bench validate's question (bench.checks), answered from configs alone (meta device)."""
    import time

    from bench.methods._arch import refusal
    from bench.models import model_config

    for name in MODELS:
        config, _ = model_config(name)
        assert refusal(config, "layout") is None, name
        route = refusal(config, "attention")
        assert (route is not None) == (name in NO_PREFIX_ROUTE), (name, route)
    # a full-size config of an untested family with a Llama layout, without its weights
    t0 = time.perf_counter()
    assert refusal({"model_type": "starcoder2", "num_hidden_layers": 30, "hidden_size": 3072}, "attention") is None
    assert time.perf_counter() - t0 < 20
    bert = refusal({"model_type": "bert"}, "layout")
    assert bert is not None and "model_type 'bert'" in bert and "\n" not in bert
    unknown = refusal({"model_type": "no-such-arch"}, "layout")
    assert unknown is not None and "'no-such-arch'" in unknown


@pytest.mark.parametrize("model", MODELS)
def test_none_trains_nothing_on_every_architecture(model: str) -> None:
    """The evaluate-only method: nothing trains or is stored; the logits are the base model's."""
    lm, tuned = wrap("none", {}, model)
    assert tuned.n_trained == 0 and tuned.n_stored == 0
    assert not list(tuned.trainable_parameters())
    batch = make_batch(lm)
    assert torch.equal(logits_of(tuned, batch), logits_of(load_model(model, seed=0).model, batch))
