"""Embedding-only ("embedding_only"): the ablation of Li & Liang (2021), Section 7.2, Table 5.

Only the input embeddings of L virtual tokens are free; every layer above them is computed
by the frozen LM (what prompt tuning later did). Prefix-tuning instead frees the
activations of every layer, and the paper finds embedding-only clearly worse (claim 4:
prefix > infix > embedding-only at equal length).

Decoder-only: the virtual tokens come first and the model is causal, so their key/values
in every layer do not depend on the input: each forward runs the frozen LM once on the L
trainable embeddings (positions 0..L-1), records the key/values its attention layers
compute, and injects them exactly like a prefix (inputs numbered from L). This equals
running the LM on [E; embeddings(x)], and shares the prefix path for scoring and beam
search. Encoder-decoder (BART): the encoder is bidirectional, so the virtual tokens are
prepended to the encoder's input embeddings (with their positions) and the decoder is
untouched.

Initialization: "random" draws N(0, s^2) with s the standard deviation of the model's own
input embedding matrix (so virtual tokens start at the scale of real ones), or a text whose
token embeddings become E (the length then equals its token count).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.errors import BenchError
from bench.methods._positions import install_position_hook
from bench.methods._prefix_attention import Site, capturing, install, roles_of
from bench.methods.base import freeze
from bench.methods.prefix import DEFAULT_LENGTH, PrefixTuned, validate_common, word_ids
from bench.registry import METHODS


@dataclass(frozen=True)
class EmbeddingOnlyConfig:
    """``length``: number of virtual tokens L (null: 10, or the token count of ``init``);
    ``init``: "random" or a text whose token embeddings initialize them."""

    length: int | None = None
    init: str = "random"

    def __post_init__(self) -> None:
        validate_common("embedding_only", self.length, None, None)
        if not isinstance(self.init, str) or not self.init.strip():
            raise BenchError(
                f'embedding_only: init must be "random" or a non-empty text, got {self.init!r}'
            )


class EmbeddingOnlyModel(PrefixTuned):
    """Trainable embeddings of L virtual tokens in front of the input."""

    method_name: ClassVar[str] = "embedding_only"

    def __init__(
        self, base: nn.Module, sites: list[Site], embedding: torch.Tensor, *, decoder_only: bool
    ):
        super().__init__(base, sites, embedding.shape[0], decoder_only=decoder_only)
        self.embedding = nn.Parameter(embedding)

    # -- decoder-only: the virtual tokens' key/values, injected as a prefix -------------
    def role_kv(self) -> dict[str, torch.Tensor]:
        with capturing() as record:
            self.base.base_model(inputs_embeds=self.embedding[None], use_cache=False)
        return {
            role: torch.stack(
                [
                    torch.stack([record[id(s.module)][0][0], record[id(s.module)][1][0]])
                    for s in group
                ]
            )
            for role, group in roles_of(self.sites).items()
        }

    # -- encoder-decoder: the virtual tokens in front of the encoder's input ------------
    def _encoder_inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.base.get_input_embeddings()(input_ids)
        batch = input_ids.shape[0]
        prompt = self.embedding[None].expand(batch, -1, -1).to(embeds.dtype)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ones = torch.ones(
            batch, self.length, dtype=attention_mask.dtype, device=attention_mask.device
        )
        return torch.cat([prompt, embeds], dim=1), torch.cat([ones, attention_mask], dim=1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any
    ) -> Any:
        if self.decoder_only:
            return super().forward(input_ids, attention_mask, **kw)
        embeds, mask = self._encoder_inputs(input_ids, attention_mask)
        return self.base(inputs_embeds=embeds, attention_mask=mask, **kw)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any
    ) -> torch.Tensor:
        if self.decoder_only:
            return super().generate(input_ids, attention_mask, **kw)
        embeds, mask = self._encoder_inputs(input_ids, attention_mask)
        return self.base.generate(inputs_embeds=embeds, attention_mask=mask, **kw)

    # -- what is stored: the embeddings themselves --------------------------------------
    def stored_state(self) -> dict[str, torch.Tensor]:
        return {"embedding": self.embedding.detach().clone().contiguous()}

    def load_stored(self, state: Mapping[str, torch.Tensor]) -> None:
        if set(state) != {"embedding"} or tuple(state["embedding"].shape) != tuple(
            self.embedding.shape
        ):
            shapes = {k: tuple(v.shape) for k, v in state.items()}
            raise BenchError(
                f"embedding_only: stored state {shapes} does not match this model's "
                f"{{'embedding': {tuple(self.embedding.shape)}}} (same model and length?)"
            )
        with torch.no_grad():
            self.embedding.copy_(state["embedding"])


@METHODS.register("embedding_only")
class EmbeddingOnlyTuning:
    """Freeze the LM; train only the input embeddings of L virtual tokens."""

    name: ClassVar[str] = "embedding_only"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = EmbeddingOnlyConfig
    needs: ClassVar[str] = "attention"  # the layout and the prefix route (bench validate asks)

    def apply(
        self, model: nn.Module, tokenizer: Any, config: EmbeddingOnlyConfig
    ) -> EmbeddingOnlyModel:
        decoder_only = not model.config.is_encoder_decoder
        freeze(model)
        table = model.get_input_embeddings()
        device = table.weight.device
        if config.init == "random":
            length = DEFAULT_LENGTH if config.length is None else config.length
            std = float(table.weight.detach().float().std())
            embedding = torch.randn(length, table.weight.shape[1], device=device) * std
        else:
            ids = word_ids(tokenizer, config.init)
            if not ids:
                raise BenchError(f"embedding_only: init text {config.init!r} has no tokens")
            if config.length is not None and config.length != len(ids):
                raise BenchError(
                    f"embedding_only: length {config.length} but init {config.init!r} is {len(ids)} "
                    f"tokens in this model's tokenizer; drop length or set it to {len(ids)}"
                )
            with torch.no_grad():
                # through the module, so BART's embedding scale is included like for real tokens
                embedding = table(torch.tensor(ids, device=device)).float().clone()
        sites: list[Site] = []
        if decoder_only:
            sites = install(model, "embedding_only")
            install_position_hook(model)
        tuned = EmbeddingOnlyModel(model, sites, embedding, decoder_only=decoder_only)
        tuned.metadata["init"] = config.init
        return tuned
