#!/usr/bin/env bash
# rulewatch run against Kafka Streams 4.4 (bench/peers/kstreams/CrashJob.java, the same rule)
# on the same backlog of one Apache Kafka broker: EVENTS generated events keyed by user_id in
# PARTITIONS partitions, then one matching event per key `sentinel-0` … `sentinel-63` far in
# the future, so that every window closes in both (Kafka Streams' stream time moves only with
# the records that reach the window, i.e. matching ones). Each engine reads the whole backlog
# from the start, with 1 and then 2 threads (rulewatch: [engine] workers; Kafka Streams:
# num.stream.threads), in append mode: rulewatch's defaults with checkpoints on disk; Kafka
# Streams' defaults (at-least-once, commits every 30 s, RocksDB state, its JVM's defaults).
# Prints a line of figures per run (bench/peers/kstreams_measure.py) and compares the alerts.
#
# Usage: bench/peers/kstreams.sh [EVENTS] [PARTITIONS]   (needs Java 17 and Maven;
# RULEWATCH_BIN=path measures that build instead of building this checkout's)
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-5000000}
partitions=${2:-4}
[ -n "${RULEWATCH_BIN:-}" ] || cargo build --release --quiet --bin rulewatch
mvn -q -B -f bench/peers/kstreams/pom.xml package
source bench/broker.sh
root=$PWD
libs="$root/target/setup/kafka/libs/*"
RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic logs --partitions "$partitions" \
  --events "$events" --late-share 0
for i in $(seq 0 63); do
  printf 'sentinel-%s\t{"timestamp":"2026-01-29T00:00:00Z","severity":"High","user_id":"sentinel-%s","content":"crash sentinel"}\n' "$i" "$i"
done | java -cp "$libs" org.apache.kafka.tools.ConsoleProducer --bootstrap-server 127.0.0.1:$port \
  --topic logs --property parse.key=true >/dev/null
total=$((events + 64))
cd "$work"
for threads in 1 2; do
  http=$(free_port)
  RUST_LOG=warn RULEWATCH_WORKERS=$threads python3 "$root/bench/peers/kstreams_measure.py" \
    "$total" "rulewatch-$threads" "metrics:http://127.0.0.1:$http/metrics" 3 -- \
    "$bin" run --brokers 127.0.0.1:$port --topics logs --group-id "rulewatch-$threads" \
    --keyed-by user_id --console none --alerts-topic "alerts-rulewatch-$threads" \
    --checkpoint-dir "state-rulewatch-$threads" --http-listen "127.0.0.1:$http"
  python3 "$root/bench/peers/kstreams_measure.py" "$total" "kstreams-$threads" stdout 35 -- \
    java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$root/target/kstreams/kstreams-crash-1.jar:$root/target/kstreams/libs/*" \
    rulewatch.peer.CrashJob 127.0.0.1:$port logs "alerts-kstreams-$threads" \
    "kstreams-$threads" "$threads" at_least_once "$work/state-kstreams-$threads" append
done
# The alerts of each run, as (key, window start, count).
for run in rulewatch-1 kstreams-1 rulewatch-2 kstreams-2; do
  java -cp "$libs" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server \
    127.0.0.1:$port --topic "alerts-$run" --from-beginning --timeout-ms 10000 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue  # not an alert: the console consumer notes
    a = json.loads(line)
    print(a.get("key", a.get("user_id")), a["window_start"], a["count"])' | sort >"$run.alerts"
done
for run in kstreams-1 rulewatch-2 kstreams-2; do
  if cmp -s rulewatch-1.alerts "$run.alerts"; then
    echo "alerts: $run = rulewatch-1 ($(wc -l <"$run.alerts") alerts)"
  else
    echo "alerts: $run differs from rulewatch-1 ($(wc -l <"$run.alerts") vs $(wc -l <rulewatch-1.alerts)):"
    diff rulewatch-1.alerts "$run.alerts" | head -5
  fi
done
