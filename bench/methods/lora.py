"""LoRA ("lora"): trainable low-rank updates of frozen weight matrices (beyond the paper).

Hu et al. (2022), "LoRA: Low-Rank Adaptation of Large Language Models": a frozen weight W
becomes W + (alpha / r) B A with A (r x in) random and B (out x r) zero, so a fresh LoRA
is the identity. The layers are injected by PEFT (``peft.inject_adapter_in_model``); only
A and B train and are stored.

Defaults follow the LoRA paper's GPT-2 medium E2E setting (r=4, alpha=32, dropout 0.1).
Target modules when not given (:func:`default_targets`, read from the attention module):
the query and value projections where they are separate (Llama family, OPT, BART ``q_proj``/
``v_proj``, T5 ``q``/``v``; in encoder-decoders every attention, cross-attention included),
else the fused query/key/value projection (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``,
Phi-3 ``qkv_proj``), as LoRA's paper adapts W_q and W_v.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from bench.errors import BenchError
from bench.methods._arch import Arch, arch_of
from bench.methods.base import WrappedModel, freeze
from bench.registry import METHODS

SEPARATE = (("q_proj", "v_proj"), ("q", "v"), ("query", "value"))
FUSED = ("c_attn", "query_key_value", "qkv_proj", "Wqkv", "W_pack")


def default_targets(arch: Arch) -> tuple[str, ...]:
    """The query/value projections of the model's attention (or the fused one)."""
    first = next(iter(arch.attentions.values()))[0]
    names = {n for n, _ in first.named_children()}
    for pair in SEPARATE:
        if set(pair) <= names:
            return pair
    fused = next((n for n in FUSED if n in names), None)
    if fused is None:
        raise BenchError(f"lora: no query/value projection found in {type(first).__name__} of {arch.model_class} "
                         f"(children: {', '.join(sorted(names))}); name target_modules")
    return (fused,)


def fan_in_fan_out(model: nn.Module, targets: tuple[str, ...]) -> bool:
    """Whether the targets are GPT-2-style Conv1D layers, which store their weight as (in, out)."""
    return any(type(m).__name__ == "Conv1D" for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in targets)


@dataclass(frozen=True)
class LoraConfig:
    """``r``: rank; ``alpha``: scale numerator (update scaled by alpha / r); ``dropout``: on
    LoRA's input; ``target_modules``: module names to adapt (None: the architecture's default)."""

    r: int = 4
    alpha: float = 32.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise BenchError(f"lora: r must be a positive integer, got {self.r!r}")
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or self.alpha <= 0
        ):
            raise BenchError(f"lora: alpha must be a positive number, got {self.alpha!r}")
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, (int, float))
            or not 0 <= self.dropout < 1
        ):
            raise BenchError(f"lora: dropout must be in [0, 1), got {self.dropout!r}")
        if self.target_modules is not None:
            mods = self.target_modules
            if isinstance(mods, str) or not all(isinstance(m, str) and m for m in mods) or not mods:
                raise BenchError(
                    f"lora: target_modules must be a non-empty list of module names, got {mods!r}"
                )
            # YAML gives a list; a tuple keeps the frozen config hashable.
            object.__setattr__(self, "target_modules", tuple(mods))


class LoraModel(WrappedModel):
    """The base model with PEFT's LoRA layers injected in place."""

    def __init__(self, base: nn.Module, targets: tuple[str, ...], config: LoraConfig):
        super().__init__(base)
        self.targets = targets
        self.config = config

    def describe(self) -> str:
        return f"r={self.config.r} alpha={self.config.alpha} targets={','.join(self.targets)}"


@METHODS.register("lora")
class LoraTuning:
    """Freeze the model, inject LoRA into the target modules, train only A and B."""

    name: ClassVar[str] = "lora"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = LoraConfig
    needs: ClassVar[str] = "layout"  # what bench.methods._arch must find (bench validate asks)

    def apply(self, model: nn.Module, tokenizer: Any, config: LoraConfig) -> LoraModel:
        from peft import LoraConfig as PeftLoraConfig
        from peft import inject_adapter_in_model

        arch = arch_of(model)
        targets = config.target_modules or default_targets(arch)
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in present]
        if missing:
            linear = sorted(
                {
                    n.rsplit(".", 1)[-1]
                    for n, m in model.named_modules()
                    if hasattr(m, "weight") and m.weight.dim() == 2
                }
            )
            raise BenchError(
                f"lora: target_modules {missing} not found in {arch.model_class}; "
                f"its weight-matrix modules are: {', '.join(linear)}"
            )
        if any(getattr(m, "lora_A", None) is not None for m in model.modules()):
            raise BenchError(
                f"lora: this {arch.model_class} object already carries LoRA; load a fresh model"
            )
        freeze(model)
        peft_config = PeftLoraConfig(
            r=config.r,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=list(targets),
            fan_in_fan_out=fan_in_fan_out(model, tuple(targets)),
            bias="none",
        )
        model = inject_adapter_in_model(peft_config, model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        return LoraModel(model, tuple(targets), config)
