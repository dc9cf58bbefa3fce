"""Malformed input never ends in a traceback: a table of bad suites, data files, hypothesis files,
flags and damaged results folders, each run through ``bench.cli.main`` in process.

Each case expects exit status 2 (a user mistake: one ``bench: error:`` line naming the file, key
or line) unless it says otherwise; an uncaught exception fails the test with its traceback.
Damaged run folders: ``bench ls`` lists them as damaged, ``bench report`` / ``bench regress``
skip them with a warning and fail with "missing", ``bench run`` redoes only what is damaged.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cli import main

DATA = Path("/nonexistent")  # replaced by the shared data folder where one exists

TINY = """
name: tiny
model: tiny-gpt2
seeds: [0]
train: {max_steps: 2, batch_size: 2, max_target_tokens: 32}
decode: {beam_size: 1, max_new_tokens: 8}
datasets:
  - name: synthetic_e2e
    options: {n_train_mrs: 8, n_dev_mrs: 2, n_test_mrs: 4}
    eval_splits: [test]
    metrics: {bleu: e2e_bleu}
methods:
  - label: finetune
    method: full
  - label: lora
    method: lora
    config: {r: 2}
"""


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse: usage line + one error line, exit 2
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("bench: error:")]


def suite_with(tmp: Path, old: str, new: str, name: str = "bad.yaml") -> Path:
    assert old in TINY, old
    p = tmp / name
    p.write_text(TINY.replace(old, new))
    return p


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Path], list]  # tmp folder -> argv
    says: tuple[str, ...]  # substrings of the error line(s)
    rc: int = 2
    lines: int | None = 1  # error lines expected (None: any number >= 1)
    warns: tuple[str, ...] = ()  # substrings of the `bench: warning:` lines
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # the environment the case needs


def _suite(old: str, new: str, cmd: str = "validate") -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        p = suite_with(tmp, old, new)
        return [cmd, p] if cmd == "validate" else [cmd, p, "--results", tmp / "results"]
    return make


def _file(content: bytes, cmd: str = "validate") -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        p = tmp / "bad.yaml"
        p.write_bytes(content)
        return [cmd, p] if cmd == "validate" else [cmd, p, "--results", tmp / "results"]
    return make


SUITES = [
    Case("train-is-a-list", _suite("train: {max_steps: 2, batch_size: 2, max_target_tokens: 32}", "train: [1, 2]"),
         ("bad.yaml", "train", "mapping")),
    Case("train-is-a-list-run", _suite("train: {max_steps: 2, batch_size: 2, max_target_tokens: 32}", "train: [1, 2]",
                                       "run"), ("bad.yaml", "train", "mapping")),
    Case("decode-is-a-string", _suite("decode: {beam_size: 1, max_new_tokens: 8}", "decode: fast"),
         ("bad.yaml", "decode", "mapping")),
    Case("suite-is-a-directory-run", lambda t: ["run", t, "--results", t / "results"], ("directory",)),
    Case("suite-folder-without-suites", lambda t: ["validate", t], ("no suite files",)),
    Case("binary-garbage", _file(bytes(range(256)) * 4), ("bad.yaml",)),
    Case("binary-garbage-run", _file(bytes(range(256)) * 4, "run"), ("bad.yaml",)),
    Case("latin-1-text", _file("name: caf\xe9\nmodel: tiny-gpt2\n".encode("latin-1")), ("bad.yaml", "UTF-8")),
    Case("empty-file", _file(b""), ("bad.yaml", "mapping")),
    Case("top-level-list", _file(b"- a\n- b\n"), ("bad.yaml", "mapping")),
    Case("tab-indented-yaml", _file(b"name: x\n\tmodel: y\n"), ("bad.yaml", "YAML")),
    Case("suite-not-found", lambda t: ["validate", t / "nope.yaml"], ("nope.yaml", "not found")),
    Case("datasets-is-a-number", _suite("datasets:\n  - name: synthetic_e2e", "datasets: 5\nx:\n  - name: synthetic_e2e"),
         ("datasets",), lines=None),
    Case("methods-is-a-number", _suite("methods:\n  - label: finetune", "methods: 5\nx:\n  - label: finetune"),
         ("methods",), lines=None),
    Case("method-config-is-a-list", _suite("config: {r: 2}", "config: [2]"), ("methods[1].config", "mapping")),
    Case("peft-field-unknown", _suite("method: lora\n    config: {r: 2}", "method: peft\n    config: {peft_type: LORA, "
                                      "lora_aplha: 8}"), ("methods[1].config", "unknown LORA field 'lora_aplha'",
                                                          'did you mean "lora_alpha"')),
    Case("peft-type-unknown", _suite("method: lora\n    config: {r: 2}", "method: peft\n    config: {peft_type: DORA}"),
         ("methods[1].config", "unknown peft_type 'DORA'",)),
    Case("peft-field-wrong-type", _suite("method: lora\n    config: {r: 2}", "method: peft\n    config: {peft_type: IA3, "
                                         "target_modules: 5}"), ("methods[1].config", "IA3 field target_modules",
                                                                 "got 5")),
    Case("method-train-is-a-list", _suite("    method: full\n", "    method: full\n    train: [1]\n"),
         ("methods[0].train", "mapping")),
    Case("sweep-not-a-list", _suite("config: {r: 2}", "sweep: {r: 2}"), ("methods[1].sweep",)),
    Case("sweep-key-not-a-string", _suite("config: {r: 2}", "sweep: {1: [2]}"), ("methods[1].sweep",)),
    Case("eval-splits-a-number", _suite("eval_splits: [test]", "eval_splits: 5"), ("datasets[0].eval_splits",)),
    Case("lr-nan", _suite("max_steps: 2,", "max_steps: 2, lr: .nan,"), ("train", "lr", "finite")),
    Case("epochs-inf", _suite("max_steps: 2,", "max_steps: 2, epochs: .inf,"), ("train", "epochs", "finite")),
    Case("overrides-a-number", _suite("methods:\n", "overrides: 5\nmethods:\n"), ("overrides",)),
    Case("override-train-a-list", _suite("methods:\n", "overrides: [{match: {method: lora}, train: [1]}]\nmethods:\n"),
         ("overrides[0].train", "mapping")),
    Case("tolerance-not-a-number", _suite("methods:\n", "tolerances: {bleu: fast}\nmethods:\n"), ("tolerances",)),
    Case("dataset-option-value-typo", _suite("- name: synthetic_e2e\n    options: {n_train_mrs: 8, n_dev_mrs: 2, n_test_mrs: 4}",
                                             "- name: e2e\n    options: {format: paperr}"),
         ("datasets[0].options", "paperr", 'did you mean "paper"')),
    Case("dataset-option-wrong-type", _suite("n_train_mrs: 8", "n_train_mrs: many"),
         ("datasets[0].options", "n_train_mrs", "many")),
    Case("dataset-option-unknown", _suite("n_train_mrs: 8", "n_train_mr: 8"), ("datasets[0].options", "n_train_mr")),
    Case("dataset-options-not-a-mapping", _suite("options: {n_train_mrs: 8, n_dev_mrs: 2, n_test_mrs: 4}", "options: 5"),
         ("datasets[0].options", "mapping")),
    Case("dataset-name-a-list", _suite("- name: synthetic_e2e", "- name: [a, b]"), ("datasets[0].name",)),
    Case("train-filter-a-number", _suite("eval_splits: [test]", "eval_splits: [test]\n    train_filter: 5"),
         ("datasets[0].train_filter",)),
    Case("seeds-not-integers", _suite("seeds: [0]", "seeds: [a]"), ("seeds",)),
    Case("only-empty-list", _suite("config: {r: 2}", "config: {r: 2}\n    only: {subset: []}"), ("methods[1].only.subset",)),
    Case("unknown-metric", _suite("metrics: {bleu: e2e_bleu}", "metrics: {bleu: e2e_blue}"),
         ("datasets[0].metrics.bleu", "e2e_blue")),
    Case("unknown-model-run", _suite("model: tiny-gpt2", "model: tiny-gpt3", "run"), ("tiny-gpt3",)),
    Case("method-option-value-typo", _suite("config: {r: 2}", "config: {r: 2}\n  - label: ad\n    method: adapter\n"
                                            "    config: {design: houslby}"),
         ("methods[2].config", "design", "houslby", 'did you mean "houlsby"')),
    Case("train-loss-typo", _suite("max_steps: 2,", "max_steps: 2, loss: token_mea,"),
         ("train.loss", 'did you mean "token_mean"')),
    Case("model-is-a-number", _suite("model: tiny-gpt2", "model: 5"), ("bad.yaml", "model")),
    Case("dataset-train-is-a-list", _suite("eval_splits: [test]", "eval_splits: [test]\n    train: [1]"),
         ("datasets[0].train", "mapping")),
    Case("train-size-zero", _suite("eval_splits: [test]", "eval_splits: [test]\n    train_sizes: [0]"),
         ("datasets[0].train_sizes",)),
]


def _hyp(content: bytes | None, *extra: str) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        p = tmp / "hyp.txt"
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
        return ["score", "--dataset", "e2e", "--split", "test", "--hyp", p, "--data-dir", DATA, *extra]
    return make


HYPOTHESES = [
    Case("hyp-missing", lambda t: ["score", "--dataset", "e2e", "--split", "test", "--hyp", t / "none.txt",
                                   "--data-dir", DATA], ("none.txt",)),
    Case("hyp-is-a-directory", _hyp(None), ("hyp.txt", "directory")),
    Case("hyp-not-utf8", _hyp(b"caf\xe9\n" * 630), ("hyp.txt", "UTF-8")),
    Case("hyp-wrong-line-count", _hyp(b"a\nb\nc\n"), ("hyp.txt", "3", "630")),
    Case("hyp-empty", _hyp(b""), ("hyp.txt",)),
    Case("hyp-unknown-split", lambda t: ["score", "--dataset", "e2e", "--split", "tset", "--hyp", t / "h.txt",
                                         "--data-dir", DATA], ("tset",)),
    Case("hyp-unknown-dataset", lambda t: ["score", "--dataset", "e2f", "--split", "test", "--hyp", t / "h.txt"],
         ("e2f",)),
    Case("hyp-n-boot-zero", _hyp(b"a\n", "--ci", "--n-boot", "0"), ("--n-boot",)),
]


def _copy_e2e(tmp: Path) -> Path:
    root = tmp / "data"
    shutil.copytree(DATA / "e2e", root / "e2e", ignore=shutil.ignore_patterns("fixtures", "prefix_tuning_format"))
    for p in (root / "e2e").rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return root


def _damaged_gz(how: str) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        root = _copy_e2e(tmp)
        p = root / "e2e" / "trainset.csv.gz"
        data = bytearray(p.read_bytes())
        if how == "flip":
            for i in range(len(data) // 2, len(data) // 2 + 64):
                data[i] ^= 0xFF
        elif how == "flip-one":  # early in the stream: zlib's own error, not gzip's CRC check
            data[1000] ^= 0x10
        else:
            data = data[: len(data) // 3]
        p.write_bytes(bytes(data))
        return ["data", "describe", "e2e", "--split", "train", "--data-dir", root]
    return make


def _damaged_csv(content: bytes) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        root = _copy_e2e(tmp)
        (root / "e2e" / "devset.csv").write_bytes(content)
        return ["data", "describe", "e2e", "--split", "dev", "--data-dir", root]
    return make


def _data_file(rel: str, content: bytes, dataset: str, split: str) -> Callable[[Path], list]:
    """A data folder holding only ``rel`` with ``content`` (the dataset's loader reads it first)."""
    def make(tmp: Path) -> list:
        p = tmp / "data" / rel
        p.parent.mkdir(parents=True)
        p.write_bytes(content)
        return ["data", "describe", dataset, "--split", split, "--data-dir", tmp / "data"]
    return make


DATA_FILES = [
    Case("webnlg-xml-garbage", _data_file("webnlg/webnlg_challenge_2017/dev/1triples/x.xml", b"<benchmark><entries>",
                                          "webnlg", "dev"), ("x.xml",)),
    Case("webnlg-xml-binary", _data_file("webnlg/webnlg_challenge_2017/dev/1triples/x.xml", bytes(range(256)),
                                         "webnlg", "dev"), ("x.xml",)),
    Case("webnlg-no-entries", _data_file("webnlg/webnlg_challenge_2017/dev/1triples/x.xml", b"<benchmark/>",
                                         "webnlg", "dev"), ("webnlg",)),
    Case("dart-json-truncated", _data_file("dart/dart-v1.1.1-full-dev.json", b'[{"tripleset": [["a", "b"',
                                           "dart", "dev"), ("dart-v1.1.1-full-dev.json",)),
    Case("dart-json-not-a-list", _data_file("dart/dart-v1.1.1-full-dev.json", b'{"a": 1}', "dart", "dev"),
         ("dart-v1.1.1-full-dev.json",)),
    Case("dart-entry-without-tripleset", _data_file("dart/dart-v1.1.1-full-dev.json", b'[{"annotations": []}]',
                                                    "dart", "dev"), ("dart-v1.1.1-full-dev.json",)),
    Case("xsum-split-garbage", _data_file("xsum/XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json", b"\x00\x01",
                                          "xsum", "test"), ("XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json",)),
    Case("xsum-split-lacks-key", _data_file("xsum/XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json", b'{"train": []}',
                                            "xsum", "test"), ("XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json",)),
    Case("e2e-train-gz-bit-flipped", _damaged_gz("flip"), ("trainset.csv.gz",)),
    Case("e2e-train-gz-truncated", _damaged_gz("truncate"), ("trainset.csv.gz",)),
    Case("e2e-dev-binary", _damaged_csv(bytes(range(256)) * 8), ("devset.csv",)),
    Case("e2e-dev-no-header", _damaged_csv(b"just,some\ntext,here\n"), ("devset.csv",)),
    Case("e2e-dev-empty", _damaged_csv(b""), ("devset.csv",)),
    Case("data-dir-missing", lambda t: ["data", "describe", "e2e", "--split", "dev", "--data-dir", t / "nodata"],
         ("nodata",)),
    Case("data-unknown-dataset", lambda t: ["data", "describe", "e2f"], ("e2f", 'did you mean "e2e"')),
    Case("data-option-typo", lambda t: ["data", "describe", "e2e", "--split", "dev", "-o", "format=paperr",
                                        "--data-dir", DATA], ("paperr",)),
    Case("data-option-no-equals", lambda t: ["data", "describe", "e2e", "-o", "format"], ("format",)),
]


def _custom_file(name: str, content: bytes, *options: str) -> Callable[[Path], list]:
    """A file of one's own (the ``custom`` dataset) holding ``content``, described as its train split."""
    def make(tmp: Path) -> list:
        p = tmp / name
        p.write_bytes(content)
        opts = [x for o in ("source=data", "target=text", *options) for x in ("-o", o)]
        return ["data", "describe", "custom", "--split", "train", "--tokenizer", "tiny-gpt2", "-o", f"train={p}", *opts]
    return make


_ROW1 = b'{"data": "a", "text": "x"}\n'
CUSTOM_FILES = [  # issue 25: file, row and problem in the one line
    Case("custom-missing-field", _custom_file("mine.jsonl", _ROW1 + b'{"data": "b"}\n'),
         ("mine.jsonl, line 2", "no field 'text'")),
    Case("custom-empty-target", _custom_file("mine.jsonl", _ROW1 + b'{"data": "b", "text": ""}\n'),
         ("mine.jsonl, line 2", "empty target")),
    Case("custom-wrong-type", _custom_file("mine.jsonl", _ROW1 + b'{"data": "b", "text": ["y"]}\n'),
         ("mine.jsonl, line 2", "'text'", "a list", "expected text")),
    Case("custom-not-utf8", _custom_file("mine.csv", b"data,text\na,x\ncaf\xe9,y\n"),
         ("mine.csv, line 3", "UTF-8")),
    Case("custom-csv-missing-column", _custom_file("mine.csv", b"data,txt\na,x\n"),
         ("mine.csv", "no field 'text'", 'did you mean "txt"')),
    Case("custom-parquet-garbage", _custom_file("mine.parquet", b"PAR1 nope"), ("mine.parquet", "parquet")),
    Case("custom-no-file-given", lambda t: ["data", "describe", "custom", "--split", "dev", "-o", "source=data"],
         ("custom", "no data", "option hf")),
]


FLAGS = [
    Case("jobs-zero", lambda t: ["run", _tiny(t), "--jobs", "0", "--results", t / "r"], ("--jobs",)),
    Case("where-no-equals", lambda t: ["run", _tiny(t), "--where", "subset", "--results", t / "r"], ("--where",)),
    Case("where-unknown-key", lambda t: ["run", _tiny(t), "--where", "subsett=0", "--results", t / "r"],
         ("subsett", 'did you mean "subset"')),
    Case("only-unknown-label", lambda t: ["run", _tiny(t), "--only", "lorra", "--results", t / "r"], ("lorra",)),
    Case("results-is-a-file", lambda t: ["run", _tiny(t), "--results", _a_file(t)], ("afile",)),
    Case("dask-without-scheduler", lambda t: ["run", _tiny(t), "--backend", "dask", "--results", t / "r"],
         ("--scheduler",)),
    Case("baseline-missing", lambda t: ["regress", "--baseline", t / "none.parquet", "--results", t],
         ("none.parquet",)),
    Case("baseline-garbage", lambda t: ["regress", "--baseline", _a_file(t), "--results", t], ("afile",)),
    Case("tolerance-negative", lambda t: ["regress", "--baseline", _a_file(t), "--tolerance", "-1"], ("--tolerance",)),
    Case("report-results-missing", lambda t: ["report", "--results", t / "none", "--out", t / "out"], ("none",)),
    Case("ls-results-is-a-file", lambda t: ["ls", "--results", _a_file(t)], ("afile",)),
    Case("compare-unknown-run", lambda t: ["compare", "aaaa", "bbbb", "--results", t], ("aaaa",)),
    Case("params-suite-missing", lambda t: ["params", t / "none.yaml"], ("none.yaml",)),
    Case("unknown-subcommand", lambda t: ["rnu"], (), lines=0),
]


def _tiny(tmp: Path) -> Path:
    p = tmp / "tiny.yaml"
    p.write_text(TINY)
    return p


def _a_file(tmp: Path) -> Path:
    p = tmp / "afile"
    p.write_bytes(b"not a folder, not parquet\n")
    return p


# ----------------------------------------------------------------------------- what validate must catch
# Mistakes that used to pass `bench validate` (issue 24): the suite then ran for hours and failed,
# or ran to the end doing something other than what was written.

WEBNLG = TINY.replace("""  - name: synthetic_e2e
    options: {n_train_mrs: 8, n_dev_mrs: 2, n_test_mrs: 4}
    eval_splits: [test]
    metrics: {bleu: e2e_bleu}""", """  - name: webnlg
    eval_splits: [test]""")


def _on_data(text: str, old: str, new: str, cmd: str = "validate") -> Callable[[Path], list]:
    """A suite on real data, checked against the shared data folder."""
    def make(tmp: Path) -> list:
        assert old in text, old
        p = tmp / "bad.yaml"
        p.write_text(text.replace(old, new))
        argv = [cmd, p, "--data-dir", DATA]
        return argv if cmd == "validate" else [*argv, "--results", tmp / "results"]
    return make


def _model_folder(config: dict, prefix: bool = False) -> Callable[[Path], list]:
    """A local model folder (config + an empty weights file): what bench validate sees of it."""
    def make(tmp: Path) -> list:
        folder = tmp / "model"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "model.safetensors").write_bytes(b"")
        p = suite_with(tmp, "model: tiny-gpt2", f"model: {folder}")
        if prefix:
            p.write_text(p.read_text().replace("method: lora", "method: prefix").replace("{r: 2}", "{length: 3}"))
        return ["validate", p]
    return make


def _no_data_here(tmp: Path) -> list:
    (tmp / "empty").mkdir()
    p = tmp / "bad.yaml"
    p.write_text(WEBNLG.replace("eval_splits: [test]", "eval_splits: [test]\n    train_sizes: [50]"))
    return ["validate", p, "--data-dir", tmp / "empty"]


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(bench.models, "_HUB_REACHABLE", False)


def _malformed_train(tmp: Path) -> list:
    root = _copy_e2e(tmp)
    (root / "e2e" / "trainset.csv.gz").unlink()
    (root / "e2e" / "trainset.csv").write_text('mr,ref\n"name[x]",fine\n"name[y]",too,many\n')
    return ["data", "describe", "e2e", "--tokenizer", "tiny-gpt2", "--data-dir", root]


def _out_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.score_file

    def exhausted(**_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(bench.score_file, "score_file", exhausted)


def _planted_checkpoint(tmp: Path) -> list:
    """A results folder whose run holds a checkpoint that would run code when unpickled."""
    import torch

    from bench.suite import expand, load_suite

    p = suite_with(tmp, "max_steps: 2,", "max_steps: 2, checkpoint_every: 1,")
    spec = next(s for s in expand(load_suite(p)) if s.method_label == "finetune")
    folder = tmp / "results" / "runs" / spec.train_key
    folder.mkdir(parents=True)
    torch.save({"payload": _Planted(tmp / "pwned")}, folder / "checkpoint.pt")
    return ["run", p, "--results", tmp / "results", "--only", "finetune", "--quiet"]


class _Planted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "ran"))


OVERRIDE = "overrides:\n  - match: {match}\n    train: {{lr: 1.0e-3}}\nmethods:\n"

SILENT = [
    Case("duplicate-train-block", _suite("decode: {beam_size", "train: {lr: 1.0e-3}\ndecode: {beam_size"),
         ("bad.yaml", "line 6: key 'train' is written twice", "lines 5 and 6")),
    Case("duplicate-train-block-run", _suite("decode: {beam_size", "train: {lr: 1.0e-3}\ndecode: {beam_size", "run"),
         ("bad.yaml", "line 6: key 'train' is written twice", "lines 5 and 6")),
    Case("duplicate-lr", _suite("max_steps: 2,", "max_steps: 2, lr: 1.0e-3, lr: 2.0e-3,"),
         ("bad.yaml", "key 'lr' is written twice", "line 5, columns")),
    Case("duplicate-key-and-other-mistakes", _suite("max_steps: 2,", "max_steps: 2, lr: 1.0e-3, lr: 2.0e-3, eval_every: 0,"),
         ("key 'lr' is written twice", "eval_every must be >= 1"), lines=2),
    Case("override-no-such-train-size", _suite("methods:\n", OVERRIDE.format(match="{train_size: 300}")),
         ("bad.yaml", "overrides[0].match {train_size: 300} selects no run", "no run has train_size 300")),
    Case("override-no-such-model", _suite("methods:\n", OVERRIDE.format(match="{model: tiny-llama}")),
         ("overrides[0].match", "selects no run", "no run has model 'tiny-llama'", "tiny-gpt2")),
    Case("override-no-such-model-run", _suite("methods:\n", OVERRIDE.format(match="{model: tiny-llama}"), "run"),
         ("overrides[0].match", "selects no run")),
    Case("override-of-a-row-that-never-runs",  # lora's `only:` names a subset the grid does not have
         _suite("config: {r: 2}", "config: {r: 2}\n    only: {subset: [1]}\n"
                "overrides:\n  - match: {method: lora}\n    train: {lr: 1.0e-3}"),
         ("overrides[0].match {method: lora} selects no run",)),
    Case("train-filter-value-matches-nothing", _on_data(WEBNLG, "eval_splits: [test]",
                                                        "eval_splits: [test]\n    train_filter: {category: [Airprot]}"),
         ("datasets[0].train_filter.category", "no example of webnlg train has category 'Airprot'",
          'did you mean "Airport"')),
    Case("train-filter-unknown-field", _on_data(WEBNLG, "eval_splits: [test]",
                                                "eval_splits: [test]\n    train_filter: {categroy: [Airport]}"),
         ("datasets[0].train_filter", "field 'categroy'", 'did you mean "category"')),
    Case("eval-filter-value-matches-nothing", _on_data(WEBNLG, "eval_splits: [test]",
                                                       "eval_splits: [test]\n    eval_filter: {seen: [maybe]}"),
         ("datasets[0].eval_filter.seen", "no example of webnlg test has seen 'maybe'")),
    Case("train-size-larger-than-split", _on_data(WEBNLG, "eval_splits: [test]",
                                                  "eval_splits: [test]\n    train_sizes: [50, 50000]"),
         ("datasets[0].train_sizes: 50000 is larger than the 18,025 examples of webnlg train",)),
    Case("train-size-larger-than-filtered-split",
         _on_data(WEBNLG, "eval_splits: [test]",
                  "eval_splits: [test]\n    train_sizes: [5000]\n    train_filter: {category: [Airport]}", "run"),
         ("datasets[0].train_sizes: 5000 is larger than", "after train_filter")),
    Case("train-size-leaves-no-dev-split", _suite("eval_splits: [test]", "eval_splits: [test]\n    train_sizes: [20]"),
         ("datasets[0]: train size 20, subset 0", "for a dev split of 6", "lower train_size or dev_fraction")),
    Case("data-not-reachable-is-a-note", _no_data_here, (), rc=0,
         warns=("datasets[0] (webnlg): train_sizes not checked", "no webnlg/ folder")),
    Case("model-unknown-alias", _suite("model: tiny-gpt2", "model: no-such-model"),
         ("bad.yaml", "model 'no-such-model': unknown model")),
    Case("model-alias-typo", _suite("model: tiny-gpt2", "model: tiny-lama"),
         ("model 'tiny-lama'", 'did you mean "tiny-llama"')),
    Case("model-folder-without-config", _suite("model: tiny-gpt2", "model: /etc"),
         ("model '/etc'", "no config.json")),
    Case("model-folder-missing", _suite("model: tiny-gpt2", "model: ./no/such/folder"),
         ("model './no/such/folder'", "no such folder")),
    Case("model-architecture-not-a-generator", _model_folder({"model_type": "bert"}),
         ("'finetune' (full) cannot wrap", "model_type 'bert'"), lines=2),
    Case("model-architecture-found-from-its-structure", _model_folder({"model_type": "qwen2"}), (), rc=0, lines=0),
    Case("model-attention-not-for-the-prefix", _model_folder({"model_type": "gemma2"}, prefix=True),
         ("'lora' (prefix) cannot wrap", "gemma2 soft-caps its attention logits")),
    Case("model-hub-id-offline-is-a-warning", _suite("model: tiny-gpt2", "model: someone/some-model"), (), rc=0,
         warns=("model 'someone/some-model': not checked", "hub is unreachable"), patch=_offline),
    Case("checkpoint-every-negative", _suite("max_steps: 2,", "max_steps: 2, checkpoint_every: -5,"),
         ("train", "checkpoint_every must be >= 0", "-5")),
    Case("eval-every-zero", _suite("max_steps: 2,", "max_steps: 2, eval_every: 0,"), ("train", "eval_every must be >= 1")),
    Case("warmup-negative", _suite("max_steps: 2,", "max_steps: 2, warmup_steps: -1,"), ("warmup_steps must be >= 0",)),
    Case("decode-batch-zero", _suite("max_new_tokens: 8", "max_new_tokens: 8, batch_size: 0"),
         ("decode", "batch_size must be >= 1")),
    Case("max-new-tokens-absurd", _suite("max_new_tokens: 8", "max_new_tokens: 10000000"),
         ("decode.max_new_tokens: 10000000", "more than the 512 positions of model 'tiny-gpt2'")),
    Case("seed-beyond-2-32", _suite("seeds: [0]", "seeds: [0, 4294967296]"),
         ("seeds: 4294967296 is out of range", "[0, 2**32 - 1]")),
    Case("seed-negative", _suite("seeds: [0]", "seeds: [-1]"), ("seeds: -1 is out of range",)),
    Case("describe-malformed-train-exits-2", _malformed_train,
         ("e2e train: did not load", "trainset.csv, line 3")),
    Case("e2e-train-gz-one-bit-flipped", _damaged_gz("flip-one"), ("trainset.csv.gz", "damaged compressed data")),
    Case("report-out-is-a-file", lambda t: ["report", "--results", t, "--out", _a_file(t)],
         ("--out", "afile", "is a file, not a folder")),
    Case("score-out-of-memory", _hyp(b"a\n"), ("`bench score` ran out of memory", "lower --n-boot"), rc=1,
         patch=_out_of_memory),
    Case("checkpoint-planted-pickle-refused", _planted_checkpoint, (), rc=0,
         warns=("checkpoint.pt: checkpoint refused", "weights_only=True", "restarts from step 0")),
]

TABLE = SUITES + HYPOTHESES + DATA_FILES + CUSTOM_FILES + FLAGS + SILENT
NEEDS_DATA = {c.id for c in HYPOTHESES + DATA_FILES} | {
    c.id for c in SILENT if c.id.startswith(("train-", "eval-filter", "describe-", "e2e-", "score-"))}


def test_the_table_is_large_enough() -> None:
    assert len({c.id for c in TABLE}) == len(TABLE) >= 40


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_malformed_input_is_one_line(case: Case, tmp_path: Path, request: pytest.FixtureRequest,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    global DATA
    if case.id in NEEDS_DATA:
        DATA = request.getfixturevalue("data_dir")
    if case.patch is not None:
        case.patch(monkeypatch)
    rc, _, err = cli(case.argv(tmp_path))
    assert "Traceback" not in err
    assert rc == case.rc, err
    warnings = [line for line in err.splitlines() if line.startswith("bench: warning:")]
    for s in case.warns:
        assert any(s in w for w in warnings), f"{s!r} not in {warnings!r}"
    assert not (tmp_path / "pwned").exists()  # no planted pickle ran
    if case.rc == 0:
        assert not errors(err), err
        return
    lines = errors(err) if case.lines != 0 else [err.strip().splitlines()[-1]]
    if case.lines is not None and case.lines > 0:
        assert len(lines) == case.lines, err
    assert lines, err
    if case.id == "jobs-zero":  # refused before the run plan is printed
        assert err.strip().count("\n") == 0, err
    text = "\n".join(lines)
    for s in case.says:
        assert s in text, f"{s!r} not in {text!r}"


# ----------------------------------------------------------------------------- damaged results


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(suite, results with two done runs, baseline of those results): built once, copied per test."""
    root = tmp_path_factory.mktemp("stored")
    suite = _tiny(root)
    results = root / "results"
    rc, _, err = cli(["run", suite, "--results", results, "--quiet"])
    assert rc == 0, err
    baseline = root / "baseline.parquet"
    rc, _, err = cli(["regress", "--update", "--baseline", baseline, "--results", results, "--suite", suite])
    assert rc == 0, err
    return suite, results, baseline


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (damage the run folder, the file the warning names, the stage `bench run` starts from)
    "meta-is-a-list": (lambda f: (f / "meta.json").write_text("[1, 2]"), "meta.json", "decoded"),
    "meta-corrupt-json": (lambda f: (f / "meta.json").write_text('{"status": "do'), "meta.json", "decoded"),
    "meta-other-schema": (lambda f: (f / "meta.json").write_text('{"schema_version": 999}'), "meta.json", "decoded"),
    "meta-binary": (lambda f: (f / "meta.json").write_bytes(bytes(range(256))), "meta.json", "decoded"),
    "spec-is-a-list": (lambda f: (f / "spec.json").write_text("[]"), "spec.json", "decoded"),
    "spec-missing": (lambda f: (f / "spec.json").unlink(), "spec.json", "decoded"),
    "spec-lacks-fields": (lambda f: (f / "spec.json").write_text('{"schema_version": 1, "spec": {"suite": "tiny"}}'),
                          "spec.json", "decoded"),
    "metrics-truncated": (lambda f: _truncate(f / "metrics.parquet"), "metrics.parquet", "decoded"),
    "metrics-garbage": (lambda f: (f / "metrics.parquet").write_bytes(b"PAR1 nope"), "metrics.parquet", "decoded"),
    "predictions-truncated": (lambda f: _truncate(f / "predictions.parquet"), "predictions.parquet", "trained"),
    "weights-truncated": (lambda f: _truncate(f / "trainable.safetensors"), "trainable.safetensors", "new"),
    "weights-garbage": (lambda f: (f / "trainable.safetensors").write_bytes(b"\xff" * 64), "trainable.safetensors",
                        "new"),
}


def _damaged_copy(stored: tuple[Path, Path, Path], tmp: Path, how: str) -> tuple[Path, Path, dict[str, float]]:
    """A copy of the stored results with the first run folder damaged ``how``; also the
    modification times of every file of the other run."""
    _, results, _ = stored
    copy = tmp / "results"
    shutil.copytree(results, copy)
    first, second = sorted(p for p in (copy / "runs").iterdir() if p.is_dir())
    DAMAGE[how][0](first)
    return copy, first, {p.name: p.stat().st_mtime_ns for p in second.iterdir()}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_run_folder(how: str, stored: tuple[Path, Path, Path], tmp_path: Path) -> None:
    suite, _, baseline = stored
    results, folder, other = _damaged_copy(stored, tmp_path, how)
    _, named, start = DAMAGE[how]

    rc, out, err = cli(["ls", "--results", results])
    assert rc == 0 and "Traceback" not in err
    assert out.count("damaged") == 1 and folder.name in out
    assert named in err

    rc, _, err = cli(["report", suite, "--results", results, "--out", tmp_path / "out"])
    assert rc == 1 and "missing" in err and named in err and "warning" in err

    rc, out, err = cli(["regress", "--baseline", baseline, "--results", results, "--suite", suite])
    assert rc == 1 and "missing" in out and named in err

    second = next(p for p in (results / "runs").iterdir() if p.is_dir() and p != folder)
    rc, _, err = cli(["compare", folder.name, second.name, "--results", results])
    if named in ("spec.json", "predictions.parquet"):  # what compare reads
        assert rc == 2 and len(errors(err)) == 1 and folder.name in err, err
    else:
        assert rc == 0, err

    rc, _, err = cli(["export", folder.name, tmp_path / "export", "--format", "safetensors", "--results", results])
    if named in ("spec.json", "trainable.safetensors"):  # what export reads
        assert rc == 2 and len(errors(err)) == 1 and folder.name in err, err
    else:
        assert rc == 0, err

    rc, _, err = cli(["run", suite, "--results", results, "--quiet"])
    assert rc == 0, err
    assert "1 done, 1 cached" in err
    assert {p.name: p.stat().st_mtime_ns for p in second.iterdir()} == other  # untouched
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "done" and meta["attempts"][-1]["from"] == start
    assert named in meta["attempts"][-1]["damaged"]
    rc, out, _ = cli(["ls", "--results", results])
    assert "damaged" not in out
    rc, out, _ = cli(["regress", "--baseline", baseline, "--results", results, "--suite", suite])
    assert rc == 0, out


def test_runs_is_a_file(stored: tuple[Path, Path, Path], tmp_path: Path) -> None:
    suite, _, baseline = stored
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs").write_text("oops")
    for argv in (["ls", "--results", results],
                 ["report", suite, "--results", results, "--out", tmp_path / "out"],
                 ["regress", "--baseline", baseline, "--results", results, "--suite", suite],
                 ["run", suite, "--results", results, "--quiet"]):
        rc, _, err = cli(argv)
        assert rc == 2 and len(errors(err)) == 1 and "runs" in errors(err)[0], (argv, err)


# ----------------------------------------------------------------------------- mutated suites

MUTANTS = [5, -1, 0, "x", "", [], [1], ["a"], {}, {"a": 1}, None, True, 1.5, float("nan"), [[1]], {"x": [1, 2]},
           "paper", 1e300]


def _paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def test_mutated_suites_never_traceback(tmp_path: Path) -> None:
    """300 seeded random mutations of a valid suite (a node replaced by another type, or an
    extra key): validation either passes or raises BenchError, never anything else."""
    import copy
    import random

    import yaml

    from bench.errors import BenchError
    from bench.suite import expand, load_suite

    base = yaml.safe_load(TINY)
    rng = random.Random(13)
    path = tmp_path / "m.yaml"
    rejected = 0
    for _ in range(300):
        suite = copy.deepcopy(base)
        node = rng.choice([p for p in _paths(suite) if p])
        parent = suite
        for k in node[:-1]:
            parent = parent[k]
        if rng.random() < 0.8 or not isinstance(parent, dict):
            parent[node[-1]] = copy.deepcopy(rng.choice(MUTANTS))
        else:
            parent[rng.choice(["bogus", "options", "only", "sweep", "train", "decode", "config"])] = copy.deepcopy(
                rng.choice(MUTANTS))
        path.write_text(yaml.safe_dump(suite))
        try:
            expand(load_suite(path))
        except BenchError as e:
            rejected += 1
            assert all(line.startswith(str(path)) for line in str(e).splitlines()), str(e)
    assert rejected > 150  # most mutations are mistakes, and they are reported


def test_java_that_cannot_start_is_one_line_naming_the_memory_limit() -> None:
    """Under a memory limit the JVM exits 1, often with nothing on stderr (`bench score` then said
    only "CoreNLP PTBTokenizer failed: 1")."""
    from bench.metrics.meteor import java_failure

    silent = java_failure("CoreNLP PTBTokenizer", 1, b"")
    assert "Java could not start" in silent and "ulimit -v" in silent and "\n" not in silent
    heap = java_failure("METEOR", 1, b"Error occurred during initialization of VM\nCould not reserve enough space\n")
    assert "Java could not start" in heap and "Could not reserve enough space" in heap
    assert java_failure("METEOR", 3, b"Exception in thread main\nbad input line 4\n") == "METEOR failed: bad input line 4"


@pytest.mark.parametrize("how", ["flip-one", "flip", "truncate"])
def test_a_file_damaged_after_validation_fails_the_run_naming_it(how: str, tmp_path: Path,
                                                                 data_dir: Path) -> None:
    """The run's own data loading (not only `bench validate` / `bench data`) turns a damaged
    gzip into one line naming the file: it can be damaged between validation and the run."""
    from bench.errors import DataError
    from bench.pipeline import load_eval_items, load_train_data
    from bench.suite import expand, load_suite

    global DATA
    DATA = data_dir
    argv = _damaged_gz(how)(tmp_path)
    root = Path(argv[-1])
    suite = tmp_path / "e2e.yaml"
    suite.write_text(TINY.replace("synthetic_e2e\n    options: {n_train_mrs: 8, n_dev_mrs: 2, n_test_mrs: 4}",
                                  "e2e\n    train_sizes: [10]"))
    spec = expand(load_suite(suite))[0]
    with pytest.raises(DataError, match=r"trainset\.csv\.gz") as info:
        load_train_data(spec, root)
    assert "\n" not in str(info.value)
    assert len(load_eval_items(spec, "test", root)) == 630  # the intact files still load
