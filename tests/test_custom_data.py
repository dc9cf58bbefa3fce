"""Your own data, no code (issue 25): the ``custom`` dataset declared in a suite, the generic
metrics chosen by name, and the example suite ``suites/custom_data.yaml`` end to end.

The example files under tests/data/custom_d2t/ were written for this repository (made-up
venues); every other file here is written into the test's own temporary folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench import expansion_cache
from bench.cli import main
from bench.errors import BenchError, DataError
from bench.interfaces import group_references
from bench.metrics.meteor import java_available
from bench.registry import DATASETS, METRICS
from bench.suite import expand, load_suite

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "tests" / "data" / "custom_d2t"
SUITE = REPO / "suites" / "custom_data.yaml"

ROWS = [
    {"id": "a", "category": "cafe", "data": {"name": "Kettle", "area": "river"}, "text": "Kettle is a cafe by the river."},
    {"id": "a", "category": "cafe", "data": {"name": "Kettle", "area": "river"}, "text": "By the river: Kettle, a cafe."},
    {"id": "b", "category": "park", "data": {"name": "Elm", "area": "centre"}, "text": "Elm is a park in the centre."},
    {"id": "c", "category": "shop", "data": {"name": "Ink", "area": "harbour"}, "text": "Ink is a shop at the harbour."},
    {"id": "d", "category": "park", "data": {"name": "Fern", "area": "river"}, "text": "Fern is a park by the river."},
]


def cli(argv: list[Any]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_table(path: Path, rows: list[dict[str, Any]], delimiter: str) -> Path:
    """CSV/TSV with the object source flattened to text (a table cell holds text)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "category", "data", "text"], delimiter=delimiter)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "data": " | ".join(f"{k} : {v}" for k, v in r["data"].items())})
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def load(split: str = "train", **options: Any) -> list:
    return DATASETS.get("custom")().load(split, data_dir=None, options=options)


SUITE_TEXT = """
name: mine
model: tiny-gpt2
seeds: [0]
train: {{max_steps: 2, batch_size: 2, max_target_tokens: 24}}
decode: {{beam_size: 1, max_new_tokens: 6}}
datasets:
  - name: custom
    options: {{train: {train}, test: {test}, source: data, target: text, id: id, fields: [category]}}
    eval_splits: [test]
    metrics: {{bleu: bleu}}
methods:
  - label: lora
    method: lora
    config: {{r: 2}}
"""


def my_suite(tmp: Path, train: str = "data/train.jsonl", test: str = "data/test.jsonl", rows: list | None = None) -> Path:
    """A suite in ``tmp`` whose data files sit in ``tmp/data`` (relative paths from the suite)."""
    (tmp / "data").mkdir(exist_ok=True)
    write_jsonl(tmp / "data" / "train.jsonl", rows or ROWS)
    write_jsonl(tmp / "data" / "test.jsonl", ROWS[:3])
    suite = tmp / "mine.yaml"
    suite.write_text(SUITE_TEXT.format(train=train, test=test))
    return suite


# ----------------------------------------------------------------------------- metrics by name


HYPS = ["the cat sat on the mat", "a dog runs fast .", "hello world"]
REFS = [["the cat sat on a mat", "a cat sat on the mat"], ["the dog runs fast ."], ["hello there world", "hi world", "hello world !"]]


@pytest.mark.parametrize("metric_id, corpus", [("bleu", "corpus_bleu"), ("chrf", "corpus_chrf")])
def test_sacrebleu_metrics_equal_sacrebleu(metric_id: str, corpus: str) -> None:
    import numpy as np
    import sacrebleu

    metric = METRICS.get(metric_id)()
    stats = metric.stats(HYPS, REFS)
    streams = [[r[k] if k < len(r) else None for r in REFS] for k in range(3)]
    want = getattr(sacrebleu, corpus)(HYPS, streams).score
    assert metric.aggregate(stats) == pytest.approx(want, abs=1e-9)
    # Rows sum: a subset is the metric of that subset, the bootstrap's fast path agrees.
    sub = getattr(sacrebleu, corpus)(HYPS[:2], [s[:2] for s in streams]).score
    assert metric.aggregate(stats[:2]) == pytest.approx(sub, abs=1e-9)
    assert metric.aggregate_sums(stats.sum(0)[None], len(HYPS))[0] == pytest.approx(want)
    assert "sacrebleu-" in metric.signature() and np.all(stats >= 0)


def test_every_metric_the_issue_names_is_registered() -> None:
    for mid in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "meteor", "ter"):
        assert mid in METRICS
    # chrF and chrF++ are two numbers with two signatures.
    assert METRICS.get("chrf")().signature() != METRICS.get("chrf_pp")().signature()


@pytest.mark.skipif(not java_available(), reason="java or the pycocoevalcap jars not available")
def test_plain_meteor_scores_the_text_as_given() -> None:
    metric = METRICS.get("meteor")()
    assert metric.aggregate(metric.stats(["hello world"], [["hello world"]])) > 0.9
    assert "nrefs:all" in metric.signature()


# ----------------------------------------------------------------------------- reading files


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv", "parquet", "json"])
def test_every_file_format_gives_the_same_examples(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"train.{kind}"
    if kind == "jsonl":
        write_jsonl(path, ROWS)
    elif kind == "json":
        path.write_text(json.dumps(ROWS))
    elif kind == "parquet":
        write_parquet(path, ROWS)
    else:
        write_table(path, ROWS, "," if kind == "csv" else "\t")
    examples = load(train=str(path), source="data", target="text", id="id", fields=["category"])
    assert [e.source for e in examples][:3] == ["name : Kettle | area : river"] * 2 + ["name : Elm | area : centre"]
    assert [e.target for e in examples] == [r["text"] for r in ROWS]
    assert [e.fields for e in examples] == [{"category": r["category"]} for r in ROWS]
    assert [e.example_id for e in examples] == [f"train-{i}" for i in range(len(ROWS))]


def test_rows_sharing_an_id_are_one_source_with_several_references(tmp_path: Path) -> None:
    items = group_references(load(train=str(write_jsonl(tmp_path / "t.jsonl", ROWS)), source="data", target="text", id="id"))
    assert [it.source_id for it in items] == ["a", "b", "c", "d"]
    assert items[0].references == ("Kettle is a cafe by the river.", "By the river: Kettle, a cafe.")
    # Without an id, identical sources group (as E2E groups its MRs).
    items = group_references(load(train=str(tmp_path / "t.jsonl"), source="data", target="text"))
    assert [len(it.references) for it in items] == [2, 1, 1, 1]


def test_a_list_of_references_per_row(tmp_path: Path) -> None:
    rows = [{"doc": "A long text about cats.", "summaries": ["Cats.", "About cats."]},
            {"doc": "Dogs bark at night.", "summaries": ["Dogs bark."]}]
    examples = DATASETS.get("custom_summarization")().load(
        "test", data_dir=None, options={"test": str(write_jsonl(tmp_path / "t.jsonl", rows)), "source": "doc",
                                        "references": "summaries"})
    items = group_references(examples)
    assert [it.references for it in items] == [("Cats.", "About cats."), ("Dogs bark.",)]
    assert DATASETS.get("custom_summarization").task == "summarization"


def test_triples_are_linearized_as_webnlg() -> None:
    from bench.datasets.custom import linearize

    assert linearize([["Elm", "area", "centre"], ["Elm", "type", "park"]]) == "Elm : area : centre | Elm : type : park"
    assert linearize({"name": "Elm", "stars": 4}) == "name : Elm | stars : 4"
    assert linearize(5) is None and linearize([{"a": 1}]) is None


def test_hub_id_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    # The project's machines have no network; offline mode makes the failure immediate.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchError) as e:
        load("test", hf="someone/their-d2t", target="text")
    text = str(e.value)
    assert "\n" not in text and "'someone/their-d2t'" in text and "options train, dev, test" in text


# ----------------------------------------------------------------------------- bad files

GOOD = b'{"data": "a", "text": "x"}\n'
# (case, file name, bytes, extra options, what the one line says besides the file name)
BAD_FILES = [
    ("missing-field", "t.jsonl", GOOD + b'{"data": "b"}\n', {}, ("line 2", "no field 'text'")),
    ("empty-target", "t.jsonl", GOOD + b'{"data": "b", "text": " "}\n', {}, ("line 2", "empty target")),
    ("target-a-number", "t.jsonl", GOOD + b'{"data": "b", "text": 42}\n', {}, ("line 2", "'text'", "a number")),
    ("source-null", "t.jsonl", GOOD + b'{"data": null, "text": "y"}\n', {}, ("line 2", "'data'", "null")),
    ("source-a-number", "t.jsonl", GOOD + b'{"data": 7, "text": "y"}\n', {}, ("line 2", "'data'", "a number")),
    ("latin-1", "t.jsonl", GOOD + '{"data": "caf\xe9", "text": "y"}\n'.encode("latin-1"), {}, ("line 2", "UTF-8")),
    ("not-json", "t.jsonl", GOOD + b'{"data": "b", "text": \n', {}, ("line 2", "not valid JSON")),
    ("json-line-a-list", "t.jsonl", GOOD + b'["b", "y"]\n', {}, ("line 2", "expected an object")),
    ("csv-short-row", "t.csv", b"data,text\na,x\nb\n", {}, ("line 3", "1 field(s)")),
    ("csv-empty-target", "t.csv", b"data,text\na,x\nb,\n", {}, ("line 3", "empty target")),
    ("tsv-missing-column", "t.tsv", b"data\ttxt\na\tx\n", {}, ("'text'", 'did you mean "txt"')),
    ("parquet-garbage", "t.parquet", b"PAR1 not really", {}, ("parquet",)),
    ("references-not-a-list", "t.jsonl", b'{"data": "a", "refs": "x"}\n', {"target": None, "references": "refs"},
     ("line 1", "'refs'", "list")),
    ("references-empty", "t.jsonl", b'{"data": "a", "refs": []}\n', {"target": None, "references": "refs"},
     ("line 1", "empty list")),
    ("id-with-two-sources", "t.jsonl", b'{"i": 1, "data": "a", "text": "x"}\n{"i": 1, "data": "b", "text": "y"}\n',
     {"id": "i"}, ("line 2", "id '1'", "line 1")),
    ("extra-field-an-object", "t.jsonl", b'{"data": "a", "text": "x", "cat": {"k": 1}}\n', {"fields": ["cat"]},
     ("line 1", "'cat'", "an object")),
    ("unknown-extension", "t.txt", GOOD, {}, ("'.txt'", "format")),
    ("empty-file", "t.jsonl", b"", {}, ("no rows",)),
]


@pytest.mark.parametrize("case, name, content, extra, says", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_one_line_naming_file_row_and_problem(
    tmp_path: Path, case: str, name: str, content: bytes, extra: dict, says: tuple[str, ...]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    options = {"train": str(path), "source": "data", "target": "text", **extra}
    # When a run (or `bench data describe`) reads it ...
    describe = ["data", "describe", "custom", "--split", "train", "--tokenizer", "tiny-gpt2"]
    for k, v in options.items():
        describe += ["-o", f"{k}={json.dumps(v)}"]
    # ... and when `bench validate` reads the suite that names it.
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE_TEXT.format(train=name, test=name).replace(
        "source: data, target: text, id: id, fields: [category]",
        ", ".join(f"{k}: {json.dumps(v)}" for k, v in options.items() if k != "train")))
    for argv in (describe, ["validate", suite]):
        rc, _, err = cli(argv)
        lines = [ln for ln in err.splitlines() if ln.startswith("bench: error:")]
        assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
        assert str(path) in lines[0], lines[0]
        for s in says:
            assert s in lines[0], lines[0]


# ----------------------------------------------------------------------------- suites


def test_relative_paths_start_at_the_suite_folder_and_stay_out_of_the_key(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = my_suite(tmp_path / "a"), my_suite(tmp_path / "b")
    spec_a, spec_b = expand(load_suite(a))[0], expand(load_suite(b))[0]
    assert spec_a.data.options["train"] == str((tmp_path / "a" / "data" / "train.jsonl").resolve())
    # Same bytes in another folder: the same run (paths are not part of a key; content is).
    assert spec_a.train_key == spec_b.train_key
    assert "train" not in spec_a.train_identity()["data"]["options"]


def test_a_changed_file_is_a_new_run(tmp_path: Path) -> None:
    suite = my_suite(tmp_path)
    before = expand(load_suite(suite))[0]
    write_jsonl(tmp_path / "data" / "train.jsonl", ROWS[:4])
    after = expand(load_suite(suite))[0]
    assert before.data.options["fingerprint"]["train"] != after.data.options["fingerprint"]["train"]
    assert before.train_key != after.train_key
    # A spec planned before the change refuses the changed file rather than train on it.
    with pytest.raises(DataError, match="changed since the suite was read"):
        DATASETS.get("custom")().load("train", data_dir=None, options=before.data.options)


def test_the_stored_expansion_is_not_used_after_a_file_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    suite = my_suite(tmp_path)
    specs = expand(load_suite(suite))
    expansion_cache.save(suite, "mine", ["tiny-gpt2"], specs)
    assert expansion_cache.load(suite) is not None
    write_jsonl(tmp_path / "data" / "train.jsonl", ROWS[:4])
    assert expansion_cache.load(suite) is None


def test_filters_on_an_extra_field(tmp_path: Path) -> None:
    suite = my_suite(tmp_path)
    text = suite.read_text().replace("    eval_splits: [test]\n", "    eval_splits: [test]\n"
                                     "    train_filter: {category: [cafe, park]}\n    eval_filter: {category: [park]}\n")
    suite.write_text(text)
    from bench.pipeline import load_eval_items, load_train_data

    spec = expand(load_suite(suite))[0]
    train, _ = load_train_data(spec, None)
    assert {e.fields["category"] for e in train} == {"cafe", "park"} and len(train) == 4
    assert [it.source_id for it in load_eval_items(spec, "test", None)] == ["b"]


def test_low_data_subsets_and_max_eval_sources(tmp_path: Path) -> None:
    suite = my_suite(tmp_path)
    suite.write_text(suite.read_text().replace("    eval_splits: [test]\n", "    eval_splits: [test]\n"
                                               "    train_sizes: [2]\n    subsets: 2\n    dev_fraction: 0.5\n"
                                               "    max_eval_sources: 2\n"))
    from bench.pipeline import load_eval_items, load_train_data, subset_key

    specs = expand(load_suite(suite))
    assert len(specs) == 2
    train, dev = load_train_data(specs[0], None)
    assert len(train) == 2 and len(dev) == 1 and not {e.source_id for e in dev} & {e.source_id for e in train}
    assert len(load_eval_items(specs[0], "test", None)) == 2
    assert str(tmp_path) not in subset_key(specs[0])  # the draw does not depend on where the files are


def test_validate_catches_a_field_the_file_lacks(tmp_path: Path) -> None:
    suite = my_suite(tmp_path)
    suite.write_text(suite.read_text().replace("target: text", "target: txt"))
    rc, _, err = cli(["validate", suite])
    lines = [ln for ln in err.splitlines() if ln.startswith("bench: error:")]
    assert rc == 2 and len(lines) == 1, err
    assert "train.jsonl" in lines[0] and "'txt'" in lines[0] and 'did you mean "text"' in lines[0]


@pytest.mark.parametrize("old, new, says", [
    ("train: data/train.jsonl", "train: data/nope.jsonl", ("nope.jsonl", "not found")),
    ("eval_splits: [test]", "eval_splits: [dev]", ("'dev'", "names no file")),
    ("source: data", "source: 5", ("'source'", "field name")),
    ("target: text,", "target: text, references: text,", ("'target' and 'references'",)),
    ("id: id,", "id: id, formt: csv,", ("formt", 'did you mean "format"')),
])
def test_validate_catches_option_mistakes(tmp_path: Path, old: str, new: str, says: tuple[str, ...]) -> None:
    suite = my_suite(tmp_path)
    suite.write_text(suite.read_text().replace(old, new))
    rc, _, err = cli(["validate", suite])
    lines = [ln for ln in err.splitlines() if ln.startswith("bench: error:")]
    assert rc == 2 and "Traceback" not in err and len(lines) == 1, err
    for s in says:
        assert s in lines[0], lines[0]


# ----------------------------------------------------------------------------- the example suite


def test_example_suite_end_to_end(tmp_path: Path) -> None:
    results, reports = tmp_path / "results", tmp_path / "reports"
    rc, out, err = cli(["validate", SUITE])
    assert rc == 0 and "ok, 2 runs" in out, err
    rc, _, err = cli(["run", SUITE, "--results", results, "--quiet"])
    assert rc == 0 and "2 done" in err, err
    rc, _, err = cli(["run", SUITE, "--results", results, "--quiet"])
    assert rc == 0 and "2 runs: 0 done, 2 cached" in err, err
    rc, _, err = cli(["report", SUITE, "--results", results, "--out", reports])
    assert rc == 0, err
    md = (reports / "custom_data.md").read_text()
    assert "### custom (test)" in md and "| prefix |" in md and "| lora |" in md
    assert "impl:sacrebleu-" in md  # signatures stored and shown as for the built-in datasets
    from bench.store import load_runs

    runs = load_runs(results)
    assert set(runs["status"]) == {"done"}


def test_example_files_describe(tmp_path: Path) -> None:
    rc, out, err = cli(["data", "describe", SUITE, "--tokenizer", "tiny-gpt2"])
    assert rc == 0, err
    assert "custom (" in out and "train" in out and "test" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["train"], ["dev"], ["test"])}
    assert rows["train"][1:3] == ["28", "20"] and rows["dev"][1:3] == ["9", "6"] and rows["test"][1:3] == ["8", "6"]


def test_example_suite_moves_with_its_files(tmp_path: Path) -> None:
    """A copied suite with its files keeps its run keys (paths out, content in)."""
    (tmp_path / "suites").mkdir()
    shutil.copy(SUITE, tmp_path / "suites" / "custom_data.yaml")
    shutil.copytree(EXAMPLE, tmp_path / "tests" / "data" / "custom_d2t")
    here = [s.train_key for s in expand(load_suite(SUITE))]
    there = [s.train_key for s in expand(load_suite(tmp_path / "suites" / "custom_data.yaml"))]
    assert here == there
