"""METEOR 1.5 (Denkowski & Lavie, "Meteor Universal", WMT 2014) through the official jar.

The scorer runs ``meteor-1.5.jar`` with its paraphrase table, both shipped by the PyPI
package ``pycocoevalcap`` (the same files the E2E and COCO scripts use), in ``-stdio`` mode
as the COCO wrapper does (``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm``):

- ``SCORE ||| ref 1 ||| ... ||| ref n ||| hypothesis`` returns the segment's sufficient
  statistics against its best reference (23 numbers);
- ``EVAL ||| stats ||| stats ...`` returns each segment's score, then the corpus score from
  the summed statistics.

We take the per-segment statistics from the jar and aggregate them in Python with the jar's
own formula (``aggregate_meteor_stats``), so a bootstrap resample or a SEEN/UNSEEN subset
needs no Java call; tests check the Python aggregate against the jar's EVAL.

Starting the jar costs ~10 s (it loads the 60 MB paraphrase table), so one process per
command line is kept alive per bench process (``_POOL``), started lazily and closed atexit.

``E2EMeteor`` ("e2e_meteor") is METEOR as tuetschek/e2e-metrics computes it: through the
MS-COCO caption pipeline, i.e. on PTB-tokenized, lowercased text with punctuation tokens
removed (``bench.metrics.coco_tokenizer``), references grouped per MR. ``Meteor`` ("meteor")
is the jar on the text as given, for data of one's own (``custom`` datasets).
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.registry import METRICS

# Column layout of one METEOR 1.5 statistics line (MeteorStats.toString):
# tstLen refLen tstFunc refFunc, then 4 stages x (tstContent refContent tstFunction
# refFunction), then chunks tstWordMatches refWordMatches.
N_STATS = 23
N_STAGES = 4
_CHUNKS = 20
_TST_WORDS = 21
_REF_WORDS = 22


@dataclass(frozen=True)
class MeteorParams:
    """The jar's scoring parameters for one language/task (alpha, beta, gamma, delta, weights)."""

    alpha: float
    beta: float
    gamma: float
    delta: float
    weights: tuple[float, float, float, float]  # exact, stem, synonym, paraphrase


# METEOR 1.5's defaults (task "rank") for English; checked against the jar's EVAL in tests.
PARAMS: dict[str, MeteorParams] = {
    "en": MeteorParams(alpha=0.85, beta=0.20, gamma=0.60, delta=0.75, weights=(1.0, 0.6, 0.8, 0.6)),
}


def _package_dir() -> Path:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "METEOR needs the PyPI package pycocoevalcap (it ships meteor-1.5.jar): "
            "pip install pycocoevalcap"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def meteor_jar() -> Path:
    """Path of the meteor-1.5.jar shipped by pycocoevalcap (paraphrase table beside it)."""
    jar = _package_dir() / "meteor" / "meteor-1.5.jar"
    if not jar.is_file():
        raise BenchError(f"METEOR jar missing: {jar} (reinstall pycocoevalcap)")
    return jar


def java_executable() -> str:
    """The ``java`` on PATH, or a one-line error naming the Debian package to install."""
    java = shutil.which("java")
    if java is None:
        raise BenchError(
            "METEOR needs Java but `java` is not on PATH: install the Debian package "
            "default-jre-headless (apt-get install default-jre-headless)"
        )
    return java


def java_failure(what: str, returncode: int, stderr: bytes) -> str:
    """One line for a Java process that failed: its last stderr line, and where the JVM could
    not even start (no message, or a heap / class-space reservation that failed: a process
    memory limit such as ulimit -v), what to raise."""
    tail = stderr.decode("utf-8", "replace").strip().splitlines()
    last = tail[-1] if tail else ""
    if not last or "initialization of VM" in " ".join(tail) or "Could not reserve" in last \
            or "Could not allocate" in last:
        return (f"{what}: Java could not start (exit status {returncode}{'; ' + last if last else ''}); "
                "the JVM reserves its heap and class space up front (several GB of address space): "
                "raise the process's memory limit (ulimit -v, or the job's memory request)")
    return f"{what} failed: {last}"


def java_available() -> bool:
    """True where METEOR can run (java on PATH and the jar installed); for test skips."""
    try:
        java_executable()
        meteor_jar()
    except BenchError:
        return False
    return True


class _MeteorProcess:
    """One running ``meteor-1.5.jar -stdio``; line protocol, one request at a time."""

    def __init__(self, args: tuple[str, ...]):
        jar = meteor_jar()
        self.command = [java_executable(), "-jar", "-Xmx2G", jar.name, "-", "-", "-stdio", *args]
        # stderr goes to a file: a pipe nobody reads could fill up and stall the jar.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.command,
            cwd=jar.parent,  # the jar finds data/paraphrase-en.gz relative to itself
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.lock = threading.Lock()

    def request(self, lines: Sequence[str], n_replies: int) -> list[str]:
        """Send ``lines`` and read ``n_replies`` reply lines.

        Writing happens in a thread so a long batch cannot deadlock on a full stdout pipe.
        """
        payload = "".join(line + "\n" for line in lines).encode("utf-8")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            error: list[BaseException] = []

            def write() -> None:
                try:
                    self.proc.stdin.write(payload)  # type: ignore[union-attr]
                    self.proc.stdin.flush()  # type: ignore[union-attr]
                except BaseException as exc:  # noqa: BLE001 - reported below
                    error.append(exc)

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            replies = []
            for _ in range(n_replies):
                raw = self.proc.stdout.readline()
                if not raw:
                    writer.join(timeout=1)
                    raise BenchError(f"METEOR jar stopped unexpectedly: {self._stderr_tail()}")
                replies.append(raw.decode("utf-8").strip())
            writer.join()
            if error:
                raise BenchError(f"METEOR jar input failed: {error[0]}")
        return replies

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return text[-1] if text else f"exit status {self.proc.poll()}"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - closing at exit; kill what remains
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


# One live process per distinct command line (language, flags), shared by every scorer.
_POOL: dict[tuple[str, ...], _MeteorProcess] = {}
_POOL_LOCK = threading.Lock()


def _process(args: tuple[str, ...]) -> _MeteorProcess:
    with _POOL_LOCK:
        proc = _POOL.get(args)
        if proc is None or proc.proc.poll() is not None:
            proc = _MeteorProcess(args)
            _POOL[args] = proc
        return proc


@atexit.register
def close_pool() -> None:
    """Stop every METEOR process this bench process started."""
    with _POOL_LOCK:
        for proc in _POOL.values():
            proc.close()
        _POOL.clear()


def pool_size() -> int:
    """How many METEOR processes are alive (for tests and the rescoring benchmark)."""
    return sum(1 for p in _POOL.values() if p.proc.poll() is None)


# Segment statistics already computed in this process, keyed by (flags, refs, hypothesis):
# rescoring runs of one dataset meets the same (hypothesis, references) pairs again, and the
# jar's answer is a pure function of them.
_SEGMENT_CACHE: dict[tuple[tuple[str, ...], str], np.ndarray] = {}
_SEGMENT_CACHE_MAX = 500_000


def _clean(text: str) -> str:
    # The stdio protocol is one line with ' ||| ' separators: a newline or '|||' inside a
    # segment would shift every later field.
    return text.replace("\r", " ").replace("\n", " ").replace("|||", "")


def segment_is_exact(stats: np.ndarray) -> np.ndarray:
    """Rows whose hypothesis equals its reference (all words matched in one chunk).

    The jar adds no chunks for such segments when it sums statistics (MeteorStats.addStats).
    """
    stage = stats[:, 4 : 4 + 4 * N_STAGES]
    tst_total = stage[:, 0::4].sum(1) + stage[:, 2::4].sum(1)
    ref_total = stage[:, 1::4].sum(1) + stage[:, 3::4].sum(1)
    return (tst_total == stats[:, 0]) & (ref_total == stats[:, 1]) & (stats[:, _CHUNKS] == 1)


def summable(stats: np.ndarray) -> np.ndarray:
    """Per-segment statistics whose plain column sum is the jar's aggregate (chunks zeroed
    for exact segments), so any subset or resample aggregates by summing rows."""
    out = np.array(stats, dtype=np.float64, copy=True)
    if len(out):
        out[segment_is_exact(out), _CHUNKS] = 0.0
    return out


def meteor_from_sums(sums: np.ndarray, params: MeteorParams) -> np.ndarray:
    """METEOR from summed statistics, the jar's computeMetrics; ``sums`` is [..., 23]."""
    s = np.asarray(sums, dtype=np.float64)
    d = params.delta
    w = np.asarray(params.weights)
    stage = s[..., 4 : 4 + 4 * N_STAGES].reshape(*s.shape[:-1], N_STAGES, 4)
    tst_len, ref_len, tst_fun, ref_fun = s[..., 0], s[..., 1], s[..., 2], s[..., 3]
    tst_wlen = d * (tst_len - tst_fun) + (1 - d) * tst_fun
    ref_wlen = d * (ref_len - ref_fun) + (1 - d) * ref_fun
    tst_wm = (stage[..., 0] * w).sum(-1) * d + (stage[..., 2] * w).sum(-1) * (1 - d)
    ref_wm = (stage[..., 1] * w).sum(-1) * d + (stage[..., 3] * w).sum(-1) * (1 - d)
    tst_total = stage[..., 0].sum(-1) + stage[..., 2].sum(-1)
    ref_total = stage[..., 1].sum(-1) + stage[..., 3].sum(-1)
    chunks = s[..., _CHUNKS]
    word_matches = s[..., _TST_WORDS] + s[..., _REF_WORDS]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tst_wm / tst_wlen
        recall = ref_wm / ref_wlen
        fmean = 1.0 / ((1 - params.alpha) / precision + params.alpha / recall)
        exact = (tst_total == tst_len) & (ref_total == ref_len) & (chunks == 1)
        frag = np.where(exact, 0.0, chunks / (word_matches / 2))
        score = fmean * (1.0 - params.gamma * np.power(frag, params.beta))
    # The jar maps NaN (no words / no matches) to 0 and clips at 0.
    return np.where(np.isnan(score), 0.0, np.maximum(score, 0.0))


class MeteorScorer:
    """METEOR 1.5 segment statistics from the jar, corpus score aggregated in Python.

    ``normalize`` passes ``-norm`` (tokenize, lowercase, normalize punctuation);
    ``lowercase`` passes ``-lower`` (only meaningful without ``normalize``);
    ``no_punct`` passes ``-noPunct``. The process is shared by all scorers with the same
    flags and lives until the bench process exits.
    """

    def __init__(
        self,
        language: str = "en",
        normalize: bool = True,
        lowercase: bool = False,
        no_punct: bool = False,
    ):
        if language not in PARAMS:
            raise BenchError(
                f"METEOR language {language!r} is not supported here (supported: "
                f"{', '.join(sorted(PARAMS))})"
            )
        self.language = language
        self.normalize = normalize
        self.lowercase = lowercase
        self.no_punct = no_punct
        self.params = PARAMS[language]
        self.last_jar_segments = 0

    @property
    def args(self) -> tuple[str, ...]:
        """The jar's flags after ``- - -stdio``."""
        args = ["-l", self.language]
        if self.normalize:
            args.append("-norm")
        if self.lowercase:
            args.append("-lower")
        if self.no_punct:
            args.append("-noPunct")
        return tuple(args)

    def signature(self) -> str:
        """Every setting that changes the number."""
        p = self.params
        return (
            f"meteor-1.5|lang:{self.language}|norm:{'yes' if self.normalize else 'no'}"
            f"|lower:{'yes' if self.lowercase else 'no'}"
            f"|punct:{'removed' if self.no_punct else 'kept'}"
            f"|params:{p.alpha},{p.beta},{p.gamma},{p.delta}"
            f"|weights:{','.join(str(x) for x in p.weights)}|para:paraphrase-{self.language}"
        )

    def segment_stats(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """[n, 23] statistics, one row per hypothesis against its best reference."""
        if len(hypotheses) != len(references):
            raise BenchError(
                f"METEOR: {len(hypotheses)} hypotheses but {len(references)} reference groups"
            )
        if not hypotheses:
            return np.zeros((0, N_STATS))
        keys: list[tuple[tuple[str, ...], str]] = []
        for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
            if not refs:
                raise BenchError(f"METEOR: item {i} has no reference")
            # As the COCO wrapper: '|||' dropped and double spaces squeezed in the hypothesis.
            line = " ||| ".join(
                ("SCORE", " ||| ".join(_clean(r) for r in refs), _clean(hyp).replace("  ", " "))
            )
            keys.append((self.args, line))
        todo = list(dict.fromkeys(k for k in keys if k not in _SEGMENT_CACHE))
        if todo:
            replies = _process(self.args).request([k[1] for k in todo], len(todo))
            try:
                rows = np.array([[float(x) for x in r.split()] for r in replies], dtype=np.float64)
            except ValueError:
                raise BenchError(
                    f"METEOR jar gave an unreadable statistics line: {replies[0]!r}"
                ) from None
            if rows.shape != (len(todo), N_STATS):
                raise BenchError(f"METEOR jar gave statistics of shape {rows.shape}, expected 23 per line")
            if len(_SEGMENT_CACHE) + len(todo) > _SEGMENT_CACHE_MAX:
                _SEGMENT_CACHE.clear()
            _SEGMENT_CACHE.update(zip(todo, rows))
        self.last_jar_segments = len(todo)  # for the rescoring benchmark
        return np.stack([_SEGMENT_CACHE[k] for k in keys])

    def aggregate(self, stats: np.ndarray) -> float:
        """Corpus METEOR from per-segment statistics (as the jar's EVAL)."""
        if len(stats) == 0:
            return 0.0
        return float(meteor_from_sums(summable(stats).sum(0), self.params))

    def segment_scores(self, stats: np.ndarray) -> np.ndarray:
        """Per-segment METEOR from per-segment statistics."""
        return meteor_from_sums(np.asarray(stats, dtype=np.float64), self.params)

    def jar_eval(self, stats: np.ndarray) -> tuple[list[float], float]:
        """The jar's own EVAL on ``stats``: (segment scores, corpus score); for verification."""
        line = "EVAL ||| " + " ||| ".join(" ".join(repr(float(x)) for x in row) for row in stats)
        replies = _process(self.args).request([line], len(stats) + 1)
        return [float(x) for x in replies[:-1]], float(replies[-1])

    def corpus_score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """METEOR of a corpus in one call."""
        return self.aggregate(self.segment_stats(hypotheses, references))


class SummableMeteorMetric:
    """Base for registered METEOR flavours: stats are made summable once, so ``aggregate``
    and ``aggregate_sums`` (used by the bootstrap) are plain sums plus the jar's formula."""

    name: ClassVar[str] = "meteor"
    VERSION: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool] = True

    def __init__(self, scorer: MeteorScorer | None = None):
        self.scorer = scorer or MeteorScorer()

    def signature(self) -> str:
        return f"{self.scorer.signature()}|version:{self.VERSION}"

    def preprocess(self, text: str) -> str:
        """Text transformation before the jar (identity here; E2E tokenizes as COCO)."""
        return text

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        hyps = [self.preprocess(h) for h in hypotheses]
        refs = [[self.preprocess(r) for r in group] for group in references]
        return summable(self.scorer.segment_stats(hyps, refs))

    def aggregate(self, stats: np.ndarray) -> float:
        if len(stats) == 0:
            return 0.0
        return float(meteor_from_sums(np.asarray(stats).sum(0), self.scorer.params))

    def aggregate_sums(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Scores from row sums [B, 23] (bootstrap fast path); ``n`` rows per sum."""
        return meteor_from_sums(sums, self.scorer.params)


@METRICS.register("e2e_meteor")
class E2EMeteor(SummableMeteorMetric):
    """METEOR as tuetschek/e2e-metrics computes it (through the COCO wrapper); 0-1 scale.

    Text is COCO-tokenized first (lowercased, PTB tokens, punctuation dropped), then scored
    by ``java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm``.
    """

    name: ClassVar[str] = "e2e_meteor"
    VERSION: ClassVar[str] = "1"

    def __init__(self, tokenizer: str = "auto"):
        super().__init__(MeteorScorer(language="en", normalize=True))
        self.tokenizer = tokenizer

    def signature(self) -> str:
        return (
            f"{self.name}|{self.scorer.signature()}"
            f"|tok:coco-ptb(corenlp-3.4.1,lc,punct-removed)|refs:grouped-per-source"
            f"|version:{self.VERSION}"
        )

    def stats(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        from bench.metrics.coco_tokenizer import tokenize_corpus

        hyps, refs = tokenize_corpus(hypotheses, references, self.tokenizer)
        return summable(self.scorer.segment_stats(hyps, refs))


@METRICS.register("meteor")
class Meteor(SummableMeteorMetric):
    """METEOR 1.5 ``-l en -norm`` on the text as given, every reference; 0-1 scale.

    For data of your own (``custom`` datasets): no dataset-specific tokenization before the
    jar, whose ``-norm`` tokenizes, lowercases and normalizes punctuation itself.
    """

    name: ClassVar[str] = "meteor"
    VERSION: ClassVar[str] = "1"

    def __init__(self) -> None:
        super().__init__(MeteorScorer(language="en", normalize=True))

    def signature(self) -> str:
        return f"meteor|{self.scorer.signature()}|nrefs:all|tok:none|scale:1|version:{self.VERSION}"
