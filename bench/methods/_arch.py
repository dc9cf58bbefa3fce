"""Per-architecture facts the methods need, found from the model's structure.

Methods that touch the inside of a model (top-k layers, adapters, LoRA's target modules,
the prefix's attention sites) ask this module instead of spelling attribute paths, so a new
architecture with a known layout needs no code. The layout is discovered, not listed:

- the blocks: the ``ModuleList`` (decoder-only) or the two (``encoder``/``decoder`` in their
  paths) whose every item holds an attention module (a module whose class name ends in
  ``Attention``, innermost: T5's ``T5LayerSelfAttention`` wraps the ``T5Attention`` that
  computes); GPT-2 ``transformer.h``, Llama-family ``model.layers``, GPT-NeoX
  ``gpt_neox.layers``, OPT ``model.decoder.layers``, BART ``model.{encoder,decoder}.layers``,
  T5 ``{encoder,decoder}.block``;
- per block, its attention modules in registration order: one (self) in a decoder-only or
  encoder block, two (self, then cross) in an encoder-decoder's decoder block;
- the attention's output projection: its child named in :data:`ATTENTION_OUTPUTS`; the
  feed-forward's: the last module of the block outside its attentions named in
  :data:`FEED_FORWARD_OUTPUTS`;
- the final norm: a norm beside the decoder blocks in their parent, not an embedding norm (GPT-2 ``ln_f``, Llama ``norm``, OPT/NeoX/T5 ``final_layer_norm``;
  BART is post-LN and has none).

:data:`EXPLICIT` holds the architectures whose structure misleads that search (none among the
tested ones so far). A model whose layout cannot be found raises one ``BenchError`` naming
its model_type and what was not found. ``Arch.prefix_problem`` says why the prefix methods
(whose key/values enter through transformers' attention function registry) cannot serve a
model whose layout is otherwise fine: an attention that does not call the registry, or
attention logit soft-capping, which transformers' sdpa function (the prefix's) refuses.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from bench.errors import BenchError

# The architectures the test suite runs every method on (tiny random models, bench.models).
TESTED = (
    "gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma3_text", "phi3", "olmo2", "gpt_neox", "opt", "bart", "t5",
)  # fmt: skip
# The conventional names of projections whose output goes back to the residual stream.
ATTENTION_OUTPUTS = ("o_proj", "out_proj", "c_proj", "dense", "o", "wo", "out")
FEED_FORWARD_OUTPUTS = ("down_proj", "c_proj", "dense_4h_to_h", "fc2", "wo", "fc_out", "w2")
# model_type -> paths (from the LM-head model) where discovery would be wrong.
EXPLICIT: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True, eq=False)
class Arch:
    """Where things live in one model.

    ``stacks`` maps a stack name to its blocks in forward order: ``{"decoder": [...]}`` for
    decoder-only models, ``{"encoder": [...], "decoder": [...]}`` for encoder-decoders.
    ``final_norm`` is the norm after the last decoder block (GPT-2 ``ln_f``, Llama ``norm``);
    BART is post-LN, every block ends with its own LayerNorm, so there is none (``None``).
    ``attentions`` maps a role to one attention module per layer: ``"self"`` (decoder-only),
    or ``"encoder"``, ``"decoder"``, ``"cross"``.
    """

    kind: str
    model_class: str
    hidden_size: int
    stacks: dict[str, list[nn.Module]]
    final_norm: nn.Module | None
    input_embeddings: nn.Module
    attentions: dict[str, list[nn.Module]] = field(default_factory=dict)
    prefix_problem: str | None = None
    _outputs: dict[int, tuple[nn.Module, nn.Module]] = field(default_factory=dict, repr=False)

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
        back to the residual stream, after a post-norm in Gemma/OLMo 2)."""
        return self._outputs[id(block)][0]

    def feed_forward_output(self, block: nn.Module) -> nn.Module:
        """The feed-forward's output projection (its result is added to the residual)."""
        return self._outputs[id(block)][1]


def _is_attention(module: nn.Module) -> bool:
    return type(module).__name__.endswith("Attention")


def _attentions(block: nn.Module) -> list[nn.Module]:
    """The innermost attention modules of ``block`` in registration order."""
    found = [m for m in block.modules() if _is_attention(m)]
    return [m for m in found if not any(_is_attention(c) for c in m.modules() if c is not m)]


def _stacks(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """(path, list) of the outermost ModuleLists whose every item holds an attention."""
    out: list[tuple[str, nn.ModuleList]] = []
    for path, m in model.named_modules():
        if not isinstance(m, nn.ModuleList) or len(m) == 0:
            continue
        if any(path.startswith(p + ".") for p, _ in out):
            continue  # T5's block.layer inside a block
        if all(_attentions(item) for item in m):
            out.append((path, m))
    return out


def _final_norm(model: nn.Module, stack_path: str) -> nn.Module | None:
    """A norm beside the decoder blocks in their parent, not an embedding norm (OPT registers
    its final_layer_norm before the blocks, so the order says nothing)."""
    parent_path, _, name = stack_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    for child_name, child in parent.named_children():
        if child_name != name and "norm" in type(child).__name__.lower() and "embed" not in child_name:
            return child
    return None


def _named_child(module: nn.Module, names: tuple[str, ...]) -> nn.Module | None:
    children = dict(module.named_children())
    return next((children[n] for n in names if n in children), None)


def _feed_forward_output(block: nn.Module, attentions: list[nn.Module]) -> nn.Module | None:
    inside = {id(m) for a in attentions for m in a.modules()}
    last = None
    for name, m in block.named_modules():
        if id(m) not in inside and name.rsplit(".", 1)[-1] in FEED_FORWARD_OUTPUTS:
            last = m
    return last


@functools.cache
def _routed(cls: type) -> bool:
    """Whether ``cls.forward`` calls transformers' attention function registry."""
    try:
        source = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return True  # no source to read (compiled, frozen): assume the modern route
    return "ALL_ATTENTION_FUNCTIONS" in source or "attention_interface" in source


def _prefix_problem(kind: str, config: Any, attentions: list[nn.Module]) -> str | None:
    unrouted = sorted({type(a).__name__ for a in attentions if not _routed(type(a))})
    if unrouted:
        return (f"{kind}'s attention ({', '.join(unrouted)}) computes its scores itself instead of calling "
                "transformers' attention function registry, where the prefix key/values enter")
    cap = getattr(config, "attn_logit_softcapping", None)
    if cap is not None:
        return (f"{kind} soft-caps its attention logits (attn_logit_softcapping={cap}), which transformers' "
                "sdpa attention, the route of the prefix key/values, does not do")
    return None


def arch_of(model: nn.Module) -> Arch:
    """Describe ``model`` (an HF LM-head model: …ForCausalLM / …LMHeadModel /
    …ForConditionalGeneration), or raise a one-line BenchError naming what is missing."""
    config = getattr(model, "config", None)
    kind = str(getattr(config, "model_type", None))
    name = type(model).__name__

    def missing(what: str) -> BenchError:
        return BenchError(f"model class {name} (model_type {kind!r}): {what}; bench runs decoder-only and "
                          "encoder-decoder LM-head models (…ForCausalLM / …ForConditionalGeneration)")

    if config is None or not hasattr(model, "get_input_embeddings"):
        raise missing("not a transformers model")
    if hasattr(model, "can_generate") and not model.can_generate():
        raise missing("not a text generator (no LM head that generate can run)")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    explicit = EXPLICIT.get(kind, {})
    if "stacks" in explicit:
        found = [(p, model.get_submodule(p)) for p in explicit["stacks"]]
    else:
        found = _stacks(model)
    roles = ("encoder", "decoder") if encoder_decoder else ("decoder",)
    stacks: dict[str, tuple[str, nn.ModuleList]] = {}
    for role in roles:
        matches = [(p, m) for p, m in found if not encoder_decoder or role in p.split(".")]
        if len(matches) != 1:
            where = ", ".join(p for p, _ in found) or "none"
            raise missing(f"no single {role} block list found (lists of attention blocks: {where})")
        stacks[role] = matches[0]
    if not encoder_decoder:
        layers = getattr(text, "num_hidden_layers", None)
        path, blocks = stacks["decoder"]
        if isinstance(layers, int) and len(blocks) != layers:
            raise missing(f"the block list {path} has {len(blocks)} blocks, the config {layers} layers")

    attentions: dict[str, list[nn.Module]] = {}
    outputs: dict[int, tuple[nn.Module, nn.Module]] = {}
    for role, (path, blocks) in stacks.items():
        want = 2 if role == "decoder" and encoder_decoder else 1
        for i, block in enumerate(blocks):
            att = _attentions(block)
            if len(att) != want:
                raise missing(f"{path}.{i} has {len(att)} attention modules, expected {want}")
            own = _named_child(att[0], ATTENTION_OUTPUTS)
            ffn = _feed_forward_output(block, att)
            if own is None:
                raise missing(f"no output projection ({'/'.join(ATTENTION_OUTPUTS)}) in {type(att[0]).__name__}")
            if ffn is None:
                raise missing(f"no feed-forward output ({'/'.join(FEED_FORWARD_OUTPUTS)}) in {path}.{i}")
            outputs[id(block)] = (own, ffn)
            if encoder_decoder:
                attentions.setdefault(role, []).append(att[0])
                if role == "decoder":
                    attentions.setdefault("cross", []).append(att[1])
            else:
                attentions.setdefault("self", []).append(att[0])

    final = (model.get_submodule(explicit["final_norm"]) if explicit.get("final_norm")
             else None if "final_norm" in explicit else _final_norm(model, stacks["decoder"][0]))
    embeddings = model.get_input_embeddings()
    hidden = getattr(text, "hidden_size", None)
    if not isinstance(hidden, int):
        hidden = int(embeddings.weight.shape[1])
    every = [a for mods in attentions.values() for a in mods]
    return Arch(
        kind=kind,
        model_class=name,
        hidden_size=hidden,
        stacks={role: list(blocks) for role, (_, blocks) in stacks.items()},
        final_norm=final,
        input_embeddings=embeddings,
        attentions=attentions,
        prefix_problem=_prefix_problem(kind, text, every),
        _outputs=outputs,
    )


# --------------------------------------------------------------------------- bench validate


def skeleton(config: Mapping[str, Any]) -> nn.Module:
    """The LM-head model of ``config`` (a config.json as a dict) on the meta device: its
    structure without weights or memory, for checks before any run loads the model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    from transformers.utils import logging as hf_logging

    kw = dict(config)
    kind = kw.pop("model_type", None)
    try:
        cfg = AutoConfig.for_model(kind, **kw)
    except (ValueError, KeyError):
        raise BenchError(f"model_type {kind!r} is not an architecture this transformers knows") from None
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a config's own complaints are not the check's findings
    try:
        with torch.device("meta"):
            return cls.from_config(cfg)
    except ValueError:
        raise BenchError(
            f"model_type {kind!r} has no {'sequence-to-sequence' if cfg.is_encoder_decoder else 'causal'} "
            "LM head in transformers (not a text generator)") from None
    finally:
        hf_logging.set_verbosity(verbosity)


@functools.lru_cache(maxsize=16)
def _refusal(config_json: str, needs: str) -> str | None:
    try:
        arch = arch_of(skeleton(json.loads(config_json)))
    except BenchError as e:
        return str(e)
    return arch.prefix_problem if needs == "attention" else None


def refusal(config: Mapping[str, Any], needs: str) -> str | None:
    """Why a method that ``needs`` "layout" (the blocks, projections, norms) or "attention"
    (the prefix route as well) cannot wrap the model of ``config``; None when it can."""
    return _refusal(json.dumps(dict(config), sort_keys=True, default=str), needs)


def require_prefix_route(model: nn.Module, method: str) -> Arch:
    """The model's Arch, or a one-line BenchError where the prefix attention cannot serve it."""
    arch = arch_of(model)
    if arch.prefix_problem:
        raise BenchError(f"{method}: cannot wrap model class {arch.model_class}: {arch.prefix_problem}")
    return arch


def sliding_window(config: Any) -> int | None:
    """The attention window of a model whose layers (some or all) slide, else None."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None and "sliding_attention" not in types:
        return None
    return int(window)
