"""The report's tables as booktabs LaTeX: ``bench report --format latex`` writes
``reports/<suite>.tex`` beside the markdown.

The tables are not laid out a second time: ``bench.report.tables`` renders the same rows with
:func:`latex_table` as its table writer, and :func:`latex_document` turns the markdown around
them (headings, notes) into one ``table`` float per table, captioned by its headings, with its
notes below it; notes with no table in their section (the verdicts' rules, claim 5's reason)
are a paragraph, and the report's figures are ``figure`` floats with the markdown's captions.
The paper's values, which the markdown writes into our cells ("· paper 69.7,
Δ ..."), get a column of their own headed *paper* and set in italics, so that no number of
the paper can pass for ours. Cells keep what the markdown shows (mean ± std over subsets x
seeds, with n). The file is a fragment to ``\\input`` into a paper; it needs ``booktabs``,
``adjustbox`` (wide tables shrink to the line width, narrow ones stay as they are) and ``graphicx``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from bench.report.tables import RecordedTable, ScoreCell

# Characters LaTeX treats specially, then the non-ASCII symbols the markdown uses.
_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
    "−": r"$-$", "†": r"\dag{}", "·": r"$\cdot$", "⟨": r"$\langle$", "⟩": r"$\rangle$", "≥": r"$\geq$",
    "≤": r"$\leq$", "…": r"\ldots{}", "—": "---", "–": "--", "≈": r"$\approx$", "→": r"$\rightarrow$",
}
_SPECIAL = re.compile("|".join(re.escape(c) for c in _ESCAPES))
# markdown inline marks the report's notes use: `code`, **bold**, *italic*, "quoted"
_INLINE = re.compile(r'`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*|"([^"]+)"')
# the markdown's figure lines: "![Figure 3](suite_x.png)", then "*Figure 3. caption*"
_IMAGE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)$")
_FIGURE_CAPTION = re.compile(r"^\*Figure \d+\. (.*)\*$")

PAPER_HEADER = r"\textit{paper}"
PAPER_NOTE = (r"Columns headed \textit{paper} (in italics) hold the values published by Li \& Liang (2021), "
              "not ours; every other number is read from this results set.")


class LatexBlock(str):
    """A finished LaTeX ``tabular`` among the markdown lines of a report section."""

    has_paper: bool = False


def escape(text: object) -> str:
    """``text`` with LaTeX's special characters escaped (symbols as their LaTeX forms)."""
    return _SPECIAL.sub(lambda m: _ESCAPES[m.group(0)], str(text))


def inline(text: str) -> str:
    """A markdown note as LaTeX: escaped, with `code`, **bold** and *italic* kept as such."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos : m.start()]))
        code, bold, italic, quoted = m.groups()
        out.append(rf"\texttt{{{escape(code)}}}" if code is not None else
                   rf"\textbf{{{escape(bold)}}}" if bold is not None else
                   rf"\textit{{{escape(italic)}}}" if italic is not None else f"``{escape(quoted)}''")
        pos = m.end()
    return "".join(out) + escape(text[pos:])


def latex_table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric_from: int = 1) -> list[str]:
    """A booktabs ``tabular`` (the ``md_table`` signature): label columns left, numbers right;
    a score column where the paper's value is shown is followed by an italic *paper* column."""
    rows = [list(r) for r in rows]
    with_paper = {j for j in range(len(headers))
                  if any(isinstance(r[j], ScoreCell) and r[j].paper is not None for r in rows)}
    align, head = [], []
    for j, h in enumerate(headers):
        align.append("l" if j < numeric_from else "r")
        head.append(escape(h))
        if j in with_paper:
            align.append("r")
            head.append(PAPER_HEADER)
    body = []
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            cells.append(escape(c.ours if isinstance(c, ScoreCell) else c))
            if j in with_paper:
                paper = c.paper if isinstance(c, ScoreCell) else None
                cells.append(rf"\textit{{{escape(paper)}}}" if paper is not None else "")
        body.append(" & ".join(cells) + r" \\")
    block = LatexBlock("\n".join([
        rf"\begin{{tabular}}{{{''.join(align)}}}", r"\toprule", " & ".join(head) + r" \\", r"\midrule",
        *body, r"\bottomrule", r"\end{tabular}"]))
    block.has_paper = bool(with_paper)
    return [block]


def latex_lines(lines: Sequence[str]) -> list[str]:
    """Lines of a report section with each :class:`RecordedTable` written as LaTeX instead."""
    return [latex_table(line.headers, line.rows, line.numeric_from)[0] if isinstance(line, RecordedTable) else line
            for line in lines]


def _label(suite: str, n: int, kind: str = "tab") -> str:
    return f"{kind}:{re.sub(r'[^A-Za-z0-9]+', '-', suite).strip('-') or 'report'}-{n}"


def latex_document(lines: Sequence[str], *, suite: str, head: Sequence[str] = ()) -> str:
    """The ``.tex`` fragment: a ``table`` float per :class:`LatexBlock` in ``lines``, captioned
    by the section (##) and subsection (###) headings above it; the notes of the section go
    below the table they belong to (before it: a scale note or an intro ending in a colon; after it:
    totals, footnotes, verdicts). Notes of a (sub)section without a table (the verdicts' rules,
    claim 5's reason) are a ``\\paragraph``; a markdown image with its caption line is a
    ``figure`` float (the PNG by file name: the report's folder must be on ``\\graphicspath``)."""
    out = [f"% Tables of the prefix-bench suite {suite!r}, written by `bench report --format latex`.",
           r"% \input this file; it needs \usepackage{booktabs}, \usepackage{adjustbox} and \usepackage{graphicx}",
           r"% (figures by file name: \graphicspath{{reports/}} where the .tex is \input from the project root).",
           *[f"% {line}" for line in head if line], ""]
    section = subsection = ""
    pending: list[str] = []  # notes seen before the next table
    current: dict[str, object] | None = None
    image: str | None = None  # a figure's file, until its caption line
    count = figures = 0

    def heading() -> str:
        return f"{section} — {subsection}" if subsection else section

    def orphans() -> None:
        """Notes that no table followed in their (sub)section: a paragraph of their own."""
        nonlocal pending
        if pending:
            out.extend([rf"\paragraph{{{inline(heading() or suite)}}}", *[inline(n) + r"\par" for n in pending], ""])
        pending = []

    def flush() -> None:
        nonlocal current
        if current is None:
            return
        block = current["block"]
        notes = [inline(n) for n in current["notes"]]  # type: ignore[union-attr]
        if isinstance(block, LatexBlock) and block.has_paper:
            notes.append(PAPER_NOTE)
        out.extend([r"\begin{table}[htbp]", r"\centering", rf"\caption{{{inline(str(current['caption']))}}}",
                    rf"\label{{{current['label']}}}", r"\begin{adjustbox}{max width=\linewidth}", str(block),
                    r"\end{adjustbox}"])
        if notes:
            out.extend([r"\par\smallskip", r"{\footnotesize", *[n + r"\par" for n in notes], "}"])
        out.extend([r"\end{table}", ""])
        current = None

    for line in lines:
        if isinstance(line, LatexBlock):
            flush()
            count += 1
            current = {"block": line, "caption": heading() or suite, "label": _label(suite, count), "notes": pending}
            pending = []
        elif line.startswith("### "):
            flush()
            orphans()
            subsection = line[4:].strip()
        elif line.startswith("## "):
            flush()
            orphans()
            section, subsection = line[3:].strip(), ""
        elif (m := _IMAGE.match(line.strip())) is not None:
            flush()
            image = m.group(1)
        elif image is not None and (m := _FIGURE_CAPTION.match(line.strip())) is not None:
            figures += 1
            out.extend([r"\begin{figure}[htbp]", r"\centering", rf"\includegraphics[width=\linewidth]{{{image}}}",
                        rf"\caption{{{inline(m.group(1))}}}", rf"\label{{{_label(suite, figures, 'fig')}}}",
                        r"\end{figure}", ""])
            image = None
        elif line.strip():
            # a note ending in a colon introduces the table after it ("How far each row trained:")
            intro = line.strip().endswith(":")
            (current["notes"] if current is not None and not intro else pending).append(line.strip())  # type: ignore[union-attr]
    flush()
    orphans()
    if count == 0:
        out.append("% No table: no run of this suite has stored metrics yet (`bench run` the suite first).")
    return "\n".join(out).rstrip() + "\n"
