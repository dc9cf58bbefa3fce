"""The fast decoding engine behind ``bench.decode``: batched greedy / beam search that gives
token-for-token the output of transformers' ``generate`` for the settings ``decode`` uses.

Why not ``generate``: with a prefix, ``generate`` (ours and PEFT's alike) re-concatenates the
prefix key/values in front of every layer's keys at every step, grows the cache by
concatenation (a copy of the whole cache per step), runs the prompt once per beam (5 identical
copies of the prefill at beam 5), builds the newline ban as a fresh bias tensor per step, and
keeps finished sources in the batch until the last one ends. Here:

- the prefix key/values go into the cache once per batch (expanded to the beams), and the
  input positions start at the prefix length, exactly the cached-past route of the authors
  and PEFT; the attention masks are built over [prefix; tokens] with the same values the
  prefix attention function builds (:func:`bench.methods._prefix_attention.explicit_masks`);
- the cache is one preallocated buffer per layer (written in place, reordered by one
  ``index_select`` per step);
- the prompt runs once per source, its cache and last logits are then copied to the beams;
- banned tokens are one fixed bias vector (0 / -inf, what HF's processor adds);
- sources whose beams are all finished leave the batch.

Exactness: beam bookkeeping mirrors ``GenerationMixin._beam_search`` (transformers 5.x) op for
op (top-2K candidates, the -1e9 sentinels, the length penalty, the early-stop heuristic), and
greedy mirrors ``_sample``. The float results of a row of a matrix product do not depend on
the other rows once a batch has enough rows, but they do for very small batches (MKL on
AVX-512, measured with 2 threads: 1-3, 5-7 and 9-11 rows give other last bits than 12+; with
1 thread 1-3 rows; the rows are split between threads); so the two row-count changes
(prefill once per source, dropping finished sources) only happen on the CPU and only while
both the old and the new row counts are at least :func:`safe_rows` (16, or 8 per thread on
machines with more threads). On other devices (cuBLAS picks kernels by shape) the batch
keeps ``generate``'s rows.
``tests/test_fast_decode.py`` pins the equality with ``generate``.

The infix (key/values visible only from the separator on, so not a cached past) is served
injected into attention as ``generate`` runs it, under the wrapper's ``serving`` context
(``bench.decode`` enters it): everything above holds except that its key/values are
concatenated per step rather than cached. Not covered (``bench.decode`` then calls
``generate``): encoder-decoder models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer

from bench.methods._arch import sliding_window
from bench.methods._prefix_attention import explicit_masks


def safe_rows() -> int:
    """Row counts from which a batch may shrink (or the prompt run once per source) on the CPU."""
    return max(16, 8 * torch.get_num_threads())

NEG = -1.0e9  # generate's sentinel score


class Unsupported(NotImplementedError):
    """The engine cannot reproduce ``generate`` for this model/method: use ``generate``."""


# ----------------------------------------------------------------------------- the cache


class _BufferLayer(DynamicLayer):
    """One layer's key/values in a preallocated [rows, heads, capacity, dim] buffer."""

    def __init__(self, capacity: int, prefix: tuple[torch.Tensor, torch.Tensor] | None):
        super().__init__()
        self.capacity = capacity
        self.n = 0
        if prefix is not None:
            self._allocate(prefix[0])
            length = prefix[0].shape[2]
            self.keys[:, :, :length] = prefix[0]
            self.values[:, :, :length] = prefix[1]
            self.n = length

    def _allocate(self, like: torch.Tensor) -> None:
        rows, heads, _, dim = like.shape
        self.keys = like.new_empty(rows, heads, self.capacity, dim)
        self.values = like.new_empty(rows, heads, self.capacity, dim)
        self.device = like.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self._allocate(key_states)
        q = key_states.shape[2]
        self.keys[:, :, self.n : self.n + q] = key_states
        self.values[:, :, self.n : self.n + q] = value_states
        self.n += q
        return self.keys[:, :, : self.n], self.values[:, :, : self.n]

    def get_seq_length(self) -> int:
        return self.n

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.n + query_length, 0

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep/reorder/repeat rows (beam reorder, expansion to beams, dropping sources)."""
        if self.is_initialized:
            self.keys = self.keys.index_select(0, rows)
            self.values = self.values.index_select(0, rows)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.select_rows(beam_idx)


def _cache(n_layers: int, capacity: int, prefix: torch.Tensor | None, rows: int) -> Cache:
    """``prefix``: [b0, n_layers, 2, kv_heads, L, head_dim] (b0 = 1 or ``rows``) or None."""
    layers = []
    for i in range(n_layers):
        kv = None
        if prefix is not None:
            k, v = prefix[:, i, 0], prefix[:, i, 1]
            if k.shape[0] != rows:
                k, v = k.expand(rows, *k.shape[1:]), v.expand(rows, *v.shape[1:])
            kv = (k, v)
        layers.append(_BufferLayer(capacity, kv))
    return Cache(layers=layers)


def _select(cache: Cache, rows: torch.Tensor) -> None:
    for layer in cache.layers:
        layer.select_rows(rows)


# ----------------------------------------------------------------------------- the model


def model_and_prefix(tuned: nn.Module) -> tuple[nn.Module, torch.Tensor | None]:
    """The module to call and the prefix key/values to cache ([1, n_layers, 2, H, L, D] or None).

    Raises :class:`Unsupported` where the engine cannot stand in for ``tuned.generate``."""
    base = getattr(tuned, "base", tuned)
    if base.config.is_encoder_decoder:
        raise Unsupported("encoder-decoder model")
    cache_prefix = getattr(tuned, "cache_prefix", None)
    if cache_prefix is None:
        raise Unsupported(f"{type(tuned).__name__} does not say how it generates (no cache_prefix)")
    try:
        kv = cache_prefix()
    except NotImplementedError as e:
        raise Unsupported(str(e)) from None
    return base, (None if kv is None else kv[None])


def _prefix_within_window(model: nn.Module, prefix_length: int, input_length: int, max_new_tokens: int) -> None:
    """Refuse a prefix that would slide out of a sliding-window layer's window.

    The engine caches the prefix as past key/values (PEFT's route), so the model's own sliding
    mask counts the prefix slots as the oldest positions and hides them once a query is a
    window away. Training (and ``generate`` through the prefix attention function) keeps the
    prefix visible to every position, as in the paper: past the window the two would differ."""
    window = sliding_window(model.config)
    if window is not None and prefix_length + input_length + max_new_tokens > window:
        raise Unsupported(
            f"sliding-window attention (window {window}) is shorter than prefix + prompt + new tokens "
            f"({prefix_length} + {input_length} + {max_new_tokens}): a cached prefix would leave the window, "
            "which training's prefix never does")


def _generation_settings_plain(model: nn.Module) -> None:
    """Refuse models whose own generation config would add logits processors to ``generate``."""
    gc = getattr(model, "generation_config", None)
    if gc is None:
        return
    plain = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
             "bad_words_ids": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
             "suppress_tokens": None, "begin_suppress_tokens": None, "min_length": 0, "min_new_tokens": None,
             "sequence_bias": None, "renormalize_logits": False, "exponential_decay_length_penalty": None,
             "diversity_penalty": 0.0, "num_beam_groups": 1, "forced_decoder_ids": None,
             "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "guidance_scale": None, "watermarking_config": None}
    for name, value in plain.items():
        got = getattr(gc, name, value)
        if got not in (value, None) and not (value is None and got in ([], ())):
            raise Unsupported(f"the model's generation_config sets {name}={got!r}")


class _Runner:
    """Calls the model as ``generate`` would, with the prefix in the cache."""

    def __init__(self, model: nn.Module, prefix: torch.Tensor | None, prefix_visible: torch.Tensor | None,
                 prefix_len: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 max_new_tokens: int):
        self.model = model
        self.prefix = prefix
        rows, prompt = input_ids.shape
        dev = input_ids.device
        n_layers = int(model.config.num_hidden_layers)
        self.n_layers = n_layers
        L = 0 if prefix is None else prefix.shape[4]
        self.capacity = L + prompt + max_new_tokens
        # generate's position ids: cumsum of the mask - 1 (0 on padding), then last + 1 per step
        self.positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        if prefix is not None:
            offset = prefix_len.to(dev) if prefix_len is not None else torch.full((1,), L, device=dev)
            self.positions = self.positions + (offset if offset.shape[0] == rows else offset.expand(rows))[:, None]
        # generate drops an all-ones mask (no padding); with a prefix the mask covers [prefix; tokens]
        if prefix is None:
            self.mask = None if bool(attention_mask.all()) else attention_mask
        else:
            vis = (torch.ones(1, L, dtype=attention_mask.dtype, device=dev) if prefix_visible is None
                   else prefix_visible.to(attention_mask.dtype))
            self.mask = torch.cat([vis.expand(rows, L), attention_mask], dim=1)
        self.cache = _cache(n_layers, self.capacity, prefix, rows)

    def select(self, rows: torch.Tensor) -> None:
        _select(self.cache, rows)
        self.positions = self.positions.index_select(0, rows)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, rows)

    def step(self, tokens: torch.Tensor, first: bool) -> torch.Tensor:
        """Forward ``tokens`` ([rows, q]); returns the last position's float32 logits [rows, V]."""
        if first:
            pos = self.positions
        else:
            pos = self.positions[:, -1:] + 1
            self.positions = torch.cat([self.positions, pos], dim=-1)
            if self.mask is not None:
                self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=-1)
        with explicit_masks(self.prefix is not None):
            out = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=pos, cache=self.cache,
                             use_cache=True, logits_to_keep=1, return_dict=True)
        return out.logits[:, -1, :].to(copy=True, dtype=torch.float32)


# ----------------------------------------------------------------------------- search


def _bias(vocab: int, banned: Sequence[int], device: torch.device) -> torch.Tensor | None:
    if not banned:
        return None
    bias = torch.zeros(vocab, device=device)
    bias[list(banned)] = float("-inf")
    return bias


def _process(scores: torch.Tensor, bias: torch.Tensor | None, eos: int, step: int, min_new: int) -> torch.Tensor:
    if bias is not None:
        scores = scores + (bias if bias.shape[0] == scores.shape[-1] else _pad_bias(bias, scores.shape[-1]))
    if step < min_new:
        scores = scores.clone()
        scores[:, eos] = float("-inf")
    return scores


def _pad_bias(bias: torch.Tensor, vocab: int) -> torch.Tensor:
    out = torch.zeros(vocab, device=bias.device)
    n = min(vocab, bias.shape[0])
    out[:n] = bias[:n]
    return out


@torch.no_grad()
def generate(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, num_beams: int,
             max_new_tokens: int, length_penalty: float, eos_token_id: int, pad_token_id: int | None,
             banned_ids: Sequence[int] = (), min_new_tokens: int = 0, prefix: torch.Tensor | None = None,
             prefix_visible: torch.Tensor | None = None, prefix_len: torch.Tensor | None = None) -> torch.Tensor:
    """The new tokens of ``model.generate(input_ids, attention_mask, num_beams=..., early_stopping=num_beams > 1,
    bad_words_ids=[[i] for i in banned_ids], ...)`` with ``prefix`` as cached past: [B, out_len], rows padded
    with generate's fill value. ``prefix``: [1 or B, n_layers, 2, kv_heads, L, head_dim];
    ``prefix_visible`` [1 or B, L] bool (mixed tasks' padded slots); ``prefix_len`` [B] (positions)."""
    _generation_settings_plain(model)
    if prefix is not None:
        _prefix_within_window(model, prefix.shape[4], input_ids.shape[1], max_new_tokens)
    device = input_ids.device
    reshape_ok = device.type == "cpu"
    floor = safe_rows()
    runner = _Runner(model, prefix, prefix_visible, prefix_len, input_ids, attention_mask, max_new_tokens)
    if num_beams == 1:
        return _greedy(runner, input_ids, max_new_tokens, eos_token_id, pad_token_id, banned_ids, min_new_tokens,
                       reshape_ok, floor)
    return _beam(runner, input_ids, num_beams, max_new_tokens, length_penalty, eos_token_id, pad_token_id,
                 banned_ids, min_new_tokens, reshape_ok, floor)


def _greedy(runner: _Runner, input_ids: torch.Tensor, max_new: int, eos: int, pad: int | None,
            banned: Sequence[int], min_new: int, reshape_ok: bool, floor: int) -> torch.Tensor:
    batch = input_ids.shape[0]
    device = input_ids.device
    fill = pad if pad is not None else eos
    out = torch.full((batch, max_new), fill, dtype=torch.long, device=device)
    alive = torch.arange(batch, device=device)  # original row of each running row
    running = torch.ones(batch, dtype=torch.bool, device=device)  # per running row: not yet at eos
    bias = None
    tokens = input_ids
    steps = 0
    for t in range(max_new):
        logits = runner.step(tokens, first=t == 0)
        if bias is None:
            bias = _bias(logits.shape[-1], banned, device)
        scores = _process(logits, bias, eos, t, min_new)
        nxt = torch.argmax(scores, dim=-1)
        nxt = torch.where(running, nxt, torch.full_like(nxt, fill))
        out[alive, t] = nxt
        steps = t + 1
        running = running & (nxt != eos)
        if not bool(running.any()):
            break
        keep = running.nonzero().squeeze(1)
        if reshape_ok and len(keep) < len(running) and len(keep) >= floor:
            runner.select(keep)
            alive, running, nxt = alive[keep], running[keep], nxt[keep]
        tokens = nxt[:, None]
    return out[:, :steps]


def _beam(runner: _Runner, input_ids: torch.Tensor, K: int, max_new: int, length_penalty: float, eos: int,
          pad: int | None, banned: Sequence[int], min_new: int, reshape_ok: bool, floor: int) -> torch.Tensor:
    batch = input_ids.shape[0]
    device = input_ids.device
    fill = pad or eos  # generate: `pad_token_id or eos_token_id[0]`
    keep_k = 2 * K  # generate's beams_to_keep with one eos token
    top_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep_k - K, dtype=torch.bool)]).to(device)

    # prefill: once per source when the row counts allow it, else on the beams as generate does
    once = reshape_ok and batch >= floor
    expand = torch.arange(batch, device=device).repeat_interleave(K)
    if not once:
        runner.select(expand)
        logits = runner.step(input_ids.repeat_interleave(K, dim=0), first=True)
    else:
        logits = runner.step(input_ids, first=True)
        runner.select(expand)
        logits = logits.index_select(0, expand)

    S = batch
    src = torch.arange(batch, device=device)  # original source of each active source
    run_seq = torch.full((S, K, max_new), fill, dtype=torch.long, device=device)
    run_scores = torch.zeros((S, K), dtype=torch.float, device=device)
    run_scores[:, 1:] = NEG
    fin_seq = run_seq.clone()
    fin_scores = torch.full((S, K), NEG, dtype=torch.float, device=device)
    fin_len = torch.zeros((S, K), dtype=torch.long, device=device)
    is_fin = torch.zeros((S, K), dtype=torch.bool, device=device)
    heuristic = torch.ones((S, 1), dtype=torch.bool, device=device)
    best_seq = torch.full((batch, max_new), fill, dtype=torch.long, device=device)
    best_len = torch.zeros(batch, dtype=torch.long, device=device)
    bias = None

    for t in range(max_new):
        if t > 0:
            logits = runner.step(run_seq[:, :, t - 1].reshape(-1, 1), first=False)
        vocab = logits.shape[-1]
        if bias is None:
            bias = _bias(vocab, banned, device)
        log_probs = nn.functional.log_softmax(logits, dim=-1)
        log_probs = _process(log_probs, bias, eos, t, min_new)
        log_probs = log_probs.view(S, K, vocab) + run_scores[:, :, None]
        log_probs = log_probs.reshape(S, -1)

        topk_lp, topk_idx = torch.topk(log_probs, k=keep_k)
        beam_of = topk_idx // vocab
        topk_ids = topk_idx % vocab
        cand_seq = torch.take_along_dim(run_seq, beam_of[:, :, None], dim=1)
        cand_seq[:, :, t] = topk_ids
        hits = (topk_ids == eos) | (t + 1 >= max_new)

        # next running beams: the best K candidates that did not finish
        run_lp = topk_lp + hits.to(torch.float32) * -1.0e9
        nxt = torch.topk(run_lp, k=K)[1]
        run_seq = torch.take_along_dim(cand_seq, nxt[:, :, None], dim=1)
        run_scores = torch.take_along_dim(run_lp, nxt, dim=1)
        parent = torch.take_along_dim(beam_of, nxt, dim=1)

        # finished hypotheses: merge the new ones (of the top K candidates) with the kept ones
        did = hits & top_mask[None, :]
        fin_lp = topk_lp / ((t + 1) ** length_penalty)
        full = torch.all(is_fin, axis=-1, keepdims=True) & True
        fin_lp += full.to(torch.float32) * -1.0e9
        fin_lp += (~heuristic).to(torch.float32) * -1.0e9
        fin_lp += (~did) * -1.0e9
        merged_scores = torch.cat((fin_scores, fin_lp), dim=1)
        pick = torch.topk(merged_scores, k=K)[1]
        fin_seq = torch.take_along_dim(torch.cat((fin_seq, cand_seq), dim=1), pick[:, :, None], dim=1)
        fin_scores = torch.take_along_dim(merged_scores, pick, dim=1)
        cand_len = torch.full_like(topk_ids, t + 1)
        fin_len = torch.take_along_dim(torch.cat((fin_len, cand_len), dim=1), pick, dim=1)
        is_fin = torch.take_along_dim(torch.cat((is_fin, did), dim=1), pick, dim=1)

        # the early-stop heuristic, as generate updates it after each step
        best_possible = run_scores[:, :1] / ((t + 1) ** length_penalty)
        worst_fin = torch.where(is_fin, torch.min(fin_scores, dim=1, keepdim=True)[0], -1.0e9)
        heuristic = heuristic & torch.any(best_possible > worst_fin, dim=-1, keepdim=True)

        # sources with all beams finished are frozen in generate: record and drop them
        done = torch.all(is_fin, dim=-1)
        if t + 1 >= max_new or bool(hits.all()) or bool(done.all()):
            best_seq[src] = fin_seq[:, 0]
            best_len[src] = fin_len[:, 0]
            break
        rows = (parent + (torch.arange(S, device=device) * K)[:, None]).reshape(-1)
        if bool(done.any()) and reshape_ok and (S - int(done.sum())) * K >= floor:
            best_seq[src[done]] = fin_seq[done, 0]
            best_len[src[done]] = fin_len[done, 0]
            keep = (~done).nonzero().squeeze(1)
            rows = rows.view(S, K)[keep].reshape(-1)
            src, run_seq, run_scores = src[keep], run_seq[keep], run_scores[keep]
            fin_seq, fin_scores, fin_len = fin_seq[keep], fin_scores[keep], fin_len[keep]
            is_fin, heuristic = is_fin[keep], heuristic[keep]
            S = len(keep)
        runner.select(rows)
    out_len = int(best_len.max())
    return best_seq[:, :out_len]
