"""Where the real datasets live: a ``--data-dir`` flag, else ``$BENCH_DATA_DIR``, else nowhere.

A data directory holds one folder per dataset (``e2e``, ``webnlg``, ``dart``, ``xsum``) laid
out exactly as the shared ``data/`` folder (see its README). Nothing here guesses other
locations: a run must name its data explicitly so results can be traced to it.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError

ENV_VAR = "BENCH_DATA_DIR"


def resolve_data_dir(flag: str | None) -> Path | None:
    """The data directory: ``flag`` if given, else ``$BENCH_DATA_DIR`` if set, else None.

    A directory that was named but does not exist is a user mistake (a typo would otherwise
    silently fall through to "no data").
    """
    if flag:
        where, value = "--data-dir", flag
    elif os.environ.get(ENV_VAR):
        where, value = ENV_VAR, os.environ[ENV_VAR]
    else:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise BenchError(f"data directory {str(path)!r} (from {where}) does not exist")
    return path


def dataset_dir(data_dir: Path | None, name: str) -> Path | None:
    """``<data_dir>/<name>`` if that folder exists, else None."""
    if data_dir is None:
        return None
    folder = Path(data_dir) / name
    return folder if folder.is_dir() else None
