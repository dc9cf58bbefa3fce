"""The MS-COCO caption tokenization used by the E2E METEOR, ROUGE-L and CIDEr scores.

Source: pycocoevalcap's ``PTBTokenizer`` (Chen et al. 2015, "Microsoft COCO Captions"), as
run by tuetschek/e2e-metrics: every caption goes through Stanford CoreNLP 3.4.1's
``edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` (one JVM for all
references, one for all hypotheses, one caption per line), then the tokens
``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;`` are dropped. Because the
tokenizer lowercases first, ``-lrb-``/``-rrb-`` survive the (upper-case) filter; we keep that.

Starting CoreNLP per call would cost about a second, so ``CocoTokenizer`` tokenizes in
Python what it can do exactly and sends the rest to the jar in one batch:

- a caption made only of letters, digits, spaces and ``. , ; : ! ? - ' £ & %`` is
  tokenized by ``_ptb_tokens``, a re-implementation of the PTBLexer rules for that
  alphabet (longest match, ties to the earlier rule, trailing context counted, abbreviation
  lists as CoreNLP 3.4.1 behaves). It is checked token for token against the jar on every
  E2E reference and fixture, and on hand-written hard cases (tests/test_metrics_e2e.py);
- a caption with any other character, or with a pattern the Python rules do not cover
  (``x.y`` dotted words, URLs, e-mail), goes to the jar.

Cross-line context is kept: in the official batch, a caption's last token can depend on the
start of the next caption (``Rd.`` before an upper-case letter gives ``rd. .``), so both
paths see the next caption of the same batch. Deliberate deviation: line-breaking
characters inside a caption (CR, VT, FF, NEL, U+2028/9) become spaces; the official
pipeline splits such a caption in two and misaligns every later caption of the corpus.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError

# Tokens pycocoevalcap drops after tokenization (its PUNCTUATIONS list, compared verbatim).
COCO_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Characters the Python lexer handles; anything else sends the caption to the jar.
_LATIN_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_SAFE = re.compile(rf"[{_LATIN_LETTERS}0-9 .,;:!?'£&%-]*")
# Patterns inside the safe alphabet that CoreNLP 3.4.1 treats in ways not reproduced here.
_UNSAFE_PATTERN = re.compile(
    r"[^\W_]\.[^\W\d_]|[^\W\d_]\.\d"  # acronyms (U.S.), a.m., centre.She, node.js: version-specific rules
    r"|(?i:www\.|\.(?:com|net|org|edu)\b)"  # URLs
    r"|&(?!amp;|\s|$)"  # character entities other than &amp;
    r"|\d\.\d+-"  # 20.00-25.00: hyphenated decimals changed between CoreNLP versions
    r"|(?i:\bdunno\b|n'ts\b)"
    r"|(?<![^\W\d_])[A-Za-z]\.(?=\s|$)"  # "L. Their": the word list is only partly known
)
_LINE_BREAKS = re.compile("[\r\n\u000b\u000c\u0085\u2028\u2029]")

L = r"[^\W\d_]"  # Java [:letter:]
D = r"\d"
APOS = r"(?:'|&apos;)"
WORD = rf"(?:{L}|&[aeiouAEIOU](?:acute|grave|uml);|\u00ad)+"
REDAUX = rf"{APOS}(?:[msdMSD]|(?i:re|ve|ll))"
SWORD = r"[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*"
SREDAUX = rf"(?i:n){APOS}(?i:t)"
# APOWORD's alternatives are separate rules: JFlex takes the longest, Python the first.
APOWORDS = (
    rf"{APOS}(?i:n){APOS}?",
    rf"[lLdDjJ]{APOS}",
    rf"(?i:dunkin|somethin|ol){APOS}",
    rf"{APOS}(?i:em)",
    rf"[A-HJ-XZn]{APOS}{L}{{2}}{L}*",
    rf"{APOS}[2-9]0(?i:s)",
    rf"{APOS}(?i:till?)",
    rf"{L}{L}*[aeiouyAEIOUY]{APOS}[aeiouA-Z]{L}*",
    rf"{APOS}(?i:cause)",
    r"(?i:cont'd\.?)",
    r"(?i:nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)",
)

NUM = rf"(?:{D}*(?:[.:,\u00ad]{D}+)+|{D}+)"
THING_PART = rf"(?:[dDoOlL]{APOS}(?:{L}|{D}))?(?:{L}|{D})+"
THING = rf"{THING_PART}(?:-{THING_PART})*"
HTHING = r"[A-Za-z0-9][A-Za-z0-9.,\u00ad]*(?:-[A-Za-z0-9\u00ad]+)+"
SPACE = r"[ \t\u00a0\u2000-\u200a\u3000]"
SPACENL = rf"(?:{SPACE}|\n)"
SENTEND = rf"{SPACENL}(?:{SPACENL}|[A-Z]|<\/?[A-Za-z!][^>]*>)"
INSENTP = r"[,;:]"

# Abbreviation lists as CoreNLP 3.4.1 behaves (probed with the jar; they differ from both
# older and newer PTBLexer.flex files). ABBREV1 words, when followed by a sentence end, also
# give a separate "." token; ABBREV2 words never do.
_ABMONTH = "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
_ABDAYS = "Mon|Tue|Tues|Wed|Thu|Thurs|Fri"
_ABSTATE = (
    "Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md"
    "|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo"
)
_ABCOMP = "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys"
_ABNUM = "tel|est|ext|sq"
_ABPTIT = "Jr|Sr|Bros|Blvd|Rd|Esq"
_ABTITLE = (
    "Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj"
    "|Sgt|Cpl|Pvt|Mt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Ft|Ph"
    "|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc"
)
_ABCOMP2 = "Invt|Elec|Natl|M[ft]g|Dept"
# Abbreviations kept only before a number ("No. 5").
_ABBREV3 = "ca|figs?|prop|nos?|art|pp|op"


def _caseless(pattern: str) -> str:
    """JFlex %caseless: letters outside brackets match either case; [classes] stay as written."""
    out = []
    in_class = escaped = False
    for ch in pattern:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "]":
            in_class = False
            out.append(ch)
        elif not in_class and ch.isalpha():
            out.append(f"[{ch.lower()}{ch.upper()}]")
        else:
            out.append(ch)
    return "".join(out)


ABBREV1 = (
    "(?:"
    + "|".join(_caseless(x) for x in (_ABMONTH, _ABDAYS, _ABSTATE, _ABCOMP, _ABNUM, _ABPTIT))
    + "|" + _caseless("etc|al|seq|Bldg") + r")\."
)
ABBREV2 = (
    rf"(?:[A-Za-z]|{_caseless(_ABTITLE)}|{_caseless('vs|Alex|Wm|Jos|Cie|cf|TREAS')}"
    rf"|{_caseless(_ABCOMP2)})\."
)
_SENT_WORDS = (
    "[A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[E]arlier|[H]e|[H]er"
    "|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\\.|[M]s\\.|[N]ow|[O]nce|[O]ne"
    "|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]hen|[T]here|[T]hese"
    "|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|[T]heir"
)
PHONE = r"[0-9]{3}[\- \u00a0.][0-9]{3}[\- \u00a0.][0-9]{4}"

# (name, main pattern, trailing context or None, action). Action: None keeps the text;
# a str replaces it; "pushback:k" keeps all but the last k characters; "period" emits the
# text and re-reads its final period.
_RULES: list[tuple[str, str, str | None, str | None]] = [
    ("assim3", r"(?i:cannot|'twas)", None, "pushback:3"),
    ("assim2", r"(?i:'tis|gonna|gotta|lemme|gimme|wanna)", None, "pushback:2"),
    ("spamp", r"(?i:&amp;)", None, "&"),
    ("sppunc", r"&(?i:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);", None, None),
    ("word_redaux", WORD, REDAUX, None),
    ("sword_sredaux", SWORD, SREDAUX, None),
    ("word", WORD, None, None),
    *[("apoword", alt, None, None) for alt in APOWORDS],
    ("apoword2", rf"(?i:y){APOS}", L, None),
    ("redaux_ctx", REDAUX, r"[^A-Za-z]|$", None),
    ("sredaux", SREDAUX, None, None),
    ("date", rf"{D}{{1,2}}[\-/]{D}{{1,2}}[\-/]{D}{{2,4}}", None, None),
    ("number", rf"[\-+]?{NUM}", None, None),
    ("tbspec", r"(?i:-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|pro-|anti-|Cap'n|c'est)", None, None),
    ("dolsign2", "£", None, "#"),
    # CoreNLP 3.4.1: a one-letter abbreviation before a sentence-opening word ("L. The")
    # becomes "L" then "." (probed with the jar; the word list is PTBLexer's).
    ("letter_acronym", r"[A-Za-z]", rf"\.{SPACENL}+(?:{_caseless(_SENT_WORDS)}){SPACENL}", None),
    ("abbrev1_end", ABBREV1, SENTEND, "period"),
    ("abbrev1", ABBREV1, None, None),
    ("abbrev2", ABBREV2, None, None),
    ("abbrev3", rf"(?:{_caseless(_ABBREV3)})\.", rf"{SPACENL}?{D}", None),
    ("tbspec2", rf"{APOS}[0-9][0-9]", SPACENL, None),
    ("word_dot", rf"{WORD}\.", INSENTP, None),
    ("phone", PHONE, None, "phone"),
    ("percent_amp", r"[%&]", None, None),
    ("hyphens", r"-+", None, "hyphens"),
    ("ldots", r"\.{3,5}|(?:\.[ \u00a0]){2,4}\.", None, "..."),
    ("insentp", INSENTP, None, None),
    ("bang", r"[?!]+", None, None),
    ("dot", r"\.", None, None),
    ("hthing_dot", rf"{HTHING}\.", INSENTP, None),
    ("hthing", HTHING, None, None),
    ("thing_dot", rf"{THING}\.", INSENTP, None),
    ("thing", THING, None, None),
    ("left_quote", "'", r"[A-Za-z][^ \t\n\r\u00a0]", "`"),
    ("redaux", REDAUX, None, None),
    ("quotes", r"''|'", None, None),
]
_COMPILED = [
    (name, re.compile(f"(?:{main})" + (f"(?=(?P<ctx>{ctx}))" if ctx else "")), action)
    for name, main, ctx, action in _RULES
]
_SPACES = re.compile(rf"{SPACE}+")
# Fast path: a run of letters followed by a space or the line end is one WORD token (no
# rule can match longer there), unless it is a word the assimilation rules split.
_FAST_WORD = re.compile(rf"{L}+(?={SPACE}|\n|$)")
_FAST_PUNCT = re.compile(r"[,;:](?!\d)|[?!]+")
_ASSIMILATED = frozenset(["cannot", "gonna", "gotta", "lemme", "gimme", "wanna"])


def _ptb_tokens(line: str, following: str) -> list[str]:
    """PTB tokens of ``line`` (safe alphabet only); ``following`` = the text after it."""
    text = line + following
    end = len(line)
    tokens: list[str] = []
    i = 0
    while i < end:
        m = _SPACES.match(text, i)
        if m:
            i = m.end()
            continue
        m = _FAST_WORD.match(text, i) or _FAST_PUNCT.match(text, i)
        if m and m.group(0).lower() not in _ASSIMILATED:
            tokens.append(m.group(0))
            i = m.end()
            continue
        best = None
        best_len = -1
        for name, rx, action in _COMPILED:
            m = rx.match(text, i)
            if m is None:
                continue
            # Longest match counts the trailing context (as flex/JFlex); ties -> earlier rule.
            total = m.end("ctx") - i if "ctx" in rx.groupindex and m.group("ctx") is not None else m.end() - i
            if total > best_len and m.end() > i:
                best, best_len = (name, m, action), total
        if best is None:
            raise BenchError(f"PTB tokenizer: no rule for {text[i:i + 10]!r} in {line!r}")
        _name, m, action = best
        tok = m.group(0)
        nxt = m.end()
        if action is None:
            pass
        elif action.startswith("pushback:"):
            k = int(action.split(":")[1])
            tok, nxt = tok[:-k], m.end() - k
        elif action == "period":
            nxt = m.end() - 1
        elif action == "phone":
            tok = re.sub(r"[ ]", "\u00a0", tok)
        elif action == "hyphens":
            tok = "--" if 3 <= len(tok) <= 4 else tok
        else:
            tok = action
        tokens.append(tok)
        i = nxt
    return tokens


def is_python_safe(line: str) -> bool:
    """True where the Python lexer reproduces CoreNLP 3.4.1 (checked by tests)."""
    return _SAFE.fullmatch(line) is not None and _UNSAFE_PATTERN.search(line) is None


def _clean(line: str) -> str:
    return _LINE_BREAKS.sub(" ", line)


def coco_join(tokens: Sequence[str]) -> str:
    """Lowercase (-lowerCase), drop COCO's punctuation tokens, join with spaces."""
    words = " ".join(t.lower() for t in tokens).split(" ")
    return " ".join(w for w in words if w not in COCO_PUNCTUATION)


@functools.lru_cache(maxsize=200_000)
def _python_caption(line: str, following: str) -> str:
    return coco_join(_ptb_tokens(line, following))


def corenlp_jar() -> Path:
    """stanford-corenlp-3.4.1.jar as shipped by pycocoevalcap."""
    from bench.metrics.meteor import _package_dir

    jar = _package_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    if not jar.is_file():
        raise BenchError(f"CoreNLP jar missing: {jar} (reinstall pycocoevalcap)")
    return jar


def jar_ptb_lines(lines: Sequence[str]) -> list[str]:
    """Raw ``PTBTokenizer -preserveLines -lowerCase`` output, one line per input line.

    Runs the jar once on the lines joined by newlines, as pycocoevalcap does.
    """
    from bench.metrics.meteor import java_executable, java_failure

    if not lines:
        return []
    with tempfile.TemporaryDirectory(prefix="bench-ptb-") as tmp:
        path = Path(tmp) / "captions.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        proc = subprocess.run(
            [java_executable(), "-cp", str(corenlp_jar()), "edu.stanford.nlp.process.PTBTokenizer",
             "-preserveLines", "-lowerCase", str(path)],
            capture_output=True,
            check=False,
        )
    if proc.returncode != 0:
        raise BenchError(java_failure("CoreNLP PTBTokenizer", proc.returncode, proc.stderr))
    out = proc.stdout.decode("utf-8").split("\n")
    # A trailing empty caption yields no output line; pad so every input has one.
    out += [""] * (len(lines) - len(out))
    return out[: len(lines)]


class CocoTokenizer:
    """COCO caption tokenization of a batch of captions (see module docstring).

    ``mode``: "auto" (Python where exact, the jar for the rest), "corenlp" (the jar for
    every caption, as the official scripts), "python" (never the jar; for tests only).
    """

    MODES = ("auto", "corenlp", "python")

    def __init__(self, mode: str = "auto"):
        if mode not in self.MODES:
            raise BenchError(f"unknown COCO tokenizer mode {mode!r} (valid: {', '.join(self.MODES)})")
        self.mode = mode
        self.jar_calls = 0  # how many times the jar was started (benchmark/tests)

    def tokenize(self, captions: Sequence[str]) -> list[str]:
        """Tokenized captions (lowercased, COCO punctuation dropped), same order and length."""
        lines = [_clean(c) for c in captions]
        n = len(lines)
        out: list[str] = [""] * n
        to_jar: list[int] = []
        for i, line in enumerate(lines):
            if self.mode == "python" or (self.mode == "auto" and is_python_safe(line)):
                out[i] = _python_caption(line, _following(lines, i))
            else:
                to_jar.append(i)
        if to_jar:
            for i, tok in zip(to_jar, self._jar_with_context(lines, to_jar)):
                out[i] = tok
        return out

    def _jar_with_context(self, lines: Sequence[str], idx: Sequence[int]) -> list[str]:
        # A caption's tokens depend only on the text after it (at most the next two
        # captions), so the jar gets, for each caption, the run of original captions from
        # it to two past it; runs are merged and the one reaching the corpus end goes last,
        # so every caption sees the same context as in the full official batch.
        n = len(lines)
        spans: list[list[int]] = []
        for i in idx:
            lo, hi = i, min(i + 3, n)
            if spans and lo <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], hi)
            else:
                spans.append([lo, hi])
        spans.sort(key=lambda s: s[1] == n)  # stable: the end-of-corpus run last
        batch: list[str] = []
        where: dict[int, int] = {}
        for lo, hi in spans:
            for j in range(lo, hi):
                where[j] = len(batch)
                batch.append(lines[j])
        raw = jar_ptb_lines(batch)
        self.jar_calls += 1
        return [" ".join(w for w in raw[where[i]].split(" ") if w not in COCO_PUNCTUATION) for i in idx]


def _following(lines: Sequence[str], i: int) -> str:
    """The text after caption ``i`` in the official batch that the lexer may look at."""
    if i == len(lines) - 1:
        return ""
    return "\n" + "\n".join(lines[i + 1 : i + 3])[:64]


# Recent corpora, so the three COCO metrics of one scoring call tokenize once.
_CORPUS_CACHE: dict[tuple[str, tuple[str, ...]], list[str]] = {}
_CORPUS_CACHE_SIZE = 8
# Held while tokenizing: metrics scored in parallel threads wait for one tokenization
# instead of each starting the jar.
_CORPUS_LOCK = threading.Lock()


def _cached_batch(captions: tuple[str, ...], mode: str) -> list[str]:
    key = (mode, captions)
    with _CORPUS_LOCK:
        hit = _CORPUS_CACHE.pop(key, None)
        if hit is None:
            hit = CocoTokenizer(mode).tokenize(captions)
        _CORPUS_CACHE[key] = hit  # re-insert: most recent last
        while len(_CORPUS_CACHE) > _CORPUS_CACHE_SIZE:
            _CORPUS_CACHE.pop(next(iter(_CORPUS_CACHE)))
        return hit


def tokenize_corpus(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], mode: str = "auto"
) -> tuple[list[str], list[list[str]]]:
    """COCO-tokenize a scored corpus as COCOEvalCap does: all references in one batch
    (item order, then reference order), all hypotheses in another."""
    if len(hypotheses) != len(references):
        raise BenchError(f"{len(hypotheses)} hypotheses but {len(references)} reference groups")
    flat = tuple(r for group in references for r in group)
    ref_tok = _cached_batch(flat, mode)
    hyp_tok = _cached_batch(tuple(hypotheses), mode)
    grouped, k = [], 0
    for group in references:
        grouped.append(ref_tok[k : k + len(group)])
        k += len(group)
    return hyp_tok, grouped
