"""Upgrade a training checkpoint of format 2 (RNG states pickled) to format 3 (tensors and plain
values only, read with ``weights_only=True``), so that a run killed while training under an older
bench resumes from its last checkpoint instead of training again from step 0.

Format 2 can only be read with the unsafe unpickler: run this only on checkpoints your own runs
wrote (never on a file from shared storage you do not control). Nothing else in the run folder
is touched; the file is replaced atomically, and only after the new file was read back with
``weights_only=True``.

    python benchmarks/upgrade_checkpoint.py results/replication_cpu/runs/<train_key>/checkpoint.pt
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def upgrade_rng(states: dict[str, Any]) -> dict[str, Any]:
    """Format 2's RNG states (numpy's and Python's state tuples) as format 3 holds them
    (bench.train._rng_states)."""
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    version, internal, gauss_next = states["python"]
    return {
        "torch": states["torch"],
        "cuda": states.get("cuda"),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def upgrade(path: Path) -> str:
    ck = torch.load(path, map_location="cpu", weights_only=False)  # format 2: your own file only
    fmt = ck.get("fingerprint", {}).get("format") if isinstance(ck, dict) else None
    if fmt != 2:
        return f"{path}: format {fmt!r}, not 2: left as it is"
    ck["rng"] = upgrade_rng(ck["rng"])
    ck["fingerprint"]["format"] = 3
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(ck, tmp)
    torch.load(tmp, map_location="cpu", weights_only=True)  # what bench.train will do
    os.replace(tmp, path)
    return f"{path}: upgraded to format 3 (step {ck['step']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        print(upgrade(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
