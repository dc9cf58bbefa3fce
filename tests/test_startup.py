"""Start-up of a cached rerun (issue #12): `bench run` on a suite whose runs are all done reads
the stored expansion and the runs' meta.json, and imports neither torch nor transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench import expansion_cache, store
from bench.identity import canonical_json
from bench.suite import expand, load_suite

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "suites" / "smoke.yaml"


def _cached_tree(results: Path, suite: Path, *, list_keys: bool = True) -> list:
    """The files `bench run` leaves for every run of ``suite`` once scored (no training)."""
    specs = expand(load_suite(suite))
    for sp in specs:
        folder = store.run_dir(results, sp.train_key)
        folder.mkdir(parents=True, exist_ok=True)
        store.write_json(folder / "spec.json", {"spec": sp.to_json()})
        meta = {"status": "done", "stage": "done"} | ({"score_keys": [sp.score_key]} if list_keys else {})
        store.write_json(folder / "meta.json", meta)
        store.write_parquet(folder / "metrics.parquet", pd.DataFrame([{
            "score_key": sp.score_key, "decode_key": sp.decode_key, "split": "test", "group": "all",
            "metric": "bleu", "value": 0.5}]))
    return specs


def _bench(args: list[str], cache: Path, probe: bool = False) -> subprocess.CompletedProcess[str]:
    code = ("import sys\nfrom bench.cli import main\nrc = main(sys.argv[1:])\n"
            + ("print('HEAVY', sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))\n"
               if probe else "")
            + "sys.exit(rc)\n")
    env = os.environ | {"BENCH_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300, check=False)


def test_cached_rerun_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    results = tmp_path / "results"
    specs = _cached_tree(results, SMOKE)
    args = ["run", str(SMOKE), "--results", str(results), "--quiet"]
    first = _bench(args, tmp_path / "cache")  # expands the suite (torch loads) and stores the expansion
    assert first.returncode == 0, first.stderr
    assert list((tmp_path / "cache" / "expansions").glob("*.json"))
    again = _bench(args, tmp_path / "cache", probe=True)
    assert again.returncode == 0, again.stderr
    assert f"{len(specs)} runs: 0 done, {len(specs)} cached" in again.stderr
    assert "HEAVY []" in again.stdout, again.stdout


def test_stored_expansion_equals_the_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    suite = load_suite(SMOKE)
    specs = expand(suite)
    assert expansion_cache.load(SMOKE) is None
    expansion_cache.save(SMOKE, suite.name, list(suite.models), specs)
    name, models, again = expansion_cache.load(SMOKE)
    assert (name, models) == (suite.name, list(suite.models))
    # equal up to tuples read back as lists (the keys normalise both alike)
    assert [canonical_json(s.to_json()) for s in again] == [canonical_json(s.to_json()) for s in specs]


def test_a_changed_suite_or_code_is_expanded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    suite_file = tmp_path / "smoke.yaml"
    suite_file.write_text(SMOKE.read_text())
    s = load_suite(suite_file)
    expansion_cache.save(suite_file, s.name, list(s.models), expand(s))
    assert expansion_cache.load(suite_file) is not None
    suite_file.write_text(SMOKE.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    assert expansion_cache.load(suite_file) is None  # another suite text: another key
    suite_file.write_text(SMOKE.read_text())
    monkeypatch.setattr(expansion_cache, "code_digest", lambda: "changed-code")
    assert expansion_cache.load(suite_file) is None  # a VERSION or default changed in code
    monkeypatch.undo()
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    path = next((tmp_path / "cache" / "expansions").glob("*.json"))
    stored = json.loads(path.read_text())
    stored["specs"][0]["seed"] = 7  # a spec whose stored keys no longer follow from it
    path.write_text(json.dumps(stored))
    assert expansion_cache.load(suite_file) is None


def test_scored_keys_from_meta_and_from_the_file_agree(tmp_path: Path) -> None:
    specs = _cached_tree(tmp_path / "a", SMOKE)
    _cached_tree(tmp_path / "b", SMOKE, list_keys=False)  # as runs stored before the list existed
    for sp in specs:
        a = store.run_dir(tmp_path / "a", sp.train_key)
        b = store.run_dir(tmp_path / "b", sp.train_key)
        assert store.scored_keys(a, store.read_meta(a)) == store.scored_keys(b, store.read_meta(b)) == {sp.score_key}
    (a / "metrics.parquet").unlink()
    assert store.scored_keys(a, store.read_meta(a)) == set()  # the list alone proves nothing
