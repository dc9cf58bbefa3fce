"""`bench serve-bench` (issue 11): the mixed-task serving measurement runs from the CLI."""

from __future__ import annotations

from bench.cli import main
from bench.commands.serve_bench import render, serve_bench
from bench.interfaces import EvalItem


def test_serve_bench_rows_on_a_tiny_model():
    items = [EvalItem(f"s{i}", f"name : Place {i} | food : Thai", ("x",)) for i in range(6)]
    rows = serve_bench(model="tiny-gpt2", tasks=[1, 3], sources=6, beam=2, new_tokens=3, batch_size=4, length=2,
                       items=items)
    assert [(r["tasks"], r["mode"]) for r in rows] == [(1, "per-task"), (1, "mixed"), (3, "per-task"), (3, "mixed")]
    for r in rows:
        assert r["sources"] == 6 and r["seconds"] > 0 and 0 < r["latency_mean_s"] <= r["latency_max_s"]
    table = render(rows)
    assert table[0].startswith("| tasks N |") and len(table) == 2 + len(rows)
    assert table[3].endswith("x |")  # the mixed row carries the speed-up over per-task


def test_serve_bench_bad_numbers_exit_2(capsys):
    assert main(["serve-bench", "--model", "tiny-gpt2", "--tasks", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
