#!/usr/bin/env bash
# Event-to-alert latency at a steady rate, rulewatch run against Kafka Streams 4.4 in the same
# run, each in update mode (every count above 2 reported as it changes) on a topic of its own
# fed by `rulewatch loadgen --live` at RATE events/s for SECONDS into 4 partitions; the
# alert_latency example reads the alerts. rulewatch: its defaults, 2 workers. Kafka Streams:
# 2 stream threads, GUARANTEE exactly_once_v2 (its default commit interval then: 100 ms; the
# record cache is flushed at each commit) or at_least_once (30 s: updates wait in the cache up
# to a commit).
#
# Usage: bench/peers/kstreams-latency.sh [RATE] [SECONDS] [GUARANTEE]   (needs Java and Maven;
# RULEWATCH_BIN=path measures that build)
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-100000}
seconds=${2:-20}
guarantee=${3:-exactly_once_v2}
[ -n "${RULEWATCH_BIN:-}" ] || cargo build --release --quiet --bin rulewatch
cargo build --quiet --example alert_latency
mvn -q -B -f bench/peers/kstreams/pom.xml package
source bench/broker.sh
root=$PWD
latency=$root/target/debug/examples/alert_latency
# One engine's turn: $1 the topic, then the command that starts the engine.
measure() {
  local topic=$1 alerts=$1-alerts
  shift
  RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic "$topic" --partitions 4 \
    --events 1 --live
  # The engine's own output (Kafka Streams' progress lines) kept apart.
  (cd "$work" && exec "$@" >"$work/$topic.out") &
  engine=$!
  sleep 10
  "$latency" 127.0.0.1:$port "$alerts" 10000 $((seconds + 5)) &
  local reader=$!
  RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic "$topic" --partitions 4 --live \
    --rate "$rate" --events $((rate * seconds)) --disorder 0 --late-share 0 --seed 7
  wait $reader || echo "the latency reader failed ($?)"
  kill $engine && wait $engine || true
  engine=
}
echo "rulewatch run, update mode, 2 workers:"
measure rw env RUST_LOG=warn RULEWATCH_WORKERS=2 "$bin" run --brokers 127.0.0.1:$port \
  --topics rw --console none --alerts-topic rw-alerts --mode update --checkpoint-dir state
echo "Kafka Streams, update mode, 2 threads, $guarantee:"
measure ks java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "$root/target/kstreams/kstreams-crash-1.jar:$root/target/kstreams/libs/*" \
  rulewatch.peer.CrashJob 127.0.0.1:$port ks ks-alerts kstreams-latency 2 "$guarantee" \
  "$work/ks-state" update
