#!/usr/bin/env bash
# The CPU replication (suites/replication_cpu.yaml, issue #10), in the order that gives a
# complete answer soonest: one subset of every low-data size, the Table 5 ablation, then the
# other subsets, then WebNLG. Kill-safe: every run is cached, so a rerun does only what is
# missing; start it again in the next session. Runs at the lowest CPU priority and under the
# benchmarks' lock file (BENCH_LOCK), so benchmarks and tests never share the cores with it.
#   nohup benchmarks/run_replication.sh > /tmp/replication.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
LOCK="${BENCH_LOCK:-/tmp/prefix-bench.lock}"
RESULTS="${RESULTS:-results/replication_cpu}"
export BENCH_DATA_DIR="${BENCH_DATA_DIR:-$(cd .. && pwd)/shared/data}"
BENCH="${BENCH:-.venv/bin/bench}"

step() {
  echo "== $(date -u +%FT%TZ) bench run --where $*" >&2
  nice -n 19 flock "$LOCK" "$BENCH" run suites/replication_cpu.yaml --results "$RESULTS" --quiet "$@"
}

step --where subset=0 dataset=e2e train_size=50 --only prefix finetune
step --where subset=0 dataset=e2e train_size=100 --only prefix finetune
step --where subset=0 dataset=e2e train_size=200 --only prefix finetune
step --where subset=0 dataset=e2e train_size=500 --only prefix finetune
step --where subset=0 dataset=e2e train_size=500 --only prefix_10 infix_10 emb_10
step --where subset=1 dataset=e2e
step --where subset=2 dataset=e2e
step --where dataset=webnlg
echo "== $(date -u +%FT%TZ) done" >&2
