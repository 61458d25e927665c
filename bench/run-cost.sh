#!/usr/bin/env bash
# CPU per event of `rulewatch run` against `rulewatch replay` of the same events and against a
# bare librdkafka consumer of the same topic (the floor: host/examples/bare_consumer.rs, with
# rust-rdkafka's one-message poll as run reads, and with librdkafka's batch consume), in
# one run, one worker each: Apache Kafka on a free loopback port, EVENTS generated events
# (`rulewatch loadgen`, seed 7) in a topic of PARTITIONS partitions and in a file. CPU time
# is each process's own, user + system, so that the broker sharing the cores does not blur
# it; startup is included for all three. Each is run RUNS times (default 3); the best counts.
# Usage: bench/run-cost.sh [EVENTS] [PARTITIONS]   (needs Java and Maven; the broker: bench/broker.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-4000000}
partitions=${2:-4}
runs=${RUNS:-3}
cargo build --release --quiet --bin rulewatch --example bare_consumer
source bench/broker.sh
RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic logs --partitions "$partitions" \
  --events "$events" --late-share 0 --seed 7 >/dev/null
RUST_LOG=warn $bin loadgen --output "$work/events.jsonl" --events "$events" --late-share 0 \
  --seed 7 >/dev/null
tick=$(getconf CLK_TCK)
# CPU nanoseconds per event of process $1 so far (utime + stime from /proc, in clock ticks).
ns_per_event() { awk -v tick="$tick" -v n="$events" '{printf "%.0f", ($14 + $15) * 1e9 / tick / n}' "/proc/$1/stat"; }
best() { tr ' ' '\n' | grep . | sort -n | head -1; }
run_ns="" run_rss="" replay_ns="" bare_ns="" batch_ns=""
for r in $(seq 1 "$runs"); do
  http=$(free_port)
  (cd "$work" && RUST_LOG=warn RULEWATCH_WORKERS=1 exec "$bin" run --brokers 127.0.0.1:$port \
    --topics logs --group-id "cost-$r" --console none --checkpoint-dir "state-$r" \
    --keyed-by user_id --http-listen "127.0.0.1:$http") &
  engine=$!
  # Until every event is counted (its metrics say so).
  until curl -s "http://127.0.0.1:$http/metrics" |
    awk -v n="$events" '$1 == "rulewatch_events_total" && $2 >= n {found = 1} END {exit !found}'; do
    sleep 0.05
  done
  run_ns+=" $(ns_per_event $engine)"
  run_rss+=" $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$engine/status")"
  kill "$engine" && wait "$engine" 2>/dev/null || true
  engine=
  # shellcheck disable=SC2016 # $0 is awk's
  replay_ns+=" $( { /usr/bin/time -f '%U %S' "$bin" replay "$work/events.jsonl" --workers 1 \
    --format none >/dev/null; } 2>&1 | tail -1 | awk -v n="$events" '{printf "%.0f", ($1 + $2) * 1e9 / n}')"
  bare_ns+=" $(target/release/examples/bare_consumer 127.0.0.1:$port logs "$events" |
    sed -E 's/.*CPU ([0-9]+) ns.*/\1/')"
  batch_ns+=" $(BATCH=1 target/release/examples/bare_consumer 127.0.0.1:$port logs "$events" |
    sed -E 's/.*CPU ([0-9]+) ns.*/\1/')"
done
run=$(echo "$run_ns" | best) replay=$(echo "$replay_ns" | best) bare=$(echo "$bare_ns" | best)
batch=$(echo "$batch_ns" | best)
echo "CPU per event, best of $runs ($events events, $partitions partitions, 1 worker):"
echo "  run     $run ns   (runs:$run_ns; peak RSS MiB:$run_rss)"
echo "  replay  $replay ns   (runs:$replay_ns)"
echo "  bare librdkafka consumer  $bare ns   (runs:$bare_ns)"
echo "  bare consumer, batch consume  $batch ns   (runs:$batch_ns)"
awk -v a="$run" -v b="$replay" -v c="$bare" \
  'BEGIN {printf "  run / replay %.2f; run - bare consumer %d ns (what run adds to reading)\n", a / b, a - c}'
