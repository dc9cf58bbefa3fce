"""Top-k layer tuning ("top_k"): only the top k transformer blocks (and the final norm) train.

"FT-top2" of Li & Liang (2021), Table 1/2, after Howard & Ruder (2018) style partial
fine-tuning: the top two blocks of GPT-2 medium plus its final LayerNorm, 25,194,496
parameters. The authors' flag may also have unfrozen the word embeddings; the paper's
count says it did not, so that is an explicit option here (``train_embeddings``, default
off). Unfreezing GPT-2's word embeddings also trains its output layer (they are tied).

For BART, top-k means the top k *decoder* blocks plus the final decoder norm. BART is
post-LN (each block ends with its own LayerNorm) and has no separate final decoder norm,
so only the blocks train (an mBART-style ``decoder.layer_norm`` is included where present).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from bench.errors import BenchError
from bench.methods._arch import arch_of
from bench.methods.base import WrappedModel, freeze
from bench.registry import METHODS


@dataclass(frozen=True)
class TopKConfig:
    """``k``: how many of the top decoder blocks train; ``train_embeddings``: also the
    input word embeddings (not in the paper's count)."""

    k: int = 2
    train_embeddings: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise BenchError(f"top_k: k must be a positive integer, got {self.k!r}")
        if not isinstance(self.train_embeddings, bool):
            raise BenchError(
                f"top_k: train_embeddings must be true or false, got {self.train_embeddings!r}"
            )


@METHODS.register("top_k")
class TopKTuning:
    """Freeze everything, then unfreeze the top ``k`` decoder blocks and the final norm."""

    name: ClassVar[str] = "top_k"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = TopKConfig
    needs: ClassVar[str] = "layout"  # what bench.methods._arch must find (bench validate asks)

    def apply(self, model: nn.Module, tokenizer: Any, config: TopKConfig) -> WrappedModel:
        arch = arch_of(model)
        blocks = arch.decoder_blocks
        if config.k > len(blocks):
            raise BenchError(
                f"top_k: k={config.k} but {arch.model_class} has {len(blocks)} decoder blocks"
            )
        freeze(model)
        unfrozen: list[nn.Module] = list(blocks[-config.k :])
        if arch.final_norm is not None:
            unfrozen.append(arch.final_norm)
        if config.train_embeddings:
            unfrozen.append(arch.input_embeddings)
        for module in unfrozen:
            for p in module.parameters():
                p.requires_grad_(True)
        return WrappedModel(model)
