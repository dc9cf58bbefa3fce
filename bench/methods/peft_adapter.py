"""An existing PEFT adapter ("peft"), evaluated without training (beyond the paper).

``config: {path: DIR_OR_HUB_ID}`` names a folder written by PEFT's ``save_pretrained`` (or
``bench export``), or a hub id ``owner/name[@revision]``. The adapter is loaded onto the
suite's base model and scored with the shared decoding and official metrics, like any
trained method; the run records 0 steps. Its files (adapter_config.json and the weights)
are hashed into ``fingerprint``, part of the run key: a changed adapter is a new run, and
an adapter changed between planning and running is refused. A hub id is fingerprinted by
its name (pin a revision with ``@rev``).

Prefix-tuning adapters are run by the harness's own prefix machinery (``bench.methods.prefix``)
with the adapter's key/values: with peft 0.21.2 and transformers 5.24, ``PeftModel.generate``
drops the prefix (generate's own empty ``cache`` wins over the ``past_key_values`` PEFT
injects) and PEFT's forward positions left-padded rows from the padding; ours gives PEFT's
forward numbers on unpadded rows (tests/test_peft_equivalence.py) at any padding. Other
weight-changing tuners (LoRA, IA3, ...) run as ``PeftModel`` itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bench.errors import BenchError
from bench.methods.base import WrappedModel, count, freeze
from bench.registry import METHODS

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def adapter_fingerprint(path: str) -> str:
    """sha256 over the adapter's config and weights files, or ``hub:<id>`` for a hub id."""
    folder = Path(path)
    if folder.is_dir():
        if not (folder / "adapter_config.json").is_file():
            raise BenchError(f"peft: {path} has no adapter_config.json (not a PEFT adapter folder)")
        files = [folder / "adapter_config.json"] + [folder / w for w in WEIGHTS if (folder / w).is_file()]
        if len(files) == 1:
            raise BenchError(f"peft: {path} has no {' or '.join(WEIGHTS)}")
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        return "sha256:" + h.hexdigest()[:16]
    if HUB_ID.match(path) and not folder.exists():
        return f"hub:{path}"
    raise BenchError(f"peft: path {path!r} is neither an adapter folder nor a hub id (owner/name[@revision])")


@dataclass(frozen=True)
class PeftAdapterConfig:
    """``path``: the adapter folder or hub id; ``fingerprint``: filled from the adapter's
    files when the suite is read (leave it unset)."""

    path: str = ""
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise BenchError("peft: config.path is required (a PEFT adapter folder or hub id)")
        actual = adapter_fingerprint(self.path)
        if self.fingerprint is None:
            object.__setattr__(self, "fingerprint", actual)
        elif self.fingerprint != actual:
            raise BenchError(
                f"peft: the adapter at {self.path} changed since this run was planned (files {actual}, planned "
                f"{self.fingerprint}); run the suite again: a changed adapter is a new run"
            )


def local_folder(path: str) -> Path:
    """The adapter's folder; a hub id is fetched (or taken from the local hub cache)."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    repo, _, rev = path.partition("@")
    try:
        return Path(snapshot_download(repo, revision=rev or None))
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, auth: one line for the user
        raise BenchError(
            f"peft: cannot fetch adapter {path!r} from the hub ({type(e).__name__}); download it and give its "
            "folder as config.path"
        ) from None


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / WEIGHTS[0]).is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / WEIGHTS[0]))
    return torch.load(folder / WEIGHTS[1], map_location="cpu", weights_only=True)


class PeftAdapted(WrappedModel):
    """A ``PeftModel`` with every parameter frozen; the stored state is the adapter's tensors
    as evaluated (a copy, so the run's files show what was scored)."""

    def __init__(self, base: nn.Module, adapter: str):
        super().__init__(base)
        self.adapter = adapter

    def stored_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone().contiguous() for n, p in self.named_parameters()
                if self.adapter in n.split(".")}  # fmt: skip

    @property
    def n_stored(self) -> int:
        return count(self.stored_state())


def prefix_from_adapter(model: nn.Module, tokenizer: Any, folder: Path, config: Mapping[str, Any]) -> nn.Module:
    """Our prefix wrapper holding a PEFT prefix adapter's key/values (saved PEFT prefixes
    are always the final key/values, projection or not)."""
    if model.config.is_encoder_decoder:
        raise BenchError(f"peft: {folder}: prefix-tuning adapters are supported on decoder-only models only")
    weights = read_weights(folder)
    if "prompt_embeddings" not in weights:
        raise BenchError(f"peft: {folder}: a prefix-tuning adapter without prompt_embeddings ({sorted(weights)[:3]})")
    emb = weights["prompt_embeddings"]
    length = int(config["num_virtual_tokens"])
    method = METHODS.get("prefix")()
    tuned = method.apply(model, tokenizer, method.Config(length=length, mlp_width=None))
    enc = tuned.encoders["self"]
    shape = (enc.n_layers, 2, enc.kv_heads, length, enc.head_dim)
    if tuple(emb.shape) != (length, enc.n_layers * 2 * enc.kv_heads * enc.head_dim):
        raise BenchError(
            f"peft: {folder}: prompt_embeddings {tuple(emb.shape)} do not fit this model's prefix {shape} "
            "(adapter trained on another base model?)"
        )
    # PEFT's per-token layout is (n_layers, 2, kv_heads, head_dim), as our MLP's output
    kv = emb.view(length, enc.n_layers, 2, enc.kv_heads, enc.head_dim).permute(1, 2, 3, 0, 4)
    tuned.load_stored({"prefix.self": kv.float()})
    freeze(tuned)
    return tuned


@METHODS.register("peft")
class PeftAdapter:
    """Load an existing PEFT adapter onto the frozen model; nothing trains."""

    name: ClassVar[str] = "peft"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = PeftAdapterConfig
    needs_training: ClassVar[bool] = False  # the pipeline skips the training loop

    def apply(self, model: nn.Module, tokenizer: Any, config: PeftAdapterConfig) -> nn.Module:
        folder = local_folder(config.path)
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        kind = adapter_config.get("peft_type")
        if kind == "PREFIX_TUNING":
            return prefix_from_adapter(model, tokenizer, folder, adapter_config)
        if adapter_config.get("num_virtual_tokens") is not None:  # other prompt-learning types
            raise BenchError(
                f"peft: {config.path}: {kind} adapters are not supported (prompt learning other than "
                "prefix tuning); supported: PREFIX_TUNING and weight-changing tuners such as LORA"
            )
        from peft import PeftModel

        freeze(model)
        try:
            peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
        except (ValueError, KeyError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise BenchError(f"peft: cannot load {config.path} onto this model: {first}") from None
        freeze(peft_model)
        return PeftAdapted(peft_model, "default")
