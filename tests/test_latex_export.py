"""Results for one's own paper: ``bench report --format latex`` (the report's tables as booktabs
LaTeX, the paper's values in marked columns of their own) and ``bench ls --format csv|json``
(one tidy row per run x split x group x metric), from small results trees written with the
store (no training)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from test_report import ablation_tree, e2e_scores, table2_tree, write_run

from bench.cli import main
from bench.report.claims import claims_report
from bench.report.data import TIDY_COLUMNS, collect_all
from bench.report.latex import PAPER_NOTE, escape, inline, latex_table
from bench.report.render import render_latex, render_markdown
from bench.report.tables import ScoreCell


def _tables(tex: str) -> list[str]:
    return re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, flags=re.DOTALL)


def _body_rows(table: str) -> list[str]:
    body = table.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [r for r in body.splitlines() if r.strip()]


def test_latex_tables_are_booktabs_with_the_papers_values_marked(tmp_path: Path) -> None:
    table2_tree(tmp_path)
    write_run(tmp_path, label="top_2%", method="top_k", scores=e2e_scores(0.66), params=(50, 50, 354_823_168))
    [rs] = collect_all(results=tmp_path)
    tex = render_latex(rs)
    claims = [t for t in _tables(tex) if "The paper's claims, tested" in t]  # test_latex_claim_sections
    tables = [t for t in _tables(tex) if t not in claims]
    assert [re.search(r"\\caption\{(.*)\}", t).group(1) for t in tables] == [
        "Table 2 layout: table-to-text --- E2E (test)", "Table 2 layout: table-to-text --- WebNLG (test)",
        "Efficiency"]
    for t in tables:
        assert t.count("\\toprule") == t.count("\\midrule") == t.count("\\bottomrule") == 1
        assert re.search(r"\\label\{tab:golden-\d\}", t)
    e2e = tables[0]
    # the same rows as the markdown's E2E table (finetune, two lora settings, prefix, top_2%)
    markdown = render_markdown(rs, [], figure_files=[])
    md_rows = markdown.split("### E2E (test)")[1].split("\n\n")[2].splitlines()[2:]
    assert len(_body_rows(e2e)) == len(md_rows) == 5
    # labels and percentages escaped; no markdown left
    assert "prefix\\_0.1pct & gpt2-medium & 7.24\\% (25,700,000) & 0.0693\\% (245,760)" in e2e
    assert "top\\_2\\% & gpt2-medium" in e2e
    assert "|" not in e2e and "· paper" not in tex and "±" not in tex and "Δ" not in tex
    # the paper's values: an italic column after each score column that shows one, and said so
    assert "BLEU & \\textit{paper} & NIST & \\textit{paper}" in e2e
    assert "70.30 $\\pm$ 0.42 (n=2) & \\textit{70.3 [v1 69.7]}" in e2e
    assert "finetune & gpt2-medium & 100\\% (354,823,168) & 100\\% (354,823,168) & 68.80 & \\textit{68.8 [v1 68.2]}" \
        in e2e
    assert PAPER_NOTE in e2e and PAPER_NOTE not in tables[2]
    assert "\\begin{tabular}{llll" + "r" * 10 + "}" in e2e
    for env in ("table", "tabular", "adjustbox"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") == 3 + len(claims)


def test_latex_claim_sections(tmp_path: Path) -> None:
    """The claim sections' tables go into the .tex too: the paper's values in their own italic
    column, the verdict and its rule as notes under the table they read."""
    table2_tree(tmp_path)
    [rs] = collect_all(results=tmp_path)
    tex = render_latex(rs)
    claims = [t for t in _tables(tex) if "The paper's claims, tested" in t]
    captions = [re.search(r"\\caption\{(.*)\}", t).group(1) for t in claims]
    claim1 = "The paper's claims, tested --- Claim 1 --- prefix-tuning vs fine-tuning and adapters (Table 2 layout)"
    assert captions[:2] == [claim1, claim1]
    table2, training = claims[:2]
    assert "method & trained & stored & E2E BLEU & \\textit{paper} & E2E NIST & \\textit{paper}" in table2
    # ours and the paper's value apart (the markdown writes "70.0 (70.3)" into one cell)
    assert "PREFIX (0.1\\%) & 7.24\\% (25,700,000) & 0.0693\\% (245,760) & 70.0 & \\textit{70.3} &" in table2
    assert "70.0 (70.3)" in "\n".join(claims_report(rs.scores, rs.runs, rs.missing).lines) and "(70.3)" not in tex
    assert PAPER_NOTE in table2 and PAPER_NOTE not in training
    # the training table: its intro (a line ending in a colon) and the verdict are notes under it
    assert "dev loss: untrained $\\rightarrow$ best" in training
    notes = training.split("{\\footnotesize", 1)[1]
    assert notes.index("How far each row trained") < notes.index("\\textbf{Verdict: ")
    assert not re.search(r"[^\x00-\x7f]", tex), "every non-ASCII symbol is escaped for LaTeX"


def test_latex_sections_without_a_table_are_paragraphs(tmp_path: Path) -> None:
    """The verdicts' rules and claim 5's reason (no table to sit under) are not dropped: each is a
    paragraph headed by its section, outside every float."""
    table2_tree(tmp_path)
    [rs] = collect_all(results=tmp_path)
    tex = render_latex(rs)
    outside = re.sub(r"\\begin\{table\}.*?\\end\{table\}", "", tex, flags=re.DOTALL)
    paragraphs = dict(re.findall(r"\\paragraph\{(.*?)\}\n(.*?)\n\n", outside, flags=re.DOTALL))
    assert set(paragraphs) == {"The paper's claims, tested",
                               "The paper's claims, tested --- Claim 5 --- summarization: not testable here"}
    assert paragraphs["The paper's claims, tested"].startswith("Verdicts follow fixed rules")
    claim5 = paragraphs["The paper's claims, tested --- Claim 5 --- summarization: not testable here"]
    assert claim5.startswith("Paper: On summarization (XSUM, BART-large)") and "No verdict: " in claim5
    assert all(line.endswith("\\par") for p in paragraphs.values() for line in p.splitlines())


def test_latex_low_data_and_table5_layouts(tmp_path: Path) -> None:
    ablation_tree(tmp_path)
    [rs] = collect_all(results=tmp_path)
    tex = render_latex(rs)
    captions = re.findall(r"\\caption\{(.*)\}", tex)
    assert "Table 5 layout: embedding-only / infix / prefix --- E2E (test)" in captions
    assert "Low-data (Figure 3 numbers) --- E2E (test): BLEU, mean $\\pm$ std over subsets $\\times$ seeds" in captions
    low = next(t for t in _tables(tex) if "Low-data (Figure 3 numbers) --- E2E (test)" in t)
    assert "method & model & 50 examples & 100 examples & 200 examples \\\\" in low
    assert all("(n=4)" in row for row in _body_rows(low))  # 2 subsets x 2 seeds, as the markdown


def test_latex_table_writer_and_escapes() -> None:
    cells = [["a_b", ScoreCell("1.0 · paper 2, Δ -1.0", "1.0", "2"), "3"], ["c", ScoreCell("4.0", "4.0"), "5"]]
    [block] = latex_table(["x", "y", "z%"], cells, numeric_from=1)
    assert block.has_paper
    assert "x & y & \\textit{paper} & z\\% \\\\" in block
    assert "a\\_b & 1.0 & \\textit{2} & 3 \\\\" in block and "c & 4.0 &  & 5 \\\\" in block
    assert escape("50% of {a}_b & #1 ~ ^ \\") == \
        "50\\% of \\{a\\}\\_b \\& \\#1 \\textasciitilde{} \\textasciicircum{} \\textbackslash{}"


def test_cli_report_format_latex_writes_tex_beside_markdown(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    table2_tree(tmp_path / "results")
    out = tmp_path / "reports"
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(out), "--format", "md,latex"]) == 0
    assert (out / "golden.md").is_file() and (out / "golden.tex").is_file()
    tex = (out / "golden.tex").read_text(encoding="utf-8")
    assert "\\toprule" in tex
    # the report's figures are figure floats: the PNG written beside it, with the markdown's caption
    md = (out / "golden.md").read_text(encoding="utf-8")
    pngs = re.findall(r"^!\[Figure \d+\]\((.+)\)$", md, flags=re.MULTILINE)
    floats = re.findall(r"\\begin\{figure\}\[htbp\]\n\\centering\n\\includegraphics\[width=\\linewidth\]"
                        r"\{(.+?)\}\n\\caption\{(.+?)\}\n\\label\{fig:golden-(\d+)\}\n\\end\{figure\}", tex)
    assert pngs and [f for f, _, _ in floats] == pngs and all((out / f).is_file() for f in pngs)
    assert [int(n) for _, _, n in floats] == list(range(1, len(pngs) + 1))
    first = re.search(r"^\*Figure 1\. (.*)\*$", md, flags=re.MULTILINE).group(1)
    assert floats[0][1] == inline(first)
    capsys.readouterr()
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "r2"),
                 "--format", "latx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("bench: error: --format: unknown report format 'latx' (did you mean \"latex\"?); "
                    "one or more of md, latex, comma-separated")]
    assert not (tmp_path / "r2").exists()


# ----------------------------------------------------------------------------- bench ls --format


def _ls(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["ls", *args]) == 0
    return capsys.readouterr().out


def test_ls_csv_is_one_tidy_row_per_run_split_group_metric(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    table2_tree(tmp_path)
    write_run(tmp_path, label="prefix", method="prefix", train_size=50, subset=1, seed=2, scores=e2e_scores(0.5),
              suite="lowdata")
    tidy = pd.read_csv(io.StringIO(_ls(["--results", str(tmp_path), "--format", "csv"], capsys)))
    assert list(tidy.columns) == list(TIDY_COLUMNS)
    # done runs only: 5 E2E runs x 5 metrics + WebNLG 3 groups x 3 metrics + the low-data run's 5
    assert len(tidy) == 5 * 5 + 9 + 5
    assert not tidy.duplicated(["train_key", "split", "group", "metric"]).any()
    web = tidy[tidy["dataset"] == "webnlg"]
    assert sorted(set(web["group"])) == ["all", "seen", "unseen"] and len(web) == 9
    low = tidy[tidy["suite"] == "lowdata"]
    assert set(low["train_size"]) == {50} and set(low["subset"]) == {1} and set(low["seed"]) == {2}
    assert tidy[tidy["suite"] == "golden"]["train_size"].isna().all()  # full split: empty
    row = tidy[(tidy["label"] == "finetune") & (tidy["metric"] == "bleu")].iloc[0]
    assert (row["method"], row["model"], row["split"], row["value"]) == ("full", "gpt2-medium", "test", 0.688)
    assert len(row["train_key"]) == 16 and row["score_key"] == row["train_key"] + "s"

    only = pd.read_csv(io.StringIO(_ls(["--results", str(tmp_path), "--format", "csv", "--suite", "lowdata"],
                                       capsys)))
    assert len(only) == 5

    doc = json.loads(_ls(["--results", str(tmp_path), "--format", "json"], capsys))
    assert doc["schema_version"] == 1 and doc["columns"] == list(TIDY_COLUMNS) and len(doc["rows"]) == len(tidy)
    first = doc["rows"][0]
    assert first["ci_low"] is None and isinstance(first["value"], float) and isinstance(first["seed"], int)

    path = tmp_path / "out" / "scores.csv"
    assert main(["ls", "--results", str(tmp_path), "--format", "csv", "--out", str(path)]) == 0
    assert len(pd.read_csv(path)) == len(tidy)


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "cvs"], "--format: unknown format 'cvs' (did you mean \"csv\"?); one of table, csv, json"),
    (["--format", "csv", "--failed"], "--format csv lists scores, and failed runs have none; drop --failed or --format"),
])
def test_ls_bad_format_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                   message: str) -> None:
    assert main(["ls", "--results", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"bench: error: {message}"]
