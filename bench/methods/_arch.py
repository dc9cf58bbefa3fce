"""Per-architecture facts the methods need: blocks in order, final norm, embeddings, width.

Methods that touch the inside of a model (top-k layers, adapters, LoRA's target modules)
ask this module instead of spelling attribute paths themselves, so supporting a new
architecture means adding one entry here. Supported: GPT-2, Llama (SmolLM2 is a Llama)
and BART (encoder + decoder). Anything else raises a ``BenchError`` naming the model class.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.errors import BenchError

SUPPORTED = ("gpt2", "llama", "bart")


@dataclass(frozen=True)
class Arch:
    """Where things live in one model.

    ``stacks`` maps a stack name to its blocks in forward order: ``{"decoder": [...]}`` for
    decoder-only models, ``{"encoder": [...], "decoder": [...]}`` for BART. ``final_norm`` is
    the norm after the last decoder block (GPT-2 ``ln_f``, Llama ``norm``); BART is post-LN,
    every block ends with its own LayerNorm, so there is none (``None``).
    """

    kind: str
    model_class: str
    hidden_size: int
    stacks: dict[str, list[nn.Module]]
    final_norm: nn.Module | None
    input_embeddings: nn.Module

    @property
    def blocks(self) -> list[nn.Module]:
        """Every transformer block, encoder first, in forward order."""
        return [b for stack in self.stacks.values() for b in stack]

    @property
    def decoder_blocks(self) -> list[nn.Module]:
        """The blocks that produce the output tokens' states (the decoder stack)."""
        return self.stacks["decoder"]

    def attention_output(self, block: nn.Module) -> nn.Module:
        """The self-attention's output projection (a Linear/Conv1D whose output is added
        back to the residual stream)."""
        if self.kind == "gpt2":
            return block.attn.c_proj
        if self.kind == "llama":
            return block.self_attn.o_proj
        return block.self_attn.out_proj  # bart

    def feed_forward_output(self, block: nn.Module) -> nn.Module:
        """The feed-forward's output projection (its result is added to the residual)."""
        if self.kind == "gpt2":
            return block.mlp.c_proj
        if self.kind == "llama":
            return block.mlp.down_proj
        return block.fc2  # bart


def arch_of(model: nn.Module) -> Arch:
    """Describe ``model`` (an HF GPT-2 / Llama / BART LM head model)."""
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    name = type(model).__name__
    if kind not in SUPPORTED:
        raise BenchError(
            f"model class {name} (model_type {kind!r}) is not supported by this method; "
            f"supported architectures: {', '.join(SUPPORTED)}"
        )
    try:
        if kind == "gpt2":
            body = model.transformer
            return Arch(kind, name, config.n_embd, {"decoder": list(body.h)}, body.ln_f, body.wte)
        if kind == "llama":
            body = model.model
            return Arch(
                kind,
                name,
                config.hidden_size,
                {"decoder": list(body.layers)},
                body.norm,
                body.embed_tokens,
            )
        body = model.model
        # mBART-style configs add a final decoder norm; plain BART has none.
        final = getattr(body.decoder, "layer_norm", None)
        return Arch(
            kind,
            name,
            config.d_model,
            {"encoder": list(body.encoder.layers), "decoder": list(body.decoder.layers)},
            final,
            body.shared,
        )
    except AttributeError as e:
        # e.g. a bare GPT2Model without the LM head wrapper
        raise BenchError(
            f"model class {name} (model_type {kind!r}) lacks the expected layout ({e}); "
            "pass the LM-head model (…ForCausalLM / …LMHeadModel / …ForConditionalGeneration)"
        ) from None
