#!/usr/bin/env bash
# Replay against bare native JSON parsers built at their best (issue 35), on the same lines
# and machine, in one run: `rulewatch replay` of N generated events (whole process, output
# discarded) with 1 and 2 workers, and serde_json and sonic-rs parsing the same lines into a
# struct of the crash rule's four fields with the crash filter applied — built with the `peer`
# profile (fat LTO, one codegen unit), as their authors benchmark them. Best of ROUNDS each.
# Usage: bench/parsers.sh [EVENTS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-5000000}
rounds=${2:-3}
cargo build --release --quiet -p rulewatch
cargo build --profile peer --quiet -p rulewatch-baselines
bin=$(realpath "${RULEWATCH_BIN:-target/release/rulewatch}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
RUST_LOG=warn "$bin" loadgen --events "$events" --output "$work/events.jsonl"
target/peer/rulewatch-baselines "$work/events.jsonl" "$rounds" > "$work/baselines.txt"
python3 - "$bin" "$work" "$events" "$rounds" <<'PY'
import subprocess, sys, time
bin, work, events, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def replay(workers):
    best = None
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([bin, "replay", f"{work}/events.jsonl", "--workers", str(workers),
                        "--format", "jsonl"], check=True, stdout=subprocess.DEVNULL,
                       env={"RUST_LOG": "error", "PATH": "/usr/bin:/bin"})
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return events / best
one, two = replay(1), replay(2)
print(f"replay, 1 worker: {one:,.0f} events/s (whole process, best of {rounds})")
print(f"replay, 2 workers: {two:,.0f} events/s = {two / one:.2f}x one worker")
for line in open(f"{work}/baselines.txt"):
    words = line.split()
    name, rate = words[0], float(words[words.index("lines/s") + 1])
    print(f"{name} (peer profile, in memory): {rate:,.0f} lines/s; replay with 1 worker = "
          f"{one / rate:.2f}x, with 2 = {two / rate:.2f}x")
PY
