"""Prefix-tuning ("prefix"): Li & Liang (2021), "Prefix-Tuning: Optimizing Continuous Prompts
for Generation", ACL-IJCNLP 2021 (arXiv 2101.00190).

The language model stays frozen. Every attention layer gets L extra key/value positions in
front of the input, free parameters P (for BART three independent prefixes: encoder
self-attention, decoder self-attention and decoder cross-attention). Training optimizes a
reparameterization P = MLP(P'), P' of shape L x k', MLP = Linear(k' -> k) Tanh
Linear(k -> n_layer * 2 * kv_width), k = ``mlp_width`` (512 table-to-text, 800
summarization; ``null``: P trains directly). After training only P is stored, and a
reloaded prefix needs no MLP. The frozen LM runs without dropout, as in the authors' code.

Initialization is random or from the activations of real words ("table-to-text:",
"summarize", "elephant"...): the frozen LM runs on the word's tokens, its key/values per
layer become P (the length is then the token count); with the MLP, P' stays random and the
MLP is first fitted to reproduce those activations (Adam, MSE, lr 1e-4, 500 steps in the
authors' ``lowdata_init_train3``); the final fit error is kept in ``stored_metadata()``.

Mechanics (``_prefix_attention``, ``_positions``): the key/values enter inside transformers'
attention function, so training, scoring and beam search (expanded to the beams) share one
path, and input positions start at L as with the authors' cached-past route. Several tasks'
prefixes can serve one batch (:func:`generate_mixed`, :func:`forward_mixed`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.errors import BenchError
from bench.methods._arch import arch_of, sliding_window
from bench.methods._positions import Shift, install_position_hook, shifting
from bench.methods._prefix_attention import (
    PrefixKV,
    Site,
    capturing,
    injecting,
    install,
    roles_of,
)
from bench.methods.base import WrappedModel, count, freeze
from bench.registry import METHODS

DEFAULT_LENGTH = 10  # the paper's default (ACL Table 6)


def _check_int(method: str, name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"an integer >= {minimum}" + (" or null" if allow_none else "")
        raise BenchError(f"{method}: {name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class PrefixConfig:
    """``length``: prefix length L (null: 10, or the token count of ``init`` text);
    ``mlp_width``: k of the reparameterization MLP (null: train P directly);
    ``init``: "random" or a text whose activations initialize the prefix;
    ``input_width``: width k' of P' (null: the model's hidden size, as the authors; PEFT
    uses the key/value width); ``init_fit_steps``/``init_fit_lr``: fitting the MLP to the
    text's activations."""

    length: int | None = None
    mlp_width: int | None = 512
    init: str = "random"
    input_width: int | None = None
    init_fit_steps: int = 500
    init_fit_lr: float = 1e-4

    def __post_init__(self) -> None:
        validate_common("prefix", self.length, self.mlp_width, self.input_width)
        validate_init("prefix", self.init, self.init_fit_steps, self.init_fit_lr)


def validate_common(method: str, length: Any, mlp_width: Any, input_width: Any) -> None:
    _check_int(method, "length", length, 1, allow_none=True)
    _check_int(method, "mlp_width", mlp_width, 1, allow_none=True)
    _check_int(method, "input_width", input_width, 1, allow_none=True)
    if input_width is not None and mlp_width is None:
        raise BenchError(f"{method}: input_width is the width of P' and needs an MLP (mlp_width)")


def validate_init(method: str, init: Any, steps: Any, lr: Any) -> None:
    if not isinstance(init, str) or not init.strip():
        raise BenchError(f'{method}: init must be "random" or a non-empty text, got {init!r}')
    _check_int(method, "init_fit_steps", steps, 0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise BenchError(f"{method}: init_fit_lr must be a positive number, got {lr!r}")


# --------------------------------------------------------------------------- parameters


class PrefixEncoder(nn.Module):
    """The trainable prefix of one role: P' + MLP, or P itself.

    ``forward()`` gives P as [n_layers, 2 (key, value), kv_heads, L, head_dim]; the MLP's
    output is laid out (L, n_layers, 2, kv_heads, head_dim), PEFT's and the authors' order.
    """

    def __init__(
        self,
        length: int,
        n_layers: int,
        kv_heads: int,
        head_dim: int,
        mlp_width: int | None,
        input_width: int,
    ):
        super().__init__()
        self.length, self.n_layers, self.kv_heads, self.head_dim = (
            length,
            n_layers,
            kv_heads,
            head_dim,
        )
        out = n_layers * 2 * kv_heads * head_dim
        self.embedding: nn.Parameter | None = None
        self.mlp: nn.Sequential | None = None
        self.kv: nn.Parameter | None = None
        if mlp_width is None:
            # N(0, 1), as the authors' no-reparameterization ablation (torch.randn)
            self.kv = nn.Parameter(torch.randn(n_layers, 2, kv_heads, length, head_dim))
        else:
            # N(0, 1) as nn.Embedding, the authors' and PEFT's P'
            self.embedding = nn.Parameter(torch.randn(length, input_width))
            self.mlp = nn.Sequential(
                nn.Linear(input_width, mlp_width), nn.Tanh(), nn.Linear(mlp_width, out)
            )

    def forward(self) -> torch.Tensor:
        if self.mlp is None:
            return self.kv
        flat = self.mlp(self.embedding)
        return flat.view(self.length, self.n_layers, 2, self.kv_heads, self.head_dim).permute(
            1, 2, 3, 0, 4
        )

    def drop_mlp(self, kv: torch.Tensor) -> None:
        """Replace the reparameterization by the final key/values (what is stored)."""
        self.embedding, self.mlp = None, None
        self.kv = nn.Parameter(kv.detach().clone())

    @property
    def n_stored(self) -> int:
        return self.n_layers * 2 * self.kv_heads * self.length * self.head_dim


def layer_shapes(sites: list[Site]) -> tuple[int, int, int]:
    """(n_layers, kv_heads, head_dim) of one role's sites (uniform across layers)."""
    shapes = {(s.kv_heads, s.head_dim) for s in sites}
    if len(shapes) != 1:
        raise BenchError(
            f"prefix: attention layers differ in key/value shape ({sorted(shapes)}); unsupported"
        )
    heads, dim = shapes.pop()
    return len(sites), heads, dim


def word_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def word_activations(
    model: nn.Module, sites: list[Site], ids: list[int], decoder_only: bool
) -> dict[str, torch.Tensor]:
    """Key/values per role, [n_layers, 2, kv_heads, len(ids), head_dim], of the frozen LM
    run on ``ids`` (BART: encoder input and decoder input both the word's tokens)."""
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    was_training = model.training
    model.eval()
    with capturing() as record:
        if decoder_only:
            model(input_ids=x)
        else:
            model(input_ids=x, decoder_input_ids=x)
    model.train(was_training)
    out: dict[str, torch.Tensor] = {}
    for role, group in roles_of(sites).items():
        out[role] = torch.stack(
            [torch.stack([record[id(s.module)][0][0], record[id(s.module)][1][0]]) for s in group]
        )
    return out


def fit_mlp(encoder: PrefixEncoder, target: torch.Tensor, steps: int, lr: float) -> float:
    """Fit the MLP so MLP(P') reproduces ``target`` (the authors fit the MLP only, P' stays
    random). Returns the final mean squared error."""
    params = list(encoder.mlp.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    target = target.detach()
    for _ in range(steps):
        loss = nn.functional.mse_loss(encoder(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(nn.functional.mse_loss(encoder(), target))


# --------------------------------------------------------------------------- the wrapper


class PrefixTuned(WrappedModel):
    """A frozen LM plus per-role key/values injected into its attention.

    Subclasses change where the key/values come from (``role_kv``) and who sees them
    (``starts``: the infix); the forward/generate/mixed-batch machinery is shared.
    """

    method_name: ClassVar[str] = "prefix"

    def __init__(self, base: nn.Module, sites: list[Site], length: int, *, decoder_only: bool):
        super().__init__(base, keep_dropout=False)
        self.sites = sites
        self.length = length
        self.decoder_only = decoder_only
        self.metadata: dict[str, str] = {"method": self.method_name, "length": str(length)}

    # -- where the key/values come from -----------------------------------------------
    def role_kv(self) -> dict[str, torch.Tensor]:
        """Per role: [n_layers, 2, kv_heads, L, head_dim]; MLP (if any) run once here."""
        raise NotImplementedError

    def starts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Key index per row from which queries see the key/values (None: all; prefix)."""
        return None

    # -- the model's own call signature -------------------------------------------------
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any
    ) -> Any:
        kv = {r: t[None] for r, t in self.role_kv().items()}
        with self.activated(kv, None, torch.tensor([self.length]), input_ids, attention_mask):
            return self.base(input_ids=input_ids, attention_mask=attention_mask, **kw)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any
    ) -> torch.Tensor:
        kv = {r: t[None] for r, t in self.role_kv().items()}
        with self.activated(kv, None, torch.tensor([self.length]), input_ids, attention_mask):
            return self.base.generate(input_ids=input_ids, attention_mask=attention_mask, **_uncropped(self.base, kw))

    def cache_prefix(self) -> torch.Tensor | None:
        """Decoder-only: the key/values [n_layers, 2, kv_heads, L, head_dim] as cached past
        (positions start at L), what the injected route computes (``bench.beam``)."""
        if not self.decoder_only:
            raise NotImplementedError(f"{self.method_name}: encoder-decoder prefixes are not a cached past")
        if type(self).starts is not PrefixTuned.starts:
            raise NotImplementedError(f"{self.method_name}: key/values not visible to every query")
        return self.role_kv()["self"]

    @contextlib.contextmanager
    def activated(
        self,
        kv: Mapping[str, torch.Tensor],
        visible: torch.Tensor | None,
        lengths: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> Iterator[None]:
        """Inject ``kv`` (per role [b0, n_layers, 2, kv_heads, L, head_dim]) and shift the
        positions of decoder-only inputs by ``lengths`` ([b0]) for the block."""
        with self.injected(kv, visible, lengths, self.starts(input_ids, attention_mask)):
            yield

    @contextlib.contextmanager
    def injected(
        self,
        kv: Mapping[str, torch.Tensor],
        visible: torch.Tensor | None,
        lengths: torch.Tensor,
        start: torch.Tensor | None,
    ) -> Iterator[None]:
        """:meth:`activated` with the key index from which queries see ``kv`` given
        (``start``: [b0] long, or None: every query)."""
        # unbind, not indexing: its backward stacks the layers' gradients once, where 2 x
        # n_layers index backwards would each zero-fill and copy a whole-prefix gradient
        per_layer = {role: [layer.unbind(1) for layer in t.unbind(1)] for role, t in kv.items()}
        entries: dict[int, PrefixKV] = {}
        for s in self.sites:
            if s.role in per_layer:
                key, value = per_layer[s.role][s.layer]
                entries[id(s.module)] = PrefixKV(key, value, visible, start)
        shift = Shift(lengths, start) if self.decoder_only else None
        with injecting(entries), shifting(shift):
            yield

    # -- what trains, what is stored ----------------------------------------------------
    def stored_state(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {
                f"prefix.{r}": t.detach().clone().contiguous() for r, t in self.role_kv().items()
            }

    def stored_metadata(self) -> dict[str, str]:
        """Strings worth keeping beside the stored tensors (init text, MLP fit error)."""
        return dict(self.metadata)

    @property
    def n_stored(self) -> int:
        return count(self.stored_state())


class PrefixModel(PrefixTuned):
    """Prefix-tuning proper: one ``PrefixEncoder`` per role."""

    def __init__(
        self,
        base: nn.Module,
        sites: list[Site],
        length: int,
        *,
        decoder_only: bool,
        encoders: nn.ModuleDict,
    ):
        super().__init__(base, sites, length, decoder_only=decoder_only)
        self.encoders = encoders

    def role_kv(self) -> dict[str, torch.Tensor]:
        return {role: enc() for role, enc in self.encoders.items()}

    def load_stored(self, state: Mapping[str, torch.Tensor]) -> None:
        """Take the stored key/values as the prefix; the MLP (if any) is dropped."""
        expected = {
            f"prefix.{r}": (e.n_layers, 2, e.kv_heads, e.length, e.head_dim)
            for r, e in self.encoders.items()
        }
        if set(state) != set(expected):
            raise BenchError(
                f"{self.method_name}: stored state has {sorted(state)}, this model expects {sorted(expected)}"
            )
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise BenchError(
                    f"{self.method_name}: stored {name} has shape {tuple(state[name].shape)}, expected {shape} "
                    "(same model and length?)"
                )
        device = next(self.base.parameters()).device
        for role, enc in self.encoders.items():
            enc.drop_mlp(state[f"prefix.{role}"].to(device))


def build_encoders(
    model: nn.Module,
    tokenizer: Any,
    sites: list[Site],
    roles: Sequence[str],
    *,
    method: str,
    length: int | None,
    mlp_width: int | None,
    input_width: int | None,
    init: str,
    fit_steps: int,
    fit_lr: float,
    decoder_only: bool,
) -> tuple[nn.ModuleDict, int, dict[str, str]]:
    """The per-role encoders, initialized; returns (encoders, L, metadata)."""
    grouped = roles_of(sites)
    metadata: dict[str, str] = {"init": init}
    target: dict[str, torch.Tensor] | None = None
    if init != "random":
        ids = word_ids(tokenizer, init)
        if not ids:
            raise BenchError(f"{method}: init text {init!r} has no tokens")
        if length is not None and length != len(ids):
            raise BenchError(
                f"{method}: length {length} but init {init!r} is {len(ids)} tokens in this model's "
                f"tokenizer (the length follows the text); drop length or set it to {len(ids)}"
            )
        length = len(ids)
        target = word_activations(model, sites, ids, decoder_only)
    length = DEFAULT_LENGTH if length is None else length
    width = input_width or arch_of(model).hidden_size
    device = next(model.parameters()).device
    encoders = nn.ModuleDict()
    for role in roles:
        n_layers, heads, dim = layer_shapes(grouped[role])
        enc = PrefixEncoder(length, n_layers, heads, dim, mlp_width, width).to(device)
        if target is not None:
            if mlp_width is None:
                with torch.no_grad():
                    enc.kv.copy_(target[role])
            else:
                err = fit_mlp(enc, target[role], fit_steps, fit_lr)
                scale = float(target[role].pow(2).mean())
                metadata[f"init_fit_mse.{role}"] = f"{err:.6g}"
                metadata[f"init_target_mean_square.{role}"] = f"{scale:.6g}"
        encoders[role] = enc
    return encoders, length, metadata


@METHODS.register("prefix")
class PrefixTuning:
    """Freeze the LM; train per-layer key/values in front of every attention."""

    name: ClassVar[str] = "prefix"
    VERSION: ClassVar[str] = "1"
    Config: ClassVar[type] = PrefixConfig
    needs: ClassVar[str] = "attention"  # the layout and the prefix route (bench validate asks)

    def apply(self, model: nn.Module, tokenizer: Any, config: PrefixConfig) -> PrefixModel:
        decoder_only = not model.config.is_encoder_decoder
        freeze(model)
        sites = install(model, self.name)
        if decoder_only:
            install_position_hook(model)
        roles = tuple(roles_of(sites))
        encoders, length, metadata = build_encoders(
            model,
            tokenizer,
            sites,
            roles,
            method=self.name,
            length=config.length,
            mlp_width=config.mlp_width,
            input_width=config.input_width,
            init=config.init,
            fit_steps=config.init_fit_steps,
            fit_lr=config.init_fit_lr,
            decoder_only=decoder_only,
        )
        tuned = PrefixModel(model, sites, length, decoder_only=decoder_only, encoders=encoders)
        tuned.metadata.update(metadata)
        return tuned


# --------------------------------------------------------------------------- mixed tasks


def _mixed(
    tasks: Sequence[PrefixTuned], task_of_row: Sequence[int] | torch.Tensor, input_ids: torch.Tensor
) -> tuple[PrefixTuned, dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor]:
    """Per-row key/values for a batch whose rows belong to different tasks."""
    if not tasks:
        raise BenchError("mixed batch: no tasks given")
    first = tasks[0]
    for i, t in enumerate(tasks):
        if not isinstance(t, PrefixTuned):
            raise BenchError(
                f"mixed batch: task {i} is {type(t).__name__}, not a prefix-style method"
            )
        if t.base is not first.base or type(t) is not type(first):
            raise BenchError(
                f"mixed batch: task {i} must be the same method on the same base model object as task 0"
            )
    if not first.sites:
        raise BenchError(
            f"mixed batch: {first.method_name} on this model changes the encoder's input, "
            "not attention key/values; only key/value methods can share a batch"
        )
    rows = torch.as_tensor(task_of_row, dtype=torch.long, device=input_ids.device)
    if rows.shape != (input_ids.shape[0],):
        raise BenchError(
            f"mixed batch: task_of_row has shape {tuple(rows.shape)}, expected ({input_ids.shape[0]},)"
        )
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(tasks)):
        raise BenchError(
            f"mixed batch: task_of_row must be in [0, {len(tasks)}), got {rows.tolist()}"
        )
    per_task = [t.role_kv() for t in tasks]
    lengths = torch.tensor([t.length for t in tasks], device=input_ids.device)
    longest = int(lengths.max())
    kv: dict[str, torch.Tensor] = {}
    for role in per_task[0]:
        # pad each task's prefix at its end; padded slots are masked out (visible=False)
        padded = [
            nn.functional.pad(p[role], (0, 0, 0, longest - p[role].shape[3])) for p in per_task
        ]
        kv[role] = torch.stack(padded).index_select(0, rows)
    visible = None
    if int(lengths.min()) != longest:
        slots = torch.arange(longest, device=input_ids.device)
        visible = (slots[None, :] < lengths[:, None]).index_select(0, rows)
    return first, kv, visible, lengths.index_select(0, rows)


def mixed_prefix(
    tasks: Sequence[PrefixTuned], task_of_row: Sequence[int] | torch.Tensor, input_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Decoder-only mixed batch as cached past (``bench.beam``): per-row key/values
    [B, n_layers, 2, kv_heads, L_max, head_dim], visible slots [B, L_max] (None: all) and
    prefix lengths [B] (the rows' positions start there). Raises NotImplementedError where
    ``generate_mixed`` must be used (encoder-decoder, infix)."""
    first, kv, visible, lengths = _mixed(tasks, task_of_row, input_ids)
    # raises where the tasks are not decoder-only; None where nothing is a cached past (the
    # infix, served injected, one task per batch)
    if first.cache_prefix() is None:
        raise NotImplementedError(f"{first.method_name}: mixed batches go to generate_mixed")
    return kv["self"], visible, lengths


def forward_mixed(
    tasks: Sequence[PrefixTuned],
    task_of_row: Sequence[int] | torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **kw: Any,
) -> Any:
    """One forward over a batch whose row i carries the prefix of ``tasks[task_of_row[i]]``.

    Every task must be the same method applied to the same base model object (one frozen
    LM serving several tasks, the paper's deployment claim)."""
    first, kv, visible, lengths = _mixed(tasks, task_of_row, input_ids)
    with first.activated(kv, visible, lengths, input_ids, attention_mask):
        return first.base(input_ids=input_ids, attention_mask=attention_mask, **kw)


@torch.no_grad()
def generate_mixed(
    tasks: Sequence[PrefixTuned],
    task_of_row: Sequence[int] | torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """One ``generate`` (greedy or beam search) over a mixed-task batch; same output layout
    as ``transformers``' ``generate``. See :func:`forward_mixed`."""
    first, kv, visible, lengths = _mixed(tasks, task_of_row, input_ids)
    with first.activated(kv, visible, lengths, input_ids, attention_mask):
        return first.base.generate(
            input_ids=input_ids, attention_mask=attention_mask, **_uncropped(first.base, generate_kwargs)
        )


def _uncropped(base: nn.Module, generate_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``generate``'s arguments with a cache that keeps every key of a sliding-window model.

    ``generate``'s own cache drops the keys a sliding-window layer no longer attends to, so
    key index i stops being token i, and an infix injected at its token index lands elsewhere.
    The model's mask still applies the window over the full cache (a prefix, outside that
    mask, stays visible as in training)."""
    kw = dict(generate_kwargs)
    if sliding_window(base.config) is not None and not {"cache", "past_key_values"} & set(kw):
        from transformers import DynamicCache

        kw["cache"] = DynamicCache()
    return kw
