#!/usr/bin/env bash
# Data parallelism over MPI on one machine: the BYOL step of `ssl bench` in one process with one
# thread, on 2 MPI ranks with one thread each, and in one process with 2 threads, alternated
# round by round (A B C A B C) so that the machine's drift hits all three alike. Each `ssl bench`
# under mpirun also times the gradient all-reduce alone (the communication a step adds).
#
#   cargo build --release --features mpi
#   scripts/bench_mpi.sh [rounds] [steps]          # default 3 rounds of 12 timed steps
#
# Needs Open MPI's mpirun; as root it passes --allow-run-as-root.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
steps="${2:-12}"
ssl=target/release/ssl
root_flags=()
if [ "$(id -u)" -eq 0 ]; then
  root_flags=(--allow-run-as-root)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
lscpu | grep -m1 "Model name"
for workload in step-smallcnn step-resnet18-cifar; do
  for round in $(seq 1 "$rounds"); do
    echo "== $workload round $round"
    RAYON_NUM_THREADS=1 "$ssl" bench --workloads "$workload" --steps "$steps" 2>&1 \
      | grep -E "^$workload " | sed 's/^/1 process, 1 thread: /'
    mpirun "${root_flags[@]}" --oversubscribe --bind-to none -np 2 -x RAYON_NUM_THREADS=1 \
      "$ssl" bench --workloads "$workload" --steps "$steps" 2>&1 \
      | grep -E "^$workload" | sed 's/^/2 ranks, 1 thread each: /'
    "$ssl" bench --workloads "$workload" --steps "$steps" 2>&1 \
      | grep -E "^$workload " | sed 's/^/1 process, 2 threads: /'
  done
done
