"""DART metrics: reference treatment, BLEU / TER / METEOR goldens, learned-metric gating.

Golden numbers: data/dart/fixtures/official_scores*.json (Yale-LILY/dart's
run_eval_on_dart.sh). Note the data's caveat: this is the current 5,097-tripleset test set,
not the paper's 6,959 one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.interfaces import EvalItem, group_references
from bench.metrics._webnlg_norm import dart_tokenize
from bench.metrics.meteor import java_available
from bench.metrics.multibleu import bleu_details
from bench.registry import DATASETS, METRICS


def _shared_data_dir() -> Path | None:
    # As tests/conftest.py's data_dir fixture, for a module-scoped fixture.
    env = os.environ.get("BENCH_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="module")
def dart_items() -> list[EvalItem]:
    data_dir = _shared_data_dir()
    if data_dir is None:
        pytest.skip(
            "official data folder absent (set BENCH_DATA_DIR or put shared/data beside the repo)"
        )
    items = group_references(DATASETS.get("dart")().load("test", data_dir=data_dir, options={}))
    assert len(items) == 5097
    return items


def _fixture(data_dir: Path, system: str) -> tuple[list[str], dict]:
    fx = data_dir / "dart" / "fixtures"
    scores = json.loads((fx / "official_scores.json").read_text())["fixtures"]
    real = json.loads((fx / "official_scores_real_systems.json").read_text())
    scores.update({Path(k).name: v for k, v in real.items() if k != "note"})
    if system == "ref0":
        path = data_dir / "dart" / "dart_reference" / "all-delex-reference0.lex"
        official = scores["data/dart/dart_reference/all-delex-reference0.lex (as hypothesis)"]
    else:
        path, official = fx / system, scores[system]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5097
    return lines, official


SYSTEMS = ["template.txt", "bart-large_dart.txt", "ref0"]


def test_references_normalize_to_the_official_files(data_dir: Path, dart_items) -> None:
    """The first three annotations, split and lowercased, are the official .lex files."""
    for j in range(3):
        path = data_dir / "dart" / "dart_reference" / f"all-delex-reference{j}.lex"
        official = path.read_bytes().decode("utf-8").split("\r\n")
        assert official[-1] == ""
        ours = [
            dart_tokenize(it.references[j]) if j < len(it.references) else "" for it in dart_items
        ]
        assert ours == official[:-1], path.name


def test_tokenize() -> None:
    # Split before lowercasing: "İ" stays one word character (lowercasing it first would
    # leave a combining dot that splits the word).
    assert (
        dart_tokenize("The Atatürk Monument (İzmir), 1932.")
        == "the atatürk monument ( i̇zmir ) , 1932 ."
    )
    assert dart_tokenize("already , tokenized .") == "already , tokenized ."


@pytest.mark.parametrize("system", SYSTEMS)
def test_bleu_golden(data_dir: Path, dart_items, system: str) -> None:
    hyps, official = _fixture(data_dir, system)
    want = official["BLEU_multi-bleu"]
    metric = METRICS.get("dart_bleu")()
    got = bleu_details(metric.stats(hyps, [it.references for it in dart_items]))
    assert round(got.bleu, 2) == pytest.approx(want["BLEU"], abs=1e-9)
    assert abs(got.bleu - want["BLEU"]) <= 0.05
    assert (got.hyp_len, got.ref_len) == (want["hyp_len"], want["ref_len"])
    assert [round(p, 1) for p in got.precisions] == want["precisions_1to4"]


def test_bleu_lowercases_hypotheses() -> None:
    metric = METRICS.get("dart_bleu")()
    ref = [["Jeff Daniels played in the Hawaii Five-O episode The Flight of the Jewels"]]
    hyp = "JEFF DANIELS played in the Hawaii Five-O episode The Flight of the Jewels"
    assert metric.aggregate(metric.stats([hyp], ref)) == pytest.approx(100.0)
    assert "dart-lc-split" in metric.signature() and "nrefs:3" in metric.signature()


@pytest.mark.slow  # ~40-60 s per system (5,097 outputs x 3 references)
@pytest.mark.parametrize("system", SYSTEMS)
def test_ter_golden(data_dir: Path, dart_items, system: str) -> None:
    hyps, official = _fixture(data_dir, system)
    metric = METRICS.get("dart_ter")()
    stats = metric.stats(hyps, [it.references for it in dart_items])
    edits, words = stats.sum(0)
    assert edits == official["TER"]["edits"]
    assert words == pytest.approx(official["TER"]["avg_ref_words"], rel=1e-12)
    assert metric.aggregate(stats) == pytest.approx(official["TER"]["TER"], abs=1e-12)


def test_ter_uses_nonempty_references_only() -> None:
    metric = METRICS.get("dart_ter")()
    # The empty annotation does not count towards the average reference length.
    assert metric.stats(["a b c"], [["A b c", "", "x y"]]).tolist() == [[0.0, 2.5]]
    # A fourth reference is ignored (the official files hold three).
    assert metric.stats(["q"], [["a", "b", "c", "q"]]).tolist() == [[1.0, 1.0]]


@pytest.mark.skipif(not java_available(), reason="METEOR needs java and pycocoevalcap's jar")
@pytest.mark.parametrize(
    "system",
    [
        "bart-large_dart.txt",
        pytest.param("template.txt", marks=pytest.mark.slow),
        pytest.param("ref0", marks=pytest.mark.slow),
    ],
)
def test_meteor_golden(data_dir: Path, dart_items, system: str) -> None:
    hyps, official = _fixture(data_dir, system)
    metric = METRICS.get("dart_meteor")()
    stats = metric.stats(hyps, [it.references for it in dart_items])
    # The issue allows 0.005; we reproduce the jar's number to float rounding.
    assert metric.aggregate(stats) == pytest.approx(official["METEOR"], abs=1e-9)


# --------------------------------------------------------------------------- learned metrics


@pytest.mark.parametrize("metric_id", ["dart_bertscore", "dart_moverscore", "dart_bleurt"])
def test_learned_metrics_fail_in_one_line_without_weights(
    metric_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_LEARNED_MODELS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = METRICS.get(metric_id)()
    with pytest.raises(BenchError) as err:
        metric.stats(["a sentence"], [["a reference"]])
    message = str(err.value)
    assert "\n" not in message and metric.model_name in message and metric_id in message


def test_bertscore_with_local_tiny_roberta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mechanics on a tiny random RoBERTa standing in for roberta-large (same architecture)."""
    from bench.metrics.learned import BertScore

    path = _tiny_model(tmp_path, "roberta")
    metric = BertScore(model_name="tiny-roberta", weights=path, layer=2, expect=None)
    stats = metric.stats(
        ["the cat sat on the mat", "a dog"], [["the cat sat on the mat", "x"], ["the cat sat"]]
    )
    assert stats.shape == (2, 3)
    assert stats[0] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)  # identical to a reference
    assert metric.aggregate(stats) == pytest.approx(stats[:, 2].mean())
    assert "tiny-roberta" in metric.signature() and "L2" in metric.signature()


def test_bertscore_refuses_another_architecture(tmp_path: Path) -> None:
    from bench.metrics.learned import BertScore

    path = _tiny_model(tmp_path, "roberta")
    metric = BertScore(model_name="roberta-large", weights=path, layer=17)
    with pytest.raises(BenchError, match="roberta-large"):
        metric.stats(["a"], [["a"]])


def _tiny_model(tmp_path: Path, kind: str) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "x"]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for w in words:
        vocab.setdefault(f"Ġ{w}", len(vocab))
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<unk>",
    )
    config = RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
    )
    model = RobertaModel(config)
    out = tmp_path / f"tiny-{kind}"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def test_learned_metrics_are_not_default() -> None:
    """They need weights that are absent here: a user names them explicitly."""
    assert set(DATASETS.get("dart")().metrics.values()) == {"dart_bleu", "dart_meteor", "dart_ter"}
