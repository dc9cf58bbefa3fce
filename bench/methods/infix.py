"""Infix-tuning ("infix"): the ablation of Li & Liang (2021), Section 7.2 and Table 5.

Prefix-tuning puts its trainable activations in front of the input, [PREFIX; x; y]; the
infix ablation puts them between source and target, [x; INFIX; y], so the source's own
activations cannot depend on them. The paper reports prefix > infix > embedding-only at
equal length (claim 4).

Here the infix occupies L key/value positions of every layer (P = MLP(P') as for the
prefix) placed just before the separator token that ends the source (the training layout
is " source" SEP " target" EOS): source tokens do not see it, the separator and everything
after do, and their positions are shifted by L. In generation the prompt is " source" SEP,
so the infix sits at the end of the prompt, before its last token (the separator's output
predicts the first target token, so it must see the infix). A row without a separator gets
the infix in front (it then acts as a prefix). For an encoder-decoder (BART) the source is
the encoder's input and the target the decoder's, so [x; INFIX] is the encoder's sequence:
the infix enters encoder self-attention and decoder cross-attention, not the decoder's
self-attention (which a prefix would also reach).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.methods._positions import install_position_hook
from bench.methods._prefix_attention import Site, install, roles_of
from bench.methods.base import freeze
from bench.methods.prefix import PrefixModel, build_encoders, validate_common
from bench.registry import METHODS


@dataclass(frozen=True)
class InfixConfig:
    """``length``: infix length L (null: 10); ``mlp_width``: k of the reparameterization
    MLP (null: train the key/values directly); ``input_width``: width of P' (null: hidden)."""

    length: int | None = None
    mlp_width: int | None = 512
    input_width: int | None = None

    def __post_init__(self) -> None:
        validate_common("infix", self.length, self.mlp_width, self.input_width)


class InfixModel(PrefixModel):
    """Key/values visible from the separator on (decoder-only)."""

    method_name: ClassVar[str] = "infix"

    def __init__(
        self,
        base: nn.Module,
        sites: list[Site],
        length: int,
        *,
        decoder_only: bool,
        encoders: nn.ModuleDict,
        separator_id: int | None,
    ):
        super().__init__(base, sites, length, decoder_only=decoder_only, encoders=encoders)
        self.separator_id = separator_id

    def starts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        if not self.decoder_only:
            return None
        is_sep = input_ids == self.separator_id
        if attention_mask is not None:
            is_sep &= attention_mask.bool()
        # index of the first separator of each row; 0 where a row has none
        return torch.where(is_sep.any(-1), is_sep.int().argmax(-1), 0).long()

    def cache_prefix(self) -> torch.Tensor | None:
        """Nothing is cached in front of the prompt: the source tokens must not see the infix,
        so ``bench.beam`` serves it injected, as ``generate`` does (:meth:`serving`)."""
        if not self.decoder_only:
            raise NotImplementedError(f"{self.method_name}: encoder-decoder infixes are not served by the fast decoder")
        return None

    def serving(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> contextlib.AbstractContextManager[None]:
        """The infix injected into attention, visible from the separator's key index on, and
        the positions from there shifted by L: what ``generate`` runs under. Needs one
        separator index for the whole batch (left-padded prompts that end with the
        separator, as ``bench.decode`` builds them), so that rows may be copied to the beams
        or leave the batch without a per-row index to follow them."""
        start = self.starts(input_ids, attention_mask)
        assert start is not None  # decoder-only (cache_prefix refuses the rest)
        if bool((start != start[0]).any()) or not bool(
            (input_ids[:, int(start[0])] == self.separator_id).all()
        ):
            raise NotImplementedError(f"{self.method_name}: the separator is not at one index in every row")
        kv = {r: t[None] for r, t in self.role_kv().items()}
        return self.injected(kv, None, torch.tensor([self.length]), start[:1])


@METHODS.register("infix")
class InfixTuning:
    """Freeze the LM; train per-layer key/values between source and target."""

    name: ClassVar[str] = "infix"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = InfixConfig
    needs: ClassVar[str] = "attention"  # the layout and the prefix route (bench validate asks)

    def apply(self, model: nn.Module, tokenizer: Any, config: InfixConfig) -> InfixModel:
        decoder_only = not model.config.is_encoder_decoder
        freeze(model)
        sites = install(model, "infix")
        if decoder_only:
            install_position_hook(model)
            roles: tuple[str, ...] = ("self",)
        else:
            roles = ("encoder", "cross")
        sites = [s for s in sites if s.role in roles]
        encoders, length, metadata = build_encoders(
            model,
            tokenizer,
            sites,
            tuple(roles_of(sites)),
            method=self.name,
            length=config.length,
            mlp_width=config.mlp_width,
            input_width=config.input_width,
            init="random",
            fit_steps=0,
            fit_lr=1.0,
            decoder_only=decoder_only,
        )
        # the separator the shared training loop and decoder put after the source
        sep = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        tuned = InfixModel(
            model, sites, length, decoder_only=decoder_only, encoders=encoders, separator_id=sep
        )
        tuned.metadata.update(metadata)
        return tuned
