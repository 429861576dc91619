#!/usr/bin/env bash
# Runs the C references several times and prints one JSON object per line (JSONL) on stdout:
#   {"kind": "floor", "run": i, "load": "...", ...floor output...}
#   {"kind": "c_reference", "run": i, "load": "...", ...reference_client output...}
# for floor (spin, futex) and the reference client over vCPUs x completion mode x loop.
# Summarize with: node benches/c/summarize.mjs < results.jsonl
#
# Usage: benches/c/run-matrix.sh [--runs R] [--requests N] [--vcpus "1 2 4 16"]
#                                [--loops "attach busy"]
# Build first: scripts/build-bench-c.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=3 requests=100000 vcpus="1 2 4 16" loops="attach busy"
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --vcpus) vcpus=$2; shift 2 ;;
    --loops) loops=$2; shift 2 ;;
    *) echo "run-matrix: unknown option $1" >&2; exit 2 ;;
  esac
done
bin=target/bench-c
[[ -x $bin/floor && -x $bin/reference_client ]] || { echo "run-matrix: run scripts/build-bench-c.sh first" >&2; exit 1; }
load() { cut -d' ' -f1 /proc/loadavg; }
for ((r = 1; r <= runs; r++)); do
  out=$("$bin/floor")
  echo "{\"kind\": \"floor\", \"run\": $r, \"load\": \"$(load)\", ${out#\{}"
  for loop in $loops; do
    for mode in polling notify; do
      for v in $vcpus; do
        out=$("$bin/reference_client" --mode "$mode" --loop "$loop" --vcpus "$v" --requests "$requests")
        echo "{\"kind\": \"c_reference\", \"run\": $r, \"load\": \"$(load)\", ${out#\{}"
      done
    done
  done
done
