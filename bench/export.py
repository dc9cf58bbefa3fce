"""Export a stored run's trained parameters for use outside the harness (``bench export``).

Two formats:

- ``peft``: a PEFT adapter folder that ``PeftModel.from_pretrained(base, OUT)`` loads.
  Prefix-tuning on a decoder-only model becomes PEFT's prefix tuning without projection
  (``prefix_projection=False``): its prompt embedding *is* the per-layer key/values, laid
  out (L, n_layers, 2, kv_heads, head_dim) per virtual token, the same order as our MLP's
  output, so our stored [n_layers, 2, kv_heads, L, head_dim] is only permuted (grouped
  key/value heads included: PEFT sizes the prefix by the key/value heads). LoRA becomes
  PEFT's LoRA (ours is PEFT's layer injected in place; only the module prefix differs).
  A PEFT tuner trained with ``method: peft`` is the adapter folder PEFT wrote in the run.
- ``safetensors``: every method: the stored tensors unchanged plus ``bench_adapter.json``
  describing them (method, config, base model, each tensor's shape and layout).

Methods PEFT cannot express (BART's three prefixes, the Lin adapter, infix, embedding-only,
top-k, full fine-tuning) get a one-line error naming the formats that are possible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bench import SCHEMA_VERSION
from bench.errors import BenchError, did_you_mean

FORMATS: tuple[str, ...] = ("peft", "safetensors")
EXPORT_SCHEMA = 1  # of bench_adapter.json / bench_export.json

# Why PEFT cannot hold a method's stored parameters (methods without a PEFT exporter).
NOT_PEFT: dict[str, str] = {
    "adapter": "PEFT has no bottleneck adapter after the attention/feed-forward outputs (Lin / Houlsby)",
    "infix": "PEFT prefixes sit before the input; an infix sits between source and target",
    "embedding_only": "PEFT's prompt tuning trains input embeddings of its own layout, not this method's",
    "top_k": "top-k fine-tuning changes base weights; PEFT adapters do not hold whole blocks",
    "full": "full fine-tuning changes every weight; save the model itself instead",
    "none": "nothing was trained",
    "peft": "the run evaluated an existing PEFT adapter; use that adapter's folder",
}

# What each stored tensor means, for bench_adapter.json (``safetensors`` format).
LAYOUTS: dict[str, str] = {
    "prefix": "[n_layers, 2 (key, value), kv_heads, length, head_dim] per attention role: "
    "'self' decoder(-only) self-attention; BART: 'enc' encoder self-attention, 'dec' decoder "
    "self-attention, 'cross' decoder cross-attention; prepended to that layer's keys/values, "
    "decoder-only input positions start at length",
    "infix": "as prefix, but placed between source and target",
    "lora": "PEFT LoRA A (r x in) and B (out x r) of the named base module; update (alpha / r) B A",
    "adapter": "bottleneck adapter weights by module name",
    "embedding_only": "virtual-token input embeddings [length, hidden]",
    "top_k": "base-model weights (name after 'base.') of the trained blocks",
    "full": "every base-model weight (name after 'base.')",
}


def _possible(method: str) -> str:
    return "--format safetensors (the stored tensors + bench_adapter.json describing them)"


# ----------------------------------------------------------------------------- reading a run


# The spec fields an export reads.
SPEC_READ = ("method", "method_config", "method_label", "method_version", "model", "model_fingerprint", "train_key")


def read_run(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """(spec, stored tensors, safetensors metadata) of a stored run."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from bench.store import damaged_files, read_json

    damage = damaged_files(folder).get("trainable.safetensors")
    if damage:
        raise BenchError(f"run {folder.name} is damaged: {damage} (`bench run` redoes it)")
    spec = read_json(folder / "spec.json").get("spec")
    lacking = [k for k in SPEC_READ if not isinstance(spec, dict) or k not in spec]
    if lacking:
        raise BenchError(f"run {folder.name} is damaged: {folder / 'spec.json'} lacks {', '.join(lacking)} "
                         "(`bench run` redoes it)")
    path = folder / "trainable.safetensors"
    if not path.is_file():
        raise BenchError(
            f"run {folder.name} has no trainable.safetensors (results committed without weights, or not "
            "trained yet); rerun it with bench run to export it"
        )
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise BenchError(f"{path}: schema version {meta.get('schema_version')}, expected {SCHEMA_VERSION}")
    return spec, load_file(str(path)), meta


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"output {out} exists and is not an empty folder; name a new one")
    out.mkdir(parents=True, exist_ok=True)


def _provenance(folder: Path, spec: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    return {
        "schema_version": EXPORT_SCHEMA, "format": fmt, "train_key": spec["train_key"],
        "run_folder": str(folder), "model": spec["model"], "model_fingerprint": spec["model_fingerprint"],
        "method": spec["method"], "method_version": spec["method_version"],
        "method_config": spec["method_config"], "label": spec["method_label"],
    }  # fmt: skip


# ----------------------------------------------------------------------------- PEFT


def prefix_to_peft(base: torch.nn.Module, kv: torch.Tensor) -> Any:
    """A PEFT prefix-tuning model (no projection) on ``base`` whose prompt is ``kv``
    ([n_layers, 2, kv_heads, L, head_dim], our stored decoder-only prefix)."""
    from peft import PrefixTuningConfig, get_peft_model

    n_layers, _, heads, length, dim = kv.shape
    model = get_peft_model(
        base,
        PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=length, prefix_projection=False),
    )
    emb = model.prompt_encoder["default"].embedding.weight
    # our MLP's / PEFT's order per virtual token: (n_layers, 2, kv_heads, head_dim)
    flat = kv.permute(3, 0, 1, 2, 4).reshape(length, -1)
    cfg = model.peft_config["default"]
    if tuple(emb.shape) != tuple(flat.shape) or cfg.num_layers != n_layers:
        raise BenchError(
            f"export: PEFT sizes this model's prefix as {tuple(emb.shape)} over {cfg.num_layers} layers, the "
            f"stored prefix is {n_layers} layers x {heads} key/value heads x {dim} (same base model?)"
        )
    with torch.no_grad():
        emb.copy_(flat.to(emb.dtype))
    return model


def lora_to_peft(base: torch.nn.Module, state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Any:
    """A PEFT LoRA model on ``base`` holding our stored A/B matrices."""
    from peft import LoraConfig, get_peft_model

    from bench.methods._arch import arch_of
    from bench.methods.lora import LoraConfig as OurLora
    from bench.methods.lora import default_targets, fan_in_fan_out

    ours = OurLora(**config)  # the run's config with defaults, validated as the run was
    arch = arch_of(base)
    targets = list(ours.target_modules or default_targets(arch))
    model = get_peft_model(
        base,
        LoraConfig(
            task_type="SEQ_2_SEQ_LM" if base.config.is_encoder_decoder else "CAUSAL_LM",
            r=ours.r, lora_alpha=ours.alpha, lora_dropout=ours.dropout,
            target_modules=targets, fan_in_fan_out=fan_in_fan_out(base, tuple(targets)), bias="none",
        ),
    )  # fmt: skip
    # ours: base.<module path>.lora_A.default.weight; PEFT: base_model.model.<same>
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    wanted = {"base_model.model." + k.removeprefix("base."): t for k, t in state.items()}
    if set(wanted) != set(params):
        extra, missing = sorted(set(wanted) - set(params)), sorted(set(params) - set(wanted))
        raise BenchError(
            f"export: stored LoRA tensors do not match PEFT's LoRA on this model "
            f"({len(extra)} unexpected, e.g. {extra[:1]}; {len(missing)} missing, e.g. {missing[:1]})"
        )
    with torch.no_grad():
        for n, t in wanted.items():
            if params[n].shape != t.shape:
                raise BenchError(f"export: {n} is {tuple(t.shape)} stored, PEFT expects {tuple(params[n].shape)}")
            params[n].copy_(t.to(params[n].dtype))
    return model


def _peft_model(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], base: torch.nn.Module) -> Any:
    method = spec["method"]
    if method == "prefix":
        if set(state) != {"prefix.self"}:
            raise BenchError(
                f"run {spec['train_key']}: prefix-tuning on {spec['model']} (encoder-decoder) stores "
                f"{', '.join(sorted(state))}: three independent prefixes (encoder, decoder, cross-attention) that "
                f"PEFT's single prefix cannot hold; possible formats: {_possible(method)}"
            )
        return prefix_to_peft(base, state["prefix.self"])
    if method == "lora":
        return lora_to_peft(base, state, spec["method_config"])
    why = NOT_PEFT.get(method, "no PEFT equivalent is known")
    raise BenchError(
        f"run {spec['train_key']}: method {method!r} cannot be exported as a PEFT adapter ({why}); "
        f"possible formats: {_possible(method)}"
    )


PEFT_METHODS = ("prefix", "lora")


def export_peft(folder: Path, out: Path) -> Path:
    """Write the run in ``folder`` as a PEFT adapter folder ``out``."""
    from bench.models import load_model

    spec, state, _ = read_run(folder)
    if spec["method"] == "peft" and "peft_type" in spec["method_config"]:
        return _copy_native(folder, out, spec)
    if spec["method"] not in PEFT_METHODS:
        _peft_model(spec, state, torch.nn.Module())  # raises the one-line error
    # The adapter holds no base weight, only shapes and module names matter: a hub model is
    # built from its configuration (offline for the paper's models), tiny ones as every run.
    loaded = load_model(spec["model"], from_config=True, seed=0)
    model = _peft_model(spec, state, loaded.model)
    model.peft_config["default"].base_model_name_or_path = spec["model"]
    _prepare_out(out)
    model.save_pretrained(str(out))
    (out / "bench_export.json").write_text(json.dumps(_provenance(folder, spec, "peft"), indent=2) + "\n")
    return out


def _copy_native(folder: Path, out: Path, spec: Mapping[str, Any]) -> Path:
    """A PEFT tuner trained by the harness: the adapter folder PEFT itself wrote in the run."""
    import shutil

    from bench.pipeline import NATIVE_FOLDER

    native = folder / NATIVE_FOLDER
    if not (native / "adapter_config.json").is_file():
        raise BenchError(f"run {folder.name} has no {NATIVE_FOLDER}/ (results committed without weights?); rerun "
                         "it with bench run --force to export it")
    _prepare_out(out)
    for f in native.iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    (out / "bench_export.json").write_text(json.dumps(_provenance(folder, spec, "peft"), indent=2) + "\n")
    return out


def export_safetensors(folder: Path, out: Path) -> Path:
    """Write the run's stored tensors unchanged plus ``bench_adapter.json`` describing them."""
    from safetensors.torch import save_file

    spec, state, meta = read_run(folder)
    _prepare_out(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "adapter.safetensors"),
              metadata={k: v for k, v in meta.items() if k != "train_record"})
    described = _provenance(folder, spec, "safetensors") | {
        "file": "adapter.safetensors",
        "layout": LAYOUTS.get(spec["method"], "see the method's file under bench/methods/"),
        "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                    for k, v in sorted(state.items())},
    }  # fmt: skip
    (out / "bench_adapter.json").write_text(json.dumps(described, indent=2) + "\n")
    return out


EXPORTERS: dict[str, Callable[[Path, Path], Path]] = {"peft": export_peft, "safetensors": export_safetensors}


def export_run(*, run: str, out: Path, fmt: str = "peft", results: Path = Path("results")) -> Path:
    """Export the run named by ``run`` (train key, unique key prefix, or folder) to ``out``."""
    from bench.compare import resolve_run

    if fmt not in EXPORTERS:
        raise BenchError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}{did_you_mean(fmt, FORMATS)}")
    return EXPORTERS[fmt](resolve_run(run, results), out)
