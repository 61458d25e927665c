# Sourced by the bench scripts: starts Apache Kafka (tests/kafka/broker.sh; its jars from
# tests/kafka/fetch.sh) on a free loopback port and cleans up on exit. Sets: bin (the release binary), work (a scratch folder), port, broker;
# a script that starts an engine sets `engine` to its pid so that it is stopped first.
# RULEWATCH_BIN: another build to measure (e.g. a copy of an earlier commit's binary).
bin=$(realpath "${RULEWATCH_BIN:-target/release/rulewatch}")
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tests/kafka/fetch.sh
tests/kafka/broker.sh "$work/kafka" "$port" "$(free_port)" >"$work/kafka.log" 2>&1 &
broker=$!
engine=
cleanup() {
  # shellcheck disable=SC2086 # one or more pids
  [ -n "$engine" ] && kill $engine 2>/dev/null && wait $engine 2>/dev/null
  kill "$broker" 2>/dev/null && sleep 2 && kill -9 "$broker" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
until (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; do sleep 0.1; done
