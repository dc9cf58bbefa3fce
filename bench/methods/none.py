"""No tuning ("none"): the bare pretrained model, scored zero-shot (beyond the paper).

The frozen LM decodes the harness's own input format (source, separator, target) with the
shared decoding and the official metrics, so its scores sit beside the tuned methods' as a
floor: how much of a method's score the pretrained model already had. Nothing trains, the
run records 0 steps, and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from bench.methods.base import WrappedModel, freeze
from bench.registry import METHODS


@dataclass(frozen=True)
class NoneConfig:
    """No hyper-parameters."""


@METHODS.register("none")
class NoTuning:
    """Freeze everything; the wrapper is the model itself."""

    name: ClassVar[str] = "none"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = NoneConfig
    needs_training: ClassVar[bool] = False  # the pipeline skips the training loop

    def apply(self, model: nn.Module, tokenizer: Any, config: NoneConfig) -> WrappedModel:
        freeze(model)
        return WrappedModel(model)
