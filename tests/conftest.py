"""Shared test set-up: the official data folder (../shared/data beside the repo) and threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tests are many and tiny: one thread each avoids oversubscribing the 2-core CI machine.
torch.set_num_threads(1)


def shared_data_dir() -> Path | None:
    env = os.environ.get("BENCH_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("official data folder absent (set BENCH_DATA_DIR or put shared/data beside the repo)")
    return path
