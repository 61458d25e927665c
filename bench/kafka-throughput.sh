#!/usr/bin/env bash
# Sustained throughput from a Kafka-protocol broker through `rulewatch run`.
# Starts tansu on a free loopback port, produces N generated events with `rulewatch loadgen`,
# then runs the engine and reports events/s from its first to its last checkpointed offset.
# Usage: bench/kafka-throughput.sh [EVENTS] [PARTITIONS]   (needs tansu on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
partitions=${2:-4}
cargo build --release --quiet
source bench/broker.sh
RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic logs --partitions "$partitions" \
  --events "$events" --late-share 0
(cd "$work" && RUST_LOG=warn exec "$OLDPWD/$bin" run --brokers 127.0.0.1:$port --topics logs \
  --console none --alerts-topic alerts --checkpoint-interval "${CHECKPOINT_INTERVAL:-1s}" --checkpoint-dir state) &
engine=$!
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-1s} python3 - "$work/state/checkpoint" "$events" "$partitions" <<'PY'
import json, os, sys, time
interval = os.environ["CHECKPOINT_INTERVAL"]
path, total, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = None
while True:
    try:
        body = open(path).read().split("\n", 1)[1]
        done = sum(json.loads(body)["offsets"].values())
    except (OSError, IndexError, ValueError):
        done = 0
    now = time.time()
    if done and first is None:
        first = (now, done)
    if done >= total:
        secs = now - first[0]
        rate = (done - first[1]) / secs if secs > 0 else float("inf")
        print(f"consumed {done} events; {done - first[1]} of them in {secs:.2f} s "
              f"after the first checkpoint: {rate:,.0f} events/s (checkpoint every {interval})")
        break
    time.sleep(0.05)
PY
