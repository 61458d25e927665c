#!/usr/bin/env bash
# Event-to-alert latency of `rulewatch run` in update mode at a steady rate, under each
# guarantee in one run: Apache Kafka on a free loopback port, `rulewatch loadgen --live`
# producing at RATE events/s for SECONDS, the engine, and the alert_latency example reading
# the alerts topic — read_uncommitted under at_least_once, read_committed under exactly_once
# (an alert counts once a consumer of committed records can see it). The alerts of the first
# WARMUP seconds (default 5) are not counted, under either guarantee: a fresh broker's first
# second or two (its JIT, a topic's first writes and transactions) would make the tail.
# Usage: bench/kafka-latency.sh [RATE] [SECONDS]   (needs Java and Maven; the broker: bench/broker.sh)
#   GUARANTEES="at_least_once exactly_once" (the default): which to measure, in that order.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100000}
seconds=${2:-30}
cargo build --release --quiet --bin rulewatch --example alert_latency
source bench/broker.sh
for guarantee in ${GUARANTEES:-at_least_once exactly_once}; do
  topic=logs-$guarantee
  isolation=read_uncommitted
  [ "$guarantee" = exactly_once ] && isolation=read_committed
  # Create the topic with a first event, then start the engine and the latency reader.
  RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic "$topic" --partitions 4 --events 1 --live
  (cd "$work" && RUST_LOG=warn exec "$bin" run --brokers 127.0.0.1:$port --topics "$topic" \
    --group-id "rulewatch-$guarantee" --guarantee "$guarantee" --console none \
    --alerts-topic "alerts-$guarantee" --mode update --checkpoint-dir "state-$guarantee" \
    --checkpoint-topic "checkpoints-$guarantee" --http-listen off) &
  engine=$!
  sleep 3
  echo -n "$guarantee ($isolation reader): "
  WARMUP=${WARMUP:-5} target/release/examples/alert_latency 127.0.0.1:$port "alerts-$guarantee" 10000 $((seconds + 5)) \
    "$isolation" &
  reader=$!
  RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic "$topic" --partitions 4 --live \
    --rate "$rate" --events $((rate * seconds)) --disorder 0 --late-share 0 --seed 7
  wait $reader
  kill "$engine" && wait "$engine" 2>/dev/null || true
  engine=
done
