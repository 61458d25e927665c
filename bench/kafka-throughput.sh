#!/usr/bin/env bash
# Sustained throughput from a Kafka-protocol broker through `rulewatch run`, with one or more
# instances in one consumer group (checkpoints in a Kafka topic, as for scale-out), under
# each guarantee in turn on the same broker and the same generated backlog.
# Starts Apache Kafka on a free loopback port, produces N generated events with `rulewatch loadgen`,
# then, per guarantee, starts the instances together (a group of their own, from the start of
# the topic) and reports events/s from the first event read to the last, summed over the
# instances' `rulewatch_events_total`.
# Usage: bench/kafka-throughput.sh [EVENTS] [PARTITIONS] [INSTANCES]   (needs Java and Maven; the broker: bench/broker.sh)
#   GUARANTEES (default "at_least_once"; "at_least_once exactly_once" compares them);
#   CHECKPOINT_INTERVAL (default: 1s under at_least_once, the engine's 100ms under exactly_once).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
partitions=${2:-4}
instances=${3:-1}
cargo build --release --quiet
source bench/broker.sh
RUST_LOG=warn $bin loadgen --brokers 127.0.0.1:$port --topic logs --partitions "$partitions" \
  --events "$events" --late-share 0
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
round=0
for guarantee in ${GUARANTEES:-at_least_once}; do
  round=$((round + 1))
  # A group and outputs of their own each time: every round reads the whole backlog.
  run=$guarantee-$round
  interval=${CHECKPOINT_INTERVAL:-1s}
  [ "$guarantee" = exactly_once ] && interval=${CHECKPOINT_INTERVAL:-100ms}
  urls=()
  pids=()
  for i in $(seq 1 "$instances"); do
    http=$(free_port)
    urls+=("http://127.0.0.1:$http/metrics")
    (cd "$work" && RUST_LOG=warn exec "$bin" run --brokers 127.0.0.1:$port --topics logs \
      --group-id "rulewatch-$run" --guarantee "$guarantee" --console none \
      --alerts-topic "alerts-$run" --checkpoint-topic "checkpoints-$run" \
      --keyed-by user_id --checkpoint-interval "$interval" --http-listen 127.0.0.1:$http) &
    pids+=($!)
  done
  engine="${pids[*]}"
  echo -n "$guarantee, checkpoints every $interval: "
  python3 - "$events" "$instances" "${urls[@]}" <<'PY'
import sys, time, urllib.request
total, instances, urls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def read(url):
    try:
        for line in urllib.request.urlopen(url, timeout=1).read().decode().splitlines():
            if line.startswith("rulewatch_events_total "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0
# From the first moment every instance has read something (they share the partitions) to
# the last event.
start = None
while True:
    counts = [read(u) for u in urls]
    done, now = sum(counts), time.time()
    if start is None and all(counts):
        start = (now, done)
    if done >= total:
        break
    time.sleep(0.05)
if start is None:
    print(f"{instances} instance(s): not all of them read anything before the input was "
          "used up; give more events")
else:
    secs = now - start[0]
    print(f"{instances} instance(s): {int(done - start[1])} events in {secs:.2f} s while all "
          f"of them read: {(done - start[1]) / secs:,.0f} events/s "
          f"(per instance: {', '.join(str(int(c)) for c in counts)})")
PY
  # shellcheck disable=SC2086 # one or more pids
  kill $engine && wait $engine 2>/dev/null || true
  engine=
done
