"""PEFT's tuners in the harness ("peft", beyond the paper): an existing adapter evaluated, or
any PEFT tuner trained in the shared loop.

Two forms of ``config``:

- ``{path: DIR_OR_HUB_ID}``: a folder written by PEFT's ``save_pretrained`` (or ``bench
  export``), or a hub id ``owner/name[@revision]``, loaded onto the suite's base model and
  scored with the shared decoding and official metrics; the run records 0 steps. Its files
  (adapter_config.json and the weights) are hashed into ``fingerprint``, part of the run key:
  a changed adapter is a new run, and an adapter changed between planning and running is
  refused. A hub id is fingerprinted by its name (pin a revision with ``@rev``).
- ``{peft_type: LORA | IA3 | ADALORA | LOHA | LOKR | VERA | PROMPT_TUNING | P_TUNING |
  PREFIX_TUNING | ..., <fields of PEFT's config class for that type>}``: ``get_peft_model``
  builds the tuner and the shared loop trains it (same data, schedule, early stopping and
  cost records as every method). The fields are checked against PEFT's own config dataclass
  when the suite is read (unknown field: did-you-mean; wrong type where the annotation is
  simple; then PEFT's own ``__post_init__``); ``task_type`` and what PEFT reads off the model
  are set by the harness. DoRA is LoRA's ``use_dora: true``. The run stores PEFT's own
  folder (``<run>/peft_adapter/``, ``save_pretrained``) beside ``trainable.safetensors``
  (the same tensors, under the same names, which the harness reloads), and ``bench export
  --format peft`` hands that folder out. Counts: trained = what the optimizer updates (P-tuning's
  encoder, a prefix projection included; PEFT's ``get_nb_trainable_parameters``), stored =
  PEFT's saved state dict (final prompt embeddings; VeRA's shared projections included).

The run key holds ``peft_type`` and the fields as given (PEFT's defaults are not spelt out);
PEFT's own version is recorded in the run's provenance, not keyed, as for transformers and
torch: code outside the harness is not hashed.

Decoding. Weight-changing tuners (LoRA and DoRA, IA3, AdaLoRA, LoHa, LoKr, VeRA, ...) leave
their layers injected in the base model, which the shared decoding then runs like any model.
Prompt-type tuners are not decoded by ``PeftModel.generate``: with peft 0.21.2 and
transformers 5, greedy ``generate`` drops a prefix (generate's own empty ``cache`` wins over
the ``past_key_values`` PEFT injects) and PEFT's forward positions left-padded rows from the
padding. Instead their final tensors (PEFT's ``prompt_embeddings``) go through the harness's
own machinery: PREFIX_TUNING's key/values as our prefix (``bench.methods.prefix``), the
virtual tokens of PROMPT_TUNING and P_TUNING as ``bench.methods.embedding_only``'s (the LM run
on them gives the key/values every later token sees). tests/test_peft_train.py checks those
against PEFT's forward pass (same logits on unpadded rows); prompt types are decoder-only here.

AdaLoRA trains as PEFT's trainer integration trains it: its orthogonality penalty is added to
each step's objective (``training_penalty``; PEFT adds it inside its forward only when labels go
in), its rank budget is reallocated after every optimizer step (``after_optimizer_step``: PEFT's
``update_and_allocate``), the allocator's scores travel in the checkpoint, and after early
stopping restores the best dev state the final rank pattern is applied, so the model decoded is
the one stored (only the pattern's triplets). Its runs are method version 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import typing
import warnings
from collections.abc import Mapping
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


# The prompt-learning types decoded by the harness's own machinery (see the module docstring).
PROMPT_TYPES = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")
# Types that cannot train alone in the shared loop: why.
REFUSED: dict[str, str] = {
    "XLORA": "X-LoRA mixes LoRA adapters trained beforehand",
    "POLY": "Poly routes by task ids, which the shared loop does not pass",
}
# Fields of PEFT's config classes that the harness fills: why.
HARNESS_FIELDS: dict[str, str] = {
    "task_type": "set from the model: CAUSAL_LM or SEQ_2_SEQ_LM",
    "peft_type": "",
    "base_model_name_or_path": "the suite's model",
    "revision": "the suite's model",
    "inference_mode": "the harness trains, then evaluates",
    "auto_mapping": "PEFT's bookkeeping",
    "peft_version": "PEFT's bookkeeping",
    "token_dim": "read off the model by PEFT",
    "num_transformer_submodules": "read off the model by PEFT",
    "num_attention_heads": "read off the model by PEFT",
    "num_layers": "read off the model by PEFT",
}


def peft_types() -> list[str]:
    """The tuner names this PEFT version has (``peft.PeftType`` values with a config class)."""
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    return sorted(str(getattr(k, "value", k)) for k in PEFT_TYPE_TO_CONFIG_MAPPING)


def peft_config_class(peft_type: str) -> type:
    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]


def is_prompt_learning(peft_type: str) -> bool:
    from peft import PromptLearningConfig

    return issubclass(peft_config_class(peft_type), PromptLearningConfig)


def field_problems(peft_type: Any, fields: Mapping[str, Any]) -> list[str]:
    """What is wrong with a trained PEFT tuner's ``peft_type`` and fields, one line each."""
    import peft

    from bench.config import _type_name, _type_ok
    from bench.errors import did_you_mean

    if not isinstance(peft_type, str) or not peft_type:
        return [f"peft: peft_type must be the name of a PEFT tuner (LORA, IA3, ...), got {peft_type!r}"]
    names = peft_types()
    if peft_type not in names:
        hint = did_you_mean(peft_type.upper(), names)
        if not hint:  # nothing close: the whole list, one line still
            hint = f" (peft {peft.__version__} has {', '.join(names)})"
        return [f"peft: unknown peft_type {peft_type!r}{hint}"]
    if peft_type in REFUSED:
        return [f"peft: peft_type {peft_type} cannot be trained here: {REFUSED[peft_type]}"]
    if is_prompt_learning(peft_type) and peft_type not in PROMPT_TYPES:
        return [(f"peft: peft_type {peft_type} is a prompt-learning type without a decoding path here "
                 f"(prompt types decoded faithfully: {', '.join(PROMPT_TYPES)}; any weight-changing tuner)")]
    cls = peft_config_class(peft_type)
    declared = [f.name for f in dataclasses.fields(cls) if f.init]
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation this Python cannot resolve: no type checks
        hints = {}
    allowed = [n for n in declared if n not in HARNESS_FIELDS]
    problems = []
    for key, value in fields.items():
        if key in HARNESS_FIELDS:
            problems.append(f"peft: {key} is not a suite field ({HARNESS_FIELDS[key]}); remove it")
        elif key not in declared:
            hint = did_you_mean(str(key), allowed) or f" (PEFT's {cls.__name__} has {', '.join(allowed)})"
            problems.append(f"peft: unknown {peft_type} field {key!r}{hint}")
        elif key in hints and not _type_ok(value, hints[key]):
            problems.append(f"peft: {peft_type} field {key}: expected {_type_name(hints[key])}, got {value!r}")
    if problems:
        return problems
    try:  # PEFT's own checks of the values (ranges, combinations)
        build_peft_config(peft_type, fields, "CAUSAL_LM")
    except Exception as e:  # noqa: BLE001 - PEFT raises ValueError, TypeError, ...: one line for the user
        return [f"peft: {peft_type} config: {_first_line(e)}"]
    return []


def _first_line(e: BaseException) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:300]


def build_peft_config(peft_type: str, fields: Mapping[str, Any], task_type: str) -> Any:
    """PEFT's config object for this tuner (lists as PEFT expects them, not tuples)."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about defaults it adjusts; the run records the config
        return peft_config_class(peft_type)(task_type=task_type, **values)


class PeftConfig:
    """``config`` of method ``peft``: ``path`` (and ``fingerprint``, filled from the adapter's
    files when the suite is read: leave it unset) evaluates an existing adapter; ``peft_type``
    plus PEFT's fields for that type trains one. Frozen; equal by value."""

    __slots__ = ("fields", "fingerprint", "path", "peft_type")
    path: str | None
    fingerprint: str | None
    peft_type: str | None
    fields: Mapping[str, Any]

    def __init__(self, path: str | None = None, fingerprint: str | None = None, peft_type: str | None = None,
                 **fields: Any):
        if peft_type is None:
            if fields:
                raise BenchError(f"peft: fields {sorted(fields)} need a peft_type (a tuner to train), or give "
                                 "only path (an existing adapter)")
            path = "" if path is None else path
            if not isinstance(path, str) or not path.strip():
                raise BenchError("peft: config.path is required (a PEFT adapter folder or hub id), or peft_type "
                                 "(a tuner to train: LORA, IA3, PROMPT_TUNING, ...)")
            actual = adapter_fingerprint(path)
            if fingerprint is not None and fingerprint != actual:
                raise BenchError(
                    f"peft: the adapter at {path} changed since this run was planned (files {actual}, planned "
                    f"{fingerprint}); run the suite again: a changed adapter is a new run"
                )
            values: dict[str, Any] = {"path": path, "fingerprint": actual, "peft_type": None, "fields": {}}
        else:
            if path is not None or fingerprint is not None:
                raise BenchError("peft: give either path (evaluate an existing adapter) or peft_type (train one), "
                                 "not both")
            problems = field_problems(peft_type, fields)
            if problems:
                raise BenchError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
            hints = _hints_of(peft_type)
            from bench.config import normal_value

            normal = {k: normal_value(list(v) if isinstance(v, tuple) else v, hints.get(k, Any))
                      for k, v in sorted(fields.items())}
            values = {"path": None, "fingerprint": None, "peft_type": peft_type, "fields": normal}
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"PeftConfig is frozen ({name})")

    @classmethod
    def from_suite(cls, data: Mapping[str, Any], where: str, problems: list[str]) -> PeftConfig | None:
        """Validate a suite's mapping, every problem reported (bench.config.from_mapping's hook)."""
        data = dict(data)
        if "peft_type" in data and "path" not in data and "fingerprint" not in data:
            found = field_problems(data["peft_type"], {k: v for k, v in data.items() if k != "peft_type"})
            if found:
                problems.extend(f"{where}: {p}" for p in found)
                return None
        try:
            return cls(**data)
        except BenchError as e:
            problems.append(f"{where}: {e}")
            return None

    def as_mapping(self) -> dict[str, Any]:
        """What the run key holds: ``{path, fingerprint}`` (as before training existed), or
        ``{peft_type, <fields as given>}``."""
        if self.peft_type is None:
            return {"path": self.path, "fingerprint": self.fingerprint}
        return {"peft_type": self.peft_type, **self.fields}

    @property
    def trains(self) -> bool:
        return self.peft_type is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PeftConfig) and self.as_mapping() == other.as_mapping()

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_mapping(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        return f"PeftConfig({', '.join(f'{k}={v!r}' for k, v in self.as_mapping().items())})"


PeftAdapterConfig = PeftConfig  # the name before training existed


def _hints_of(peft_type: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(peft_config_class(peft_type))
    except Exception:  # noqa: BLE001 - see field_problems
        return {}


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
    kv = kv_from_embeddings(emb, length, (enc.n_layers, enc.kv_heads, enc.head_dim))
    tuned.load_stored({"prefix.self": kv.float()})
    freeze(tuned)
    return tuned


def kv_from_embeddings(emb: torch.Tensor, length: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """PEFT's prefix ``prompt_embeddings`` [L, n_layers * 2 * kv_heads * head_dim] as our
    [n_layers, 2, kv_heads, L, head_dim] (PEFT's per-token layout is our MLP's output order)."""
    n_layers, kv_heads, head_dim = shape
    return emb.view(length, n_layers, 2, kv_heads, head_dim).permute(1, 2, 3, 0, 4)


# The AdaLoRA rank allocator's per-parameter state, kept in a checkpoint.
ALLOCATOR_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")


class PeftTrained(WrappedModel):
    """A PEFT tuner trained by the shared loop.

    ``base`` is the transformers model (weight-changing tuners live injected in it, so the
    shared decoding runs it as any model); ``peft`` the ``PeftModel`` around it, whose forward
    is the training loss's. Prompt-type tuners decode through ``server``, our prefix or
    embedding-only wrapper of the same model, loaded with PEFT's final tensors (module
    docstring). What is stored is PEFT's own saved state dict.
    """

    needs_training: ClassVar[bool] = True

    def __init__(self, peft_model: nn.Module, peft_type: str, server: nn.Module | None):
        super().__init__(peft_model.get_base_model())
        self.peft = peft_model  # after base: shared parameters keep their base.* names
        self.peft_type = peft_type
        self.n_virtual = int(getattr(peft_model.active_peft_config, "num_virtual_tokens", 0) or 0)
        # a plain attribute, not a submodule: the server's own tensors are a copy of PEFT's
        object.__setattr__(self, "server", server)
        self._loaded: dict[str, torch.Tensor] | None = None  # stored tensors put back (prompt types)

    def describe(self) -> str:
        cfg = self.peft.active_peft_config
        return f"peft {self.peft_type} ({type(cfg).__name__})"

    # -- training: PEFT's forward ---------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any) -> Any:
        if self.server is None:
            return self.peft(input_ids=input_ids, attention_mask=attention_mask, **kw)
        if self._loaded is not None:  # stored final tensors, not PEFT's (projection) parameters
            return self._served()(input_ids, attention_mask, **kw)
        # PEFT puts virtual tokens in front of the sequence: the loop's keep-mask would not fit
        # (the loop then selects the labelled positions from the full logits itself).
        kw.pop("logits_to_keep", None)
        out = self.peft(input_ids=input_ids, attention_mask=attention_mask, **kw)
        if self.peft_type != "PREFIX_TUNING":  # the virtual tokens' own logits
            out.logits = out.logits[:, self.n_virtual :]
        return out

    # -- decoding ------------------------------------------------------------------------------
    def _served(self) -> nn.Module:
        """The server holding this tuner's current final tensors."""
        emb = self.stored_state()["prompt_embeddings"].to(next(self.base.parameters()).device)
        server = self.server
        if self.peft_type == "PREFIX_TUNING":
            enc = server.encoders["self"]
            server.load_stored({"prefix.self": kv_from_embeddings(
                emb.float(), self.n_virtual, (enc.n_layers, enc.kv_heads, enc.head_dim))})
        else:
            server.load_stored({"embedding": emb.float()})
        server.train(self.training)
        return server

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> torch.Tensor:
        if self.server is None:
            return self.base.generate(input_ids=input_ids, attention_mask=attention_mask, **kw)
        return self._served().generate(input_ids, attention_mask, **kw)

    def cache_prefix(self) -> torch.Tensor | None:
        return None if self.server is None else self._served().cache_prefix()

    def serving(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None) -> contextlib.AbstractContextManager[None]:
        if self.server is None:
            return contextlib.nullcontext()
        return self._served().serving(input_ids, attention_mask)

    # -- AdaLoRA: what PEFT's trainer integration does beyond the loss ----------------------
    def training_penalty(self) -> torch.Tensor | None:
        """AdaLoRA's orthogonality penalty, orth_reg_weight x the mean over P and Q matrices of
        ||P P^T - I||_F (Q^T Q for Q): PEFT adds it inside its forward only when labels go in,
        and the shared loop computes the loss from the logits."""
        if self.peft_type != "ADALORA":
            return None
        weight = float(self.peft.active_peft_config.orth_reg_weight)
        terms = []
        for name, p in self.peft.named_parameters():
            if p.requires_grad and ("lora_A" in name or "lora_B" in name):
                cov = p @ p.T if "lora_A" in name else p.T @ p
                eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
                terms.append(torch.linalg.matrix_norm(cov - eye))
        return weight * torch.stack(terms).mean() if terms and weight else None

    def after_optimizer_step(self, step: int) -> None:
        """AdaLoRA's budget schedule: importance scores from the gradients still in place, then
        the triplets below the step's budget masked (PEFT's ``update_and_allocate``)."""
        if self.peft_type == "ADALORA":
            self.peft.base_model.update_and_allocate(step)

    def training_state(self) -> dict[str, torch.Tensor]:
        """AdaLoRA's allocator state (importance scores and their averages) and rank pattern:
        without them a resumed run would reallocate from scratch."""
        if self.peft_type != "ADALORA":
            return {}
        allocator = self.peft.base_model.rankallocator
        out = {f"{kind}/{n}": t.detach().clone() for kind in ALLOCATOR_STATE
               for n, t in getattr(allocator, kind).items()}
        pattern = self.peft.active_peft_config.rank_pattern or {}
        out.update({f"rank_pattern/{n}": torch.tensor(keep, dtype=torch.bool) for n, keep in pattern.items()})
        return out

    def load_training_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if self.peft_type != "ADALORA":
            return
        allocator = self.peft.base_model.rankallocator
        for kind in ALLOCATOR_STATE:
            setattr(allocator, kind, {k.split("/", 1)[1]: v.clone() for k, v in state.items()
                                      if k.startswith(f"{kind}/")})
        pattern = {k.split("/", 1)[1]: v.tolist() for k, v in state.items() if k.startswith("rank_pattern/")}
        self.peft.active_peft_config.rank_pattern = pattern or None

    def finish_training(self) -> None:
        """AdaLoRA: the final rank pattern applied to the restored best-dev parameters, so the
        model decoded is the one stored (PEFT saves only the pattern's triplets)."""
        pattern = self.peft.active_peft_config.rank_pattern if self.peft_type == "ADALORA" else None
        if pattern:
            model = self.peft.base_model
            model.rankallocator.mask_using_rank_pattern(model.model, pattern)

    def _resize_for(self, state: Mapping[str, torch.Tensor]) -> None:
        """AdaLoRA: a fresh wrapper takes the ranks of stored tensors that a rank pattern cut.
        Which triplets were kept does not matter once only they are stored: the pattern keeps
        the first r of each module, and PEFT's resize keeps the scaling of training."""
        cfg = self.peft.active_peft_config
        pattern = {}
        for key, t in state.items():
            if key.endswith(".lora_E"):
                r = int(t.shape[0])
                pattern[key.removeprefix("base_model.model.")] = [True] * r + [False] * (int(cfg.init_r) - r)
        if any(not all(keep) for keep in pattern.values()):
            cfg.rank_pattern = pattern

    # -- what is stored: PEFT's saved state dict -------------------------------------------
    def stored_state(self) -> dict[str, torch.Tensor]:
        if self._loaded is not None:
            return {k: v.clone() for k, v in self._loaded.items()}
        from peft.utils import get_peft_model_state_dict

        was = self.peft.training
        self.peft.eval()  # a prompt encoder's dropout must not reach the saved embeddings
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # AdaLoRA may cut a module to rank 0; PEFT takes the empty tensors for unsaved shards
                warnings.filterwarnings("ignore", message=".*have invalid shape.*")
                # the embeddings are frozen and the vocabulary is the model's: nothing to look up
                # (PEFT's "auto" asks the hub for the base model's config to find out)
                state = get_peft_model_state_dict(self.peft, save_embedding_layers=False)
        finally:
            self.peft.train(was)
        return {k: v.detach().clone().contiguous() for k, v in state.items()}

    def load_stored(self, state: Mapping[str, torch.Tensor]) -> None:
        if self.peft_type == "ADALORA" and not self.peft.active_peft_config.rank_pattern:
            self._resize_for(state)
        mine = self.stored_state()
        wrong = sorted(k for k in set(mine) | set(state)
                       if k not in mine or k not in state or tuple(mine[k].shape) != tuple(state[k].shape))
        if wrong:
            raise BenchError(f"peft: stored {self.peft_type} tensors do not fit this model's ({len(wrong)} "
                             f"differ, e.g. {wrong[0]}); same base model and config?")
        device = next(self.base.parameters()).device
        if self.server is not None:
            # P-tuning's encoder and a prefix projection are not stored: the final tensors serve
            self._loaded = {k: v.detach().clone().to(device) for k, v in state.items()}
            return
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(self.peft, {k: v.to(device) for k, v in state.items()})

    def save_native(self, path: Path, model: str) -> None:
        """PEFT's own adapter folder at ``path`` (``save_pretrained``; ``PeftModel.from_pretrained``
        loads it), published whole: written beside it, then renamed."""
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = self.peft.active_peft_config
        cfg.base_model_name_or_path = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.peft.save_pretrained(str(tmp), save_embedding_layers=False)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)


def prompt_server(model: nn.Module, tokenizer: Any, peft_type: str, length: int) -> nn.Module:
    """Our wrapper of ``model`` that decodes a prompt-type tuner from its final tensors."""
    if peft_type == "PREFIX_TUNING":
        method = METHODS.get("prefix")()
        server = method.apply(model, tokenizer, method.Config(length=length, mlp_width=None))
    else:
        method = METHODS.get("embedding_only")()
        server = method.apply(model, tokenizer, method.Config(length=length))
    freeze(server)
    return server


def train_form(model: nn.Module, tokenizer: Any, config: PeftConfig) -> PeftTrained:
    """``get_peft_model`` on the frozen model for a tuner the shared loop trains."""
    from peft import get_peft_model

    is_ed = bool(model.config.is_encoder_decoder)
    kind = config.peft_type
    model_class = type(model).__name__
    if kind in PROMPT_TYPES and is_ed:
        raise BenchError(f"peft: {kind} is supported on decoder-only models here, not on {model_class}")
    peft_config = build_peft_config(kind, config.fields, "SEQ_2_SEQ_LM" if is_ed else "CAUSAL_LM")
    freeze(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, peft_config)
    except (TypeError, ValueError, KeyError, RuntimeError, NotImplementedError, AttributeError) as e:
        raise BenchError(f"peft: {kind} cannot adapt {model_class}: {_first_line(e)}") from None
    server = None
    if kind in PROMPT_TYPES:
        length = int(peft_model.active_peft_config.num_virtual_tokens)
        server = prompt_server(peft_model.get_base_model(), tokenizer, kind, length)
    return PeftTrained(peft_model, kind, server)


@METHODS.register("peft")
class PeftAdapter:
    """Load an existing PEFT adapter onto the frozen model (nothing trains), or build a PEFT
    tuner for the shared loop to train."""

    name: ClassVar[str] = "peft"
    VERSION: ClassVar[str] = "1"

    @classmethod
    def version_of(cls, config: Mapping[str, Any]) -> str:
        """"2" for AdaLoRA, which from then on trains with its rank reallocation and penalty
        (it trained at its initial rank before): its runs get new keys, no other tuner's do."""
        return "2" if dict(config).get("peft_type") == "ADALORA" else cls.VERSION
    Config: ClassVar[type] = PeftConfig
    # The class default, for the path form; a trained tuner's wrapper says True.
    needs_training: ClassVar[bool] = False

    def apply(self, model: nn.Module, tokenizer: Any, config: PeftConfig) -> nn.Module:
        if config.trains:
            return train_form(model, tokenizer, config)
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
