#!/usr/bin/env bash
# Event-to-alert latency of `rulewatch run` in update mode at a steady rate: Apache Kafka on a free
# loopback port, `rulewatch loadgen --live` producing at RATE events/s for SECONDS, the engine,
# and the alert_latency example reading the alerts topic.
# Usage: bench/kafka-latency.sh [RATE] [SECONDS]   (needs Java and Maven; the broker: bench/broker.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100000}
seconds=${2:-20}
cargo build --release --quiet --bin rulewatch --example alert_latency
source bench/broker.sh
# Create the topic with a first event, then start the engine and the latency reader.
RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic logs --partitions 4 --events 1 --live
(cd "$work" && RUST_LOG=warn exec "$bin" run --brokers 127.0.0.1:$port --topics logs \
  --console none --alerts-topic alerts --mode update --checkpoint-dir state) &
engine=$!
sleep 3
target/release/examples/alert_latency 127.0.0.1:$port alerts 10000 $((seconds + 5)) &
reader=$!
RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic logs --partitions 4 --live \
  --rate "$rate" --events $((rate * seconds)) --disorder 0 --late-share 0 --seed 7
wait $reader
