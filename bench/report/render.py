"""Assemble a suite's report: markdown tables into ``reports/<suite>.md``, figures beside it as
``reports/<suite>_<stem>.png``, and with ``--format latex`` the tables as booktabs LaTeX in
``reports/<suite>.tex`` (with the figures as ``figure`` floats). Reads cached results only; never trains, decodes or scores."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, did_you_mean
from bench.report import tables
from bench.report.claims import ClaimReport, claims_report
from bench.report.curves import curve_figures
from bench.report.data import ResultSet, collect_all, collect_suite
from bench.report.figures import ReportFigure, build_figures
from bench.report.latex import latex_document, latex_lines, latex_table
from bench.report.paired import paired_section
from bench.report.reference import reference_settings


@dataclass(frozen=True)
class ReportOutput:
    suite: str
    markdown: Path
    figures: tuple[Path, ...]
    latex: Path | None = None  # with --format latex


# What `bench report --format` can write; the markdown report (claims, figures, the lists of
# failed and missing runs) is always written, the others are the tables in another form.
FORMATS: tuple[str, ...] = ("md", "latex")


def parse_formats(value: str | None) -> tuple[str, ...]:
    """``--format md,latex`` as a tuple of known formats (one-line error with a did-you-mean)."""
    names = [v.strip() for v in (value or "md").split(",") if v.strip()] or ["md"]
    for n in names:
        if n not in FORMATS:
            raise BenchError(f"--format: unknown report format {n!r}{did_you_mean(n, FORMATS)}; "
                             f"one or more of {', '.join(FORMATS)}, comma-separated")
    return tuple(dict.fromkeys(names))


def _counts(rs: ResultSet) -> str:
    not_run = int((rs.missing["reason"].astype(str).str.startswith("not in the results cache")).sum()) \
        if not rs.missing.empty else 0
    total = len(rs.runs) + not_run
    done = int((rs.runs["status"] == "done").sum()) if not rs.runs.empty else 0
    return (f"Runs: {total} ({done} done, {len(rs.failed)} failed, {len(rs.missing)} missing or incomplete). "
            "Every number is read from cached results; `bench report` never trains.")


def _reference_line(stats: tables.RefStats, *, with_claims: bool = False) -> str:
    """Whether (and why not) the layout tables carry paper values. With claim sections, the line is
    scoped to the tables: the claims always show the paper's numbers beside ours, for context."""
    if stats.cells == 0:
        return ""
    if stats.matched:
        return (f"Paper values (ACL 2021; arXiv v1 in brackets where it differs) are shown beside {stats.matched} "
                f"of {stats.cells} cells, where model, dataset, split, method label and metric match and the run "
                "trained on the full split; Δ = ours − paper, on the paper's scale.")
    models, datasets = reference_settings()
    ours_m = sorted({m for m, _ in stats.settings})
    ours_d = sorted({d for _, d in stats.settings})
    if not set(ours_m) & set(models) or not set(ours_d) & set(datasets):
        why = (f"the paper reports {', '.join(models)} on {', '.join(datasets)}; "
               f"these runs use {', '.join(ours_m)} on {', '.join(ours_d)}")
    else:
        why = ("no run here has a published setting (the paper's method labels such as finetune or "
               "prefix_0.1pct, its splits, full training data)")
    if with_claims:
        return (f"In the layout tables below the claims, no paper value is shown beside our cells: {why}. "
                "The claim sections give the paper's numbers beside ours, for context, not as a match.")
    return f"No paper value is shown: {why}."


def figure_lines(figures: Sequence[ReportFigure], files: Sequence[str]) -> list[str]:
    """The "Figures" section: each PNG (by file name, relative to the report) and its caption;
    the LaTeX export turns the same lines into ``figure`` floats."""
    if not figures:
        return []
    body = ["## Figures", ""]
    for i, (fig, name) in enumerate(zip(figures, files), 1):
        body += [f"![Figure {i}]({name})", "", f"*Figure {i}. {fig.caption}*", ""]
    return body


def render_markdown(rs: ResultSet, figures: list[ReportFigure], *, figure_files: list[str],
                    claims: ClaimReport | None = None) -> str:
    """The report text; figures are referenced by file name (relative to the markdown file)."""
    stats = tables.RefStats()
    body: list[str] = list(claims.lines) if claims else []
    scores = rs.scores
    body += tables.main_tables(scores, rs.runs, stats=stats)
    body += paired_section(scores, rs.runs, reference=rs.compare_reference, metrics=rs.compare_metrics)
    body += tables.extrapolation_tables(scores, rs.runs, stats=stats)
    body += tables.table5(scores, rs.runs, stats=stats)
    body += tables.low_data_tables(scores)
    body += figure_lines(figures, figure_files)
    body += tables.efficiency_table(rs.runs)
    body += tables.failed_and_missing(rs.failed, rs.missing, rs.unlisted)
    body += tables.signatures(scores)
    body += tables.provenance(rs.runs)

    head = [f"# Report: {rs.suite}", "", _counts(rs)]
    line = _reference_line(stats, with_claims=bool(claims and claims.lines))
    if line:
        head += ["", line]
    if scores.empty:
        head += ["", "No metric values are stored for this suite yet (`bench run` the suite first)."]
    if rs.notes:
        head += ["", "Not comparable:", *[f"- {n}" for n in rs.notes]]
    text = "\n".join(head + [""] + body).rstrip() + "\n"
    return text


def render_latex(rs: ResultSet, claims: ClaimReport | None = None, *, figures: Sequence[ReportFigure] = (),
                 figure_files: Sequence[str] = ()) -> str:
    """The report's tables (the claim sections, Table 2/3 layouts, Table 4, Table 5, low-data,
    efficiency) as booktabs LaTeX: the same rows as the markdown, rendered by ``latex_table``;
    a claim's verdict and rules are the notes under its tables, a section without a table (claim
    5) is a paragraph, and ``figures`` (written as ``figure_files``) are ``figure`` floats.
    ``claims``: the sections the markdown shows, made with ``recorded_table`` (computed here
    where not given)."""
    stats = tables.RefStats()
    scores = rs.scores
    if claims is None:
        claims = claims_report(scores, rs.runs, rs.missing, table=tables.recorded_table)
    body = latex_lines(claims.lines)
    body += tables.main_tables(scores, rs.runs, stats=stats, table=latex_table)
    body += tables.extrapolation_tables(scores, rs.runs, stats=stats, table=latex_table)
    body += tables.table5(scores, rs.runs, stats=stats, table=latex_table)
    body += tables.low_data_tables(scores, table=latex_table)
    body += figure_lines(figures, figure_files)
    body += tables.efficiency_table(rs.runs, table=latex_table)
    # the markdown's line on paper values speaks of its cells (Δ beside ours); the LaTeX marks
    # them by column, so only the line saying why none is shown is kept
    head = [_counts(rs), _reference_line(stats, with_claims=bool(claims.lines)) if not stats.matched else "",
            *[f"Not comparable: {n}" for n in rs.notes]]
    return latex_document(body, suite=rs.suite, head=head)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_report(rs: ResultSet, *, out: Path, formats: tuple[str, ...] = ("md",)) -> ReportOutput:
    """Write ``out/<suite>.md`` and its figures (and ``out/<suite>.tex`` with ``latex`` in
    ``formats``); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = _safe(rs.suite)
    # recorded tables: the markdown text, kept so that the LaTeX export reuses the claims' statistics
    claims = claims_report(rs.scores, rs.runs, rs.missing, table=tables.recorded_table)
    figures = claims.figures + build_figures(rs) + curve_figures(rs)  # curves: only where losses are recorded
    files = [f"{stem}_{_safe(f.stem)}.png" for f in figures]
    paths = []
    for fig, name in zip(figures, files):
        path = out / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp.png")
        fig.figure.savefig(tmp, format="png")
        os.replace(tmp, path)
        paths.append(path)
    md = out / f"{stem}.md"
    _write_text(md, render_markdown(rs, figures, figure_files=files, claims=claims))
    tex = None
    if "latex" in formats:
        tex = out / f"{stem}.tex"
        _write_text(tex, render_latex(rs, claims, figures=figures, figure_files=files))
    return ReportOutput(rs.suite, md, tuple(paths), tex)


def report(*, results: Path, suite: Path | None = None, out: Path = Path("reports"),
           formats: tuple[str, ...] = ("md",)) -> list[ReportOutput]:
    """``bench report``: one report for ``suite``, or one per suite name stored in ``results``;
    ``formats`` (``parse_formats``) adds the tables in LaTeX."""
    formats = parse_formats(",".join(formats))  # before any file is read or written
    if suite is not None:
        sets = [collect_suite(suite=suite, results=results)]
    else:
        if not Path(results).exists():
            raise BenchError(f"results directory not found: {results}")
        sets = collect_all(results=results)
        if not sets:
            raise BenchError(f"no runs in {results} (run a suite first: `bench run suites/quickstart.yaml`)")
    return [write_report(rs, out=Path(out), formats=formats) for rs in sets]

