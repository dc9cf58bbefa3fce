"""E2E metrics against the official tuetschek/e2e-metrics scores, plus edge cases.

Golden values come from /work/shared/data/e2e/fixtures (official_scores*.json record how
measure_scores.py was run). METEOR and the CoreNLP tokenizer need Java; those tests skip
where it is missing. The full-corpus METEOR goldens are slow (the jar scores ~4,600
reference alignments per file) and carry the ``slow`` marker.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.metrics import coco_tokenizer as ct
from bench.metrics.cider import cider_d
from bench.metrics.coco_rouge import lcs_length, rouge_l
from bench.metrics.meteor import MeteorScorer, java_available, meteor_from_sums, summable
from bench.metrics.mteval import mteval_tokenize
from bench.registry import METRICS

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
E2E = DATA / "e2e"
needs_data = pytest.mark.skipif(not (E2E / "fixtures").is_dir(), reason=f"E2E data not found under {DATA}")
needs_java = pytest.mark.skipif(not java_available(), reason="java or the pycocoevalcap jars not available")

MTEVAL_IDS = ["e2e_bleu", "e2e_nist", "e2e_bleu_perl", "e2e_nist_perl"]
PY_IDS = [*MTEVAL_IDS, "e2e_rouge_l", "e2e_cider"]
ALL_IDS = [*PY_IDS, "e2e_meteor"]
# Official key for each metric id and variant block of official_scores.json.
OFFICIAL = {
    "e2e_bleu": ("python_mteval (-p)", "BLEU"),
    "e2e_nist": ("python_mteval (-p)", "NIST"),
    "e2e_bleu_perl": ("perl_mteval (default)", "BLEU"),
    "e2e_nist_perl": ("perl_mteval (default)", "NIST"),
    "e2e_meteor": ("python_mteval (-p)", "METEOR"),
    "e2e_rouge_l": ("python_mteval (-p)", "ROUGE_L"),
    "e2e_cider": ("python_mteval (-p)", "CIDEr"),
}


def tolerance(metric_id: str) -> float:
    return 0.01 if metric_id.split("_")[1] in ("nist", "cider") else 0.005


def grouped_refs(path: Path) -> list[list[str]]:
    """References grouped by consecutive identical MR, as measure_scores.py groups them."""
    groups: list[list[str]] = []
    current = None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        for mr, ref in reader:
            if mr != current:
                groups.append([])
                current = mr
            groups[-1].append(ref)
    return groups


def tokenized_dev_refs() -> list[list[str]]:
    """The paper's tokenized dev references (src1_valid.txt.gz), grouped per MR."""
    groups: list[list[str]] = []
    current = None
    with gzip.open(E2E / "prefix_tuning_format" / "src1_valid.txt.gz", "rt", encoding="utf-8") as fh:
        for line in fh.read().split("\n"):
            if "||" not in line:
                continue
            mr, ref = line.split("||", 1)
            if mr != current:
                groups.append([])
                current = mr
            groups[-1].append(ref.strip())
    return groups


def hypotheses(name: str) -> list[str]:
    return (E2E / "fixtures" / name).read_text(encoding="utf-8").rstrip("\n").split("\n")


def score(metric_id: str, hyps: list[str], refs: list[list[str]]) -> float:
    metric = METRICS.get(metric_id)()
    return metric.aggregate(metric.stats(hyps, refs))


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads((E2E / "fixtures" / "official_scores.json").read_text())


# --------------------------------------------------------------------------- goldens


@needs_data
@pytest.mark.parametrize("fixture", ["oracle_first_ref.txt", "template.txt"])
@pytest.mark.parametrize("metric_id", PY_IDS)
def test_dev_goldens(official: dict, fixture: str, metric_id: str) -> None:
    block, key = OFFICIAL[metric_id]
    expected = official["fixtures"][fixture][block][key]
    got = score(metric_id, hypotheses(fixture), grouped_refs(E2E / "devset.csv"))
    assert got == pytest.approx(expected, abs=tolerance(metric_id))


@needs_data
@pytest.mark.parametrize("fixture", ["oracle_first_ref.txt", "template.txt"])
@pytest.mark.parametrize("metric_id", MTEVAL_IDS)
def test_tokenized_reference_goldens_separate_the_variants(official: dict, fixture: str, metric_id: str) -> None:
    # Against the paper's tokenized references, Perl and Python NIST differ by 0.04 on the
    # oracle: this is where a mix-up of the two variants would show.
    block, key = OFFICIAL[metric_id]
    expected = official["scores_against_prefix_tuning_tokenized_dev_references"][fixture][block][key]
    got = score(metric_id, hypotheses(fixture), tokenized_dev_refs())
    assert got == pytest.approx(expected, abs=tolerance(metric_id) / 2)


@needs_data
def test_full_precision_python_mteval_and_coco(official: dict) -> None:
    full = official["fixtures"]["template.txt"]["full_precision"]
    hyps, refs = hypotheses("template.txt"), grouped_refs(E2E / "devset.csv")
    assert score("e2e_bleu", hyps, refs) == pytest.approx(full["BLEU_python_mteval"], abs=1e-9)
    assert score("e2e_nist", hyps, refs) == pytest.approx(full["NIST_python_mteval"], abs=1e-9)
    assert score("e2e_rouge_l", hyps, refs) == pytest.approx(full["ROUGE_L"], abs=1e-9)
    assert score("e2e_cider", hyps, refs) == pytest.approx(full["CIDEr"], abs=1e-9)


@needs_data
@pytest.mark.parametrize("metric_id", PY_IDS)
def test_real_system_on_test_set(metric_id: str) -> None:
    real = json.loads((E2E / "fixtures" / "official_scores_real_systems.json").read_text())
    entry = real["data/e2e/fixtures/tgen-std.run0.txt"]
    block = (
        "official_measure_scores_perl_mteval"
        if metric_id.endswith("_perl")
        else "official_measure_scores_python_mteval_-p"
    )
    expected = entry[block][OFFICIAL[metric_id][1]]
    got = score(metric_id, hypotheses("tgen-std.run0.txt"), grouped_refs(E2E / "testset_w_refs.csv"))
    assert got == pytest.approx(expected, abs=tolerance(metric_id))


@pytest.mark.slow
@needs_data
@needs_java
@pytest.mark.parametrize("fixture", ["oracle_first_ref.txt", "template.txt"])
def test_meteor_dev_goldens(official: dict, fixture: str) -> None:
    expected = official["fixtures"][fixture]["full_precision"]["METEOR"]
    got = score("e2e_meteor", hypotheses(fixture), grouped_refs(E2E / "devset.csv"))
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
@needs_data
@needs_java
def test_meteor_real_system() -> None:
    real = json.loads((E2E / "fixtures" / "official_scores_real_systems.json").read_text())
    expected = real["data/e2e/fixtures/tgen-std.run0.txt"]["full_precision"]["METEOR"]
    got = score("e2e_meteor", hypotheses("tgen-std.run0.txt"), grouped_refs(E2E / "testset_w_refs.csv"))
    assert got == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- METEOR


@needs_java
def test_meteor_python_aggregate_equals_jar_eval() -> None:
    scorer = MeteorScorer()
    hyps = [
        "the cat was sitting on the mat",
        "hello there world",
        "",
        "café rouge is nice",
        "a b c d e f",
        "completely different words",
    ]
    refs = [
        ["the cat sat on the mat", "a cat is on the mat"],
        ["hello world"],
        ["the cat"],
        ["café rouge is nice"],
        ["f e d c b a", "a b"],
        ["nothing in common"],
    ]
    stats = scorer.segment_stats(hyps, refs)
    jar_segments, jar_corpus = scorer.jar_eval(stats)
    assert scorer.aggregate(stats) == pytest.approx(jar_corpus, abs=1e-12)
    assert scorer.segment_scores(stats) == pytest.approx(jar_segments, abs=1e-12)
    # Exact match scores 1 and its chunks do not count in the sum (the jar's addStats).
    assert jar_segments[3] == pytest.approx(1.0)
    assert summable(stats)[3, 20] == 0
    # Subsets aggregate by summing rows, as the jar's EVAL on that subset would.
    sub = stats[[0, 1, 4]]
    assert scorer.aggregate(sub) == pytest.approx(scorer.jar_eval(sub)[1], abs=1e-12)
    assert meteor_from_sums(summable(sub).sum(0), scorer.params) == pytest.approx(scorer.jar_eval(sub)[1])


@needs_java
@needs_data
def test_meteor_subset_matches_jar_and_keeps_one_process() -> None:
    from bench.metrics import meteor

    refs = grouped_refs(E2E / "devset.csv")[:40]
    hyps = hypotheses("template.txt")[:40]
    metric = METRICS.get("e2e_meteor")()
    stats = metric.stats(hyps, refs)
    _, jar_corpus = metric.scorer.jar_eval(stats)
    assert metric.aggregate(stats) == pytest.approx(jar_corpus, abs=1e-12)
    metric.stats(hyps[::-1], refs[::-1])
    METRICS.get("e2e_meteor")().stats(hyps[:3], refs[:3])
    assert meteor.pool_size() == 1


def test_meteor_without_java_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.metrics import meteor

    monkeypatch.setattr(meteor.shutil, "which", lambda name: None)
    with pytest.raises(BenchError, match="default-jre-headless"):
        meteor.java_executable()


# --------------------------------------------------------------------------- tokenizers


def test_mteval_tokenization_variants() -> None:
    # v13a splits ASCII punctuation except hyphens; periods/commas stay inside numbers.
    assert mteval_tokenize("It costs £20.50, near X-Y (5-6).", variant="python") == [
        "it", "costs", "£20.50", ",", "near", "x-y", "(", "5", "-", "6", ")", ".",
    ]
    assert mteval_tokenize("", variant="python") == [""]  # pymteval's one empty token
    assert mteval_tokenize("", variant="perl") == []
    # Perl's tr/A-Z/a-z/ lowercases ASCII only; pymteval lowercases every letter.
    assert mteval_tokenize("ÉCOLE Bar", variant="perl") == ["École", "bar"]
    assert mteval_tokenize("ÉCOLE Bar", variant="python") == ["école", "bar"]


HARD_CAPTIONS = [
    "The Vaults is a family-friendly pub near Café Adriatic. It's £20-25.",
    "Near Chesterton Rd.",
    "The Plough is a kid friendly pub. Near the Café Rouge for 20-25 L.",
    "It is in the city center., close to Burger King.",
    "He can't, won't, shouldn't -- and didn't - go. Mr. Smith vs. Dr. Jones etc.",
    "I cannot go. gonna wanna gotta lemme 'Tis 'Twas y'all o'clock rock'n'roll",
    "A child friendly coffee shop called 'Aromi' has an 'average' rating.",
    "the restaurant'sfood it's' 1990's '90s 2's",
    "......  ...... .... . . . . . . Hello!!! What?? Wait... ok....",
    "5,000-seat 20.5-30 1,2 1.2.3 2.5. 3:30. -3 +3 5-6-7 5--6 555-555-1234 555 555 1234",
    "near L. The end",
    "near St. Ives. No. 5 and No. The x",
    "The cat (a \"nice\" one) isn't here; 3/5 stars & more... \"Yes,\" he said.",
    "It’s the café’s “best” – really — ‘quoted’. naïve Zürich ½ € ¥",
    "e.g. i.e. U.K. a.m. p.m. Ph.D. U.S.A. In the U.S. He went. www.x.com a@b.org",
    "",
    "a < b > c &amp; d &lt; AT&T S&P 500 [x] {y} <z>",
    "x",
]


@needs_java
@needs_data
def test_coco_tokenizer_equals_corenlp_on_dev_references_and_hard_cases() -> None:
    refs = [r for group in grouped_refs(E2E / "devset.csv") for r in group]
    captions = refs + hypotheses("template.txt") + HARD_CAPTIONS
    jar = ct.jar_ptb_lines([ct._clean(c) for c in captions])
    expected = [" ".join(w for w in line.split(" ") if w not in ct.COCO_PUNCTUATION) for line in jar]
    tok = ct.CocoTokenizer("auto")
    assert tok.tokenize(captions) == expected
    assert tok.jar_calls == 1  # only the unusual captions went to the jar
    # The Python lexer alone agrees on every caption it claims to handle.
    lines = [ct._clean(c) for c in captions]
    safe = [i for i, line in enumerate(lines) if ct.is_python_safe(line)]
    assert len(safe) > 0.99 * len(refs)
    python = [ct._python_caption(lines[i], ct._following(lines, i)) for i in safe]
    assert python == [expected[i] for i in safe]


@pytest.mark.slow
@needs_java
@needs_data
def test_coco_tokenizer_python_path_equals_corenlp_on_all_e2e_text() -> None:
    captions = []
    for name in ("devset.csv", "testset_w_refs.csv"):
        captions += [r for group in grouped_refs(E2E / name) for r in group]
    with gzip.open(E2E / "trainset.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        captions += [row[1] for row in reader]
    captions += hypotheses("tgen-std.run0.txt") + hypotheses("oracle_first_ref.txt")
    captions = [ct._clean(c) for c in captions]
    jar = ct.jar_ptb_lines(captions)
    expected = [" ".join(w for w in line.split(" ") if w not in ct.COCO_PUNCTUATION) for line in jar]
    assert ct.CocoTokenizer("auto").tokenize(captions) == expected


def test_coco_tokenizer_without_java_for_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Plain E2E-style text never needs the jar: it works (and is exact) without Java.
    from bench.metrics import meteor

    monkeypatch.setattr(meteor.shutil, "which", lambda name: None)
    out = ct.CocoTokenizer().tokenize(["The Vaults is a pub. It's near Café Adriatic, £20-25.", "Rd."])
    assert out == ["the vaults is a pub it 's near café adriatic # 20-25", "rd."]


# --------------------------------------------------------------------------- COCO metrics vs pycocoevalcap


def _random_corpus(seed: int, n: int = 25) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    vocab = ["the", "a", "pub", "near", "cafe", "rouge", "is", "family", "friendly", "cheap", "city", "centre", "riverside"]
    sent = lambda: " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
    hyps = [sent() for _ in range(n)]
    refs = [[sent() for _ in range(rng.randint(1, 5))] for _ in range(n)]
    return hyps, refs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rouge_and_cider_equal_pycocoevalcap_on_random_corpora(seed: int) -> None:
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    hyps, refs = _random_corpus(seed)
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    rouge_ref, rouge_seg = Rouge().compute_score(gts, res)
    cider_ref, cider_seg = Cider().compute_score(gts, res)
    ours_rouge = np.array([rouge_l(h, r) for h, r in zip(hyps, refs)])
    ours_cider = cider_d(hyps, refs)
    assert ours_rouge == pytest.approx(np.asarray(rouge_seg), abs=1e-12)
    assert ours_cider == pytest.approx(np.asarray(cider_seg), abs=1e-9)
    assert float(ours_cider.mean()) == pytest.approx(cider_ref, abs=1e-9)
    assert float(ours_rouge.mean()) == pytest.approx(rouge_ref, abs=1e-12)


def test_lcs_bit_parallel_equals_dynamic_programming() -> None:
    rng = random.Random(3)
    for _ in range(200):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 15))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 15))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                table[i + 1][j + 1] = table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
        assert lcs_length(a, b) == table[-1][-1]


# --------------------------------------------------------------------------- edge cases


EDGE_HYPS = ["", "The Vaults is a pub near Café Adriatic.", "Zürich’s naïve café — “très” bien", "x y"]
EDGE_REFS = [
    ["The Eagle is a pub."],
    ["The Vaults is a pub near Café Adriatic."],
    ["A naïve café in Zürich.", "Very good café."],
    ["x y z"],
]


@pytest.mark.parametrize("metric_id", PY_IDS)
def test_edge_cases_give_finite_scores(metric_id: str) -> None:
    metric = METRICS.get(metric_id)()
    stats = metric.stats(EDGE_HYPS, EDGE_REFS)
    assert stats.shape[0] == len(EDGE_HYPS)
    assert np.isfinite(metric.aggregate(stats))
    assert np.isfinite(metric.aggregate(stats[[1]]))


def test_identical_single_reference_scores_perfect() -> None:
    hyps = ["The Vaults is a pub near Café Adriatic.", "Blue Spice is in the city centre."]
    refs = [[h] for h in hyps]
    for metric_id in ("e2e_bleu", "e2e_bleu_perl", "e2e_rouge_l"):
        assert score(metric_id, hyps, refs) == pytest.approx(1.0)
    # CIDEr's IDF is zero for n-grams found in every item: two distinct items keep weight.
    assert score("e2e_cider", hyps, refs) > 5.0


def test_empty_hypothesis_variants_differ_as_the_official_implementations() -> None:
    hyps, refs = ["", "a pub near the river"], [["a pub"], ["a pub near the river"]]
    py = METRICS.get("e2e_bleu")().stats(hyps, refs)
    perl = METRICS.get("e2e_bleu_perl")().stats(hyps, refs)
    assert py[0, 4] == 1  # pymteval: "" is one (empty) token
    assert perl[0, 4] == 0
    assert perl[0, 8] == 2  # closest reference length to 0 tokens (no padding: 1 ref set)
    # Perl pads missing references with empty segments: a 3-token hypothesis against
    # references of 10 tokens and a padded empty one is closest to the empty one.
    long_ref = "one two three four five six seven eight nine ten"
    perl_stats = METRICS.get("e2e_bleu_perl")().stats(["one two three", "x"], [[long_ref], [long_ref, "x"]])
    assert perl_stats[0, 8] == 0
    py_stats = METRICS.get("e2e_bleu")().stats(["one two three", "x"], [[long_ref], [long_ref, "x"]])
    assert py_stats[0, 8] == 10


@needs_java
def test_meteor_edge_cases() -> None:
    metric = METRICS.get("e2e_meteor")()
    stats = metric.stats(EDGE_HYPS, EDGE_REFS)
    segs = metric.scorer.segment_scores(stats)
    assert segs[0] == 0.0  # empty hypothesis
    assert segs[1] == pytest.approx(1.0)  # identical to its single reference
    assert 0.0 < segs[2] < 1.0  # unicode text is matched, not dropped
    assert np.isfinite(metric.aggregate(stats))


def test_signatures_name_the_variant_and_tokenizer() -> None:
    sigs = {m: METRICS.get(m)().signature() for m in ALL_IDS}
    assert "pymteval" in sigs["e2e_bleu"] and "mteval-v13a" in sigs["e2e_bleu_perl"]
    assert sigs["e2e_nist"] != sigs["e2e_nist_perl"]
    for m in ("e2e_meteor", "e2e_rouge_l", "e2e_cider"):
        assert "coco-ptb" in sigs[m]
    assert "beta:1.2" in sigs["e2e_rouge_l"] and "sigma:6.0" in sigs["e2e_cider"]
    assert "-norm" not in sigs["e2e_meteor"] and "norm:yes" in sigs["e2e_meteor"]


@pytest.mark.parametrize("metric_id", PY_IDS)
def test_missing_references_are_user_errors(metric_id: str) -> None:
    metric = METRICS.get(metric_id)()
    with pytest.raises(BenchError, match="no reference"):
        metric.stats(["a pub", "a cafe"], [["a pub"], []])
