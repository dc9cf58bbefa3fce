"""Named failure points for fault-injection tests (never active unless the env var is set).

``BENCH_FAULT=<stage>`` (e.g. ``train_step:3``, ``decode``, ``score``, ``write_predictions``)
makes the process SIGKILL itself when it reaches that point, as a preempted job would die.
"""

from __future__ import annotations

import os
import signal


def checkpoint(stage: str) -> None:
    target = os.environ.get("BENCH_FAULT")
    if target and target == stage:
        os.kill(os.getpid(), signal.SIGKILL)
