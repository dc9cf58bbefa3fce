"""What every benchmark script shares: the CPU's name and rewriting its own section of
reports/performance.md (other sections are left as they are)."""

from __future__ import annotations

from pathlib import Path

PERFORMANCE_MD = Path(__file__).resolve().parents[1] / "reports" / "performance.md"
# The lock the background replication takes per step (benchmarks/run_replication.sh,
# BENCH_LOCK): a benchmark run under it never shares the cores with a training run.
LOCK = "/tmp/prefix-bench.lock"


def rerun_command(args: str) -> str:
    """The command line a section quotes: the script under the shared lock."""
    return f"flock {LOCK} .venv/bin/python {args}"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or 'unknown CPU'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def write_section(heading: str, text: str, path: Path = PERFORMANCE_MD) -> Path:
    """Replace the section that starts with ``heading`` (up to the next '## ') by ``text``, or
    append ``text`` when there is no such section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(heading))
        new = old[:start] + text + (old[nxt + 1 :] if nxt >= 0 else "")
    path.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
    return path
