#!/usr/bin/env bash
# rulewatch replay with 1 and 2 workers against DuckDB with 1 and 2 threads, on one file of
# generated events (5 M by default), each timed as a whole (wall clock, file in the page
# cache). Needs a venv with duckdb: python3 -m venv /work/.venvs/duckdb &&
# /work/.venvs/duckdb/bin/pip install duckdb (or DUCKDB_PYTHON=/its/bin/python).
# Usage: bench/peers/threads.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-5000000}
python=${DUCKDB_PYTHON:-/work/.venvs/duckdb/bin/python}
bin=$(realpath "${RULEWATCH:-target/release/rulewatch}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" loadgen --events "$events" --output "$work/events.jsonl" 2>/dev/null
cat "$work/events.jsonl" >/dev/null # into the page cache
for round in 1 2; do
  for workers in 1 2; do
    started=$(date +%s.%N)
    alerts=$("$bin" replay "$work/events.jsonl" --workers "$workers" --format jsonl 2>/dev/null | wc -l)
    ended=$(date +%s.%N)
    printf 'rulewatch workers %s: %.2f s, %s alerts (round %s)\n' "$workers" \
      "$(echo "$ended - $started" | bc)" "$alerts" "$round"
  done
  "$python" bench/peers/duckdb_crash.py "$work/events.jsonl" 1 2
done
