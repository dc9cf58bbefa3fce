"""How much of the machine's CPU other processes used while a run trained or decoded.

A run's times (train time, step time, tokens/s, decode time) are only comparable with other
runs' when the run had the cores to itself: on a shared 2-core machine a test suite or a second
training next to it doubles them. :class:`OtherCPU` measures, over a block, the CPU time the
whole machine spent busy (``/proc/stat``: user, nice, system, irq, softirq and steal, the last
being time the hypervisor gave to other virtual machines) minus the CPU time of this process and
its children, as a share of the machine's capacity (wall time x logical CPUs). Near 0: the run
was alone; 0.5 on two cores: another process held one core for the whole block. The efficiency
table shows it next to the times (bench/report/tables.py) so that a reader can tell a slow
method from a contended run. Linux only (elsewhere the share is None: not measured).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from typing_extensions import Self

PROC_STAT = Path("/proc/stat")
# Busy fields of the aggregate "cpu" line, by position after the label: user, nice, system,
# (idle, iowait skipped), irq, softirq, steal. guest/guest_nice are already counted in user/nice.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
# Above this share the report marks the run's times as measured on a shared machine.
CONTENDED = 0.25


def _machine_busy_s() -> float | None:
    """Seconds of CPU time the whole machine spent busy since boot (None without /proc/stat)."""
    try:
        with PROC_STAT.open() as f:
            first = f.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    values = [int(v) for v in first[1:]]
    return sum(values[i] for i in _BUSY_FIELDS if i < len(values)) / ticks


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherCPU:
    """Context manager: ``share`` is the other processes' CPU use over the block, in [0, 1]."""

    def __init__(self) -> None:
        self.share: float | None = None
        self._start: tuple[float, float | None, float] = (0.0, None, 0.0)

    def __enter__(self) -> Self:
        self._start = (time.perf_counter(), _machine_busy_s(), _own_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        t0, busy0, own0 = self._start
        busy1, wall = _machine_busy_s(), time.perf_counter() - t0
        if busy0 is None or busy1 is None or wall <= 0:
            return  # not measured: share stays None
        others = (busy1 - busy0) - (_own_cpu_s() - own0)
        # The kernel counts in ticks (10 ms): a short block's share is rounded, and clipped.
        self.share = round(min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1)))), 3)
