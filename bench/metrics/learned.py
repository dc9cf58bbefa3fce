"""DART's learned metrics: BERTScore, MoverScore, BLEURT (``evaluation/run_eval_on_dart.sh``).

- BERTScore (Zhang et al., ICLR 2020): ``bert-score -r ref0 ref1 ref2 -c hyp --lang en``,
  i.e. roberta-large, layer 17, no idf, no baseline rescaling; F1 averaged over examples.
  Each hypothesis token is matched to its most similar reference token (cosine of the
  layer's embeddings) and vice versa; special tokens are not scored but can be matched, as
  in bert-score; with several references P, R and F1 are each the maximum over them
  (bert-score's ``max(dim=0)``).
- MoverScore (Zhao et al., EMNLP 2019): ``moverscore_v2.word_mover_score`` against the
  first reference: distilbert-base-uncased last layer, unigrams, idf weights from the scored
  corpus, sub-words and punctuation dropped, score = 1 / (1 + earth mover's distance).
  Needs the optional package ``pyemd`` (``pip install 'prefix-bench[learned]'``).
- BLEURT (Sellam et al., ACL 2020): DART ran BLEURT's ``test_checkpoint`` against the first
  reference. We load a PyTorch conversion of a BLEURT checkpoint (a BERT regressor scoring
  the pair "[CLS] reference [SEP] candidate [SEP]").

Weights cannot be downloaded here (no hub). A metric looks for its model in
``$BENCH_LEARNED_MODELS/<model name with / as ->`` or the Hugging Face cache, checks that
the weights are that model's architecture, and otherwise fails with one line naming the
model it needs: another model is never substituted. None of them is in a dataset's default
metric set; a suite names them explicitly.

Why not the authors' packages: ``bert-score``, ``moverscore_v2`` and ``bleurt`` are not
installed here, and none of their weights can be downloaded (no hub), so their results could
not be measured against ours (BLEURT's reference implementation is also TensorFlow, which this
project does not install). The files follow their code paths (named above) instead; equality
with them is unmeasured and the signatures say which model and settings were used.
"""

from __future__ import annotations

import os
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.errors import BenchError, ModelUnavailableError
from bench.registry import METRICS

MODELS_ENV = "BENCH_LEARNED_MODELS"


def locate_weights(metric_id: str, model_name: str, weights: Path | None, why: str) -> Path:
    """The local folder holding ``model_name``'s weights, or a one-line ModelUnavailableError."""
    tried = []
    if weights is not None:
        if weights.is_dir():
            return weights
        tried.append(str(weights))
    root = os.environ.get(MODELS_ENV)
    if root:
        candidate = Path(root) / model_name.replace("/", "--")
        if candidate.is_dir():
            return candidate
        tried.append(str(candidate))
    else:
        tried.append(f"${MODELS_ENV}/{model_name.replace('/', '--')} (unset)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not in the cache"
        tried.append("the Hugging Face cache")
    raise ModelUnavailableError(
        f"{metric_id} needs the {model_name} weights ({why}); not found in "
        f"{', '.join(tried)}: copy them there from a machine with hub access"
    )


class _LearnedMetric:
    """Shared plumbing: locate and check the weights once, mean of a per-example column."""

    name: ClassVar[str] = "learned"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True
    score_column: ClassVar[int] = 0
    why: ClassVar[str] = ""

    def __init__(
        self, model_name: str, weights: Path | None = None, expect: Mapping[str, Any] | None = None
    ):
        self.model_name = model_name
        self.weights = weights
        self.expect = dict(expect or {})
        self._loaded: tuple[Any, Any] | None = None

    def _load(self, model_class: str = "AutoModel", **tok_kwargs: Any) -> tuple[Any, Any]:
        if self._loaded is None:
            import transformers

            path = locate_weights(self.name, self.model_name, self.weights, self.why)
            config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
            wrong = {
                k: getattr(config, k, None)
                for k, v in self.expect.items()
                if getattr(config, k, None) != v
            }
            if wrong:
                # Weights of another model under the expected name: refuse, never substitute.
                raise BenchError(
                    f"{self.name}: the weights in {path} are not {self.model_name} "
                    f"(config {wrong}, expected {self.expect})"
                )
            model_cls = getattr(transformers, model_class)
            model = model_cls.from_pretrained(path, local_files_only=True).eval()
            tok = transformers.AutoTokenizer.from_pretrained(
                path, local_files_only=True, **tok_kwargs
            )
            self._loaded = (model, tok)
        return self._loaded

    def _check(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if len(hypotheses) != len(references):
            raise BenchError(
                f"{self.name}: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        for i, refs in enumerate(references):
            if not any(r.strip() for r in refs):
                raise BenchError(f"{self.name}: example {i} has no non-empty reference")

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return 0.0
        return float(np.asarray(stats)[:, self.score_column].mean())

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Scores from row sums [B, k] over ``n`` rows each (bootstrap fast path)."""
        return np.asarray(sums, dtype=np.float64)[..., self.score_column] / n


class BertScore(_LearnedMetric):
    """BERTScore P, R, F1 (statistics [P, R, F1]; the score is mean F1, 0-1)."""

    name = "dart_bertscore"
    score_column = 2
    why = "BERTScore's model for English: layer 17, no idf, no rescaling"

    def __init__(
        self,
        model_name: str = "roberta-large",
        weights: Path | None = None,
        layer: int = 17,
        max_refs: int = 3,
        expect: Mapping[str, Any] | None = None,
    ):
        default = {"model_type": "roberta", "num_hidden_layers": 24, "hidden_size": 1024}
        super().__init__(
            model_name,
            weights,
            default if expect is None and model_name == "roberta-large" else expect,
        )
        self.layer = layer
        self.max_refs = max_refs

    def signature(self) -> str:
        return (
            f"bertscore|model:{self.model_name}|L{self.layer}|idf:no|rescale:no"
            f"|nrefs:{self.max_refs}(max)|agg:mean-f1|scale:1|version:{self.VERSION}"
        )

    def _embed(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        import torch

        model, tok = self._loaded  # type: ignore[misc]
        out = []
        special = set(tok.all_special_ids)
        with torch.no_grad():
            for text in texts:
                enc = tok(text.strip(), truncation=True, return_tensors="pt")
                hidden = model(**enc, output_hidden_states=True).hidden_states[self.layer][0]
                emb = torch.nn.functional.normalize(hidden, dim=-1).numpy()
                scored = np.array([i not in special for i in enc["input_ids"][0].tolist()])
                out.append((emb, scored))
        return out

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        self._check(hypotheses, references)
        # bert-score encodes RoBERTa/GPT-2 input with a leading space (add_prefix_space).
        if self.expect.get("model_type") in (None, "roberta", "gpt2"):
            self._load(add_prefix_space=True)
        else:
            self._load()
        rows = np.zeros((len(hypotheses), 3))
        for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
            kept = [r for r in list(refs)[: self.max_refs] if r.strip()]
            (h_emb, h_scored), *ref_embs = self._embed([hyp, *kept])
            best = np.full(3, -np.inf)
            for r_emb, r_scored in ref_embs:
                sim = h_emb @ r_emb.T
                p = sim.max(1)[h_scored].mean() if h_scored.any() else 0.0
                r = sim.max(0)[r_scored].mean() if r_scored.any() else 0.0
                f = 2 * p * r / (p + r) if p + r > 0 else 0.0
                best = np.maximum(best, [p, r, f])
            rows[i] = best
        return rows


class MoverScore(_LearnedMetric):
    """MoverScore against the first reference (statistics [score]; mean, 0-1)."""

    name = "dart_moverscore"
    why = "moverscore_v2's default model, last layer, unigrams, idf weights"

    def __init__(
        self,
        model_name: str = "distilbert-base-uncased",
        weights: Path | None = None,
        expect: Mapping[str, Any] | None = None,
    ):
        default = {"model_type": "distilbert", "n_layers": 6, "dim": 768}
        super().__init__(
            model_name,
            weights,
            default if expect is None and model_name == "distilbert-base-uncased" else expect,
        )

    def signature(self) -> str:
        return (
            f"moverscore_v2|model:{self.model_name}|layer:last|ngram:1|idf:corpus|subwords:dropped"
            f"|nrefs:1(first)|agg:mean|scale:1|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        self._check(hypotheses, references)
        model, tok = self._load()
        try:
            from pyemd import emd_with_flow
        except ImportError:
            raise BenchError(
                f"{self.name} needs the package pyemd: pip install 'prefix-bench[learned]'"
            ) from None
        import torch

        refs = [next(iter(r)) for r in references]
        idf_ref, idf_hyp = _idf(tok, refs), _idf(tok, list(hypotheses))
        drop = set(string.punctuation)
        special = set(tok.all_special_ids)  # [CLS], [SEP]: weight 0 as in moverscore
        rows = np.zeros((len(hypotheses), 1))
        with torch.no_grad():
            for i, (hyp, ref) in enumerate(zip(hypotheses, refs)):
                parts = []
                for text, idf in ((ref, idf_ref), (hyp, idf_hyp)):
                    enc = tok(text, truncation=True, return_tensors="pt")
                    emb = model(**enc, output_hidden_states=True).hidden_states[-1][0].numpy()
                    ids = enc["input_ids"][0].tolist()
                    words = tok.convert_ids_to_tokens(ids)
                    weight = np.array([idf.get(t, 0.0) for t in ids], dtype=np.float64)
                    for k, w in enumerate(words):
                        if "##" in w or w in drop or ids[k] in special:
                            emb[k], weight[k] = 0.0, 0.0
                    parts.append((emb, weight))
                (r_emb, r_w), (h_emb, h_w) = parts
                raw = np.concatenate([r_emb, h_emb]).astype(np.float64)
                raw /= np.linalg.norm(raw, axis=-1, keepdims=True) + 1e-30
                dist = np.sqrt(np.maximum(((raw[:, None, :] - raw[None, :, :]) ** 2).sum(-1), 0.0))
                c1 = np.concatenate([r_w, np.zeros(len(h_w))])
                c2 = np.concatenate([np.zeros(len(r_w)), h_w])
                c1 = c1 / c1.sum() if c1.sum() else c1
                c2 = c2 / c2.sum() if c2.sum() else c2
                _, flow = emd_with_flow(c1, c2, dist)
                rows[i, 0] = 1.0 / (1.0 + float(np.sum(np.asarray(flow) * dist)))
        return rows


def _idf(tok: Any, texts: list[str]) -> dict[int, float]:
    """moverscore's idf: log((M + 1) / (1 + number of texts holding the token))."""
    df: Counter[int] = Counter()
    for text in texts:
        df.update(set(tok(text, truncation=True)["input_ids"]))
    m = len(texts)
    return {t: float(np.log((m + 1) / (c + 1))) for t, c in df.items()}


class Bleurt(_LearnedMetric):
    """BLEURT regression score against the first reference (statistics [score]; mean)."""

    name = "dart_bleurt"
    higher_is_better = True
    why = "the BLEURT checkpoint DART ran (test_checkpoint), converted to PyTorch"

    def __init__(self, model_name: str = "bleurt/test_checkpoint", weights: Path | None = None):
        super().__init__(model_name, weights, {"num_labels": 1})

    def signature(self) -> str:
        return f"bleurt|checkpoint:{self.model_name}|nrefs:1(first)|agg:mean|version:{self.VERSION}"

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        self._check(hypotheses, references)
        import torch

        model, tok = self._load("AutoModelForSequenceClassification")
        rows = np.zeros((len(hypotheses), 1))
        with torch.no_grad():
            for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
                enc = tok(next(iter(refs)), hyp, truncation=True, return_tensors="pt")
                rows[i, 0] = float(model(**enc).logits[0, 0])
        return rows


@METRICS.register("dart_bertscore")
class DartBertScore(BertScore):
    """DART's BERTScore: roberta-large layer 17, three references."""

    def __init__(self) -> None:
        super().__init__()


@METRICS.register("dart_moverscore")
class DartMoverScore(MoverScore):
    """DART's MoverScore: distilbert-base-uncased, first reference."""

    def __init__(self) -> None:
        super().__init__()


@METRICS.register("dart_bleurt")
class DartBleurt(Bleurt):
    """DART's BLEURT: the test checkpoint, first reference."""

    def __init__(self) -> None:
        super().__init__()
