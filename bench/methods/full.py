"""Full fine-tuning ("full"): every parameter of the language model trains.

The baseline of Li & Liang (2021), Table 1/2 ("Fine-Tune"), as in Radford et al. (2019)
and Lewis et al. (2020): the whole model is updated and a whole copy is stored per task,
which is the storage cost prefix-tuning avoids (claim 6, "1000x less per task").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from bench.methods._arch import arch_of
from bench.methods.base import WrappedModel
from bench.registry import METHODS


@dataclass(frozen=True)
class FullConfig:
    """No hyper-parameters: the learning rate and schedule belong to the shared loop."""


@METHODS.register("full")
class FullFineTuning:
    """Unfreeze every parameter; the stored state is the whole model."""

    name: ClassVar[str] = "full"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = FullConfig
    needs: ClassVar[str] = "layout"  # what bench.methods._arch must find (bench validate asks)

    def apply(self, model: nn.Module, tokenizer: Any, config: FullConfig) -> WrappedModel:
        arch_of(model)  # fail early, with the model class, on an unsupported architecture
        for p in model.parameters():
            p.requires_grad_(True)
        return WrappedModel(model)
