#!/usr/bin/env bash
# rulewatch against Spark Structured Streaming: the crash rule over the same generated file.
# Generates EVENTS events once, then times `rulewatch replay` and the Spark job twice: over the
# file in one micro-batch, and over the file cut into CHUNK_LINES-line files, one per batch.
# Usage: bench/peers/run.sh [EVENTS [LOADGEN_OPTION...]]   (default 1000000 events; needs the
#        venv, see README.md). Options after EVENTS go to `rulewatch loadgen`, e.g. --bad 0.01.
# Env: RULEWATCH (binary, default target/release/rulewatch), SPARK_PYTHON (the venv's python),
#      CHUNK_LINES (default 10000 = 10 s of event time), WORK (folder to keep the files in).
set -euo pipefail
cd "$(dirname "$0")/../.."
events=${1:-1000000}
rw=${RULEWATCH:-target/release/rulewatch}
py=${SPARK_PYTHON:-/work/.venvs/spark/bin/python}
chunk=${CHUNK_LINES:-10000}
work=${WORK:-$(mktemp -d /tmp/rw-peers.XXXXXX)}
here=bench/peers
export SPARK_LOCAL_IP=127.0.0.1   # loopback only, and no warning about the hostname

# measure NAME CMD...: runs CMD, writes "wall_seconds max_rss_kib" to $work/NAME.time.
# The RSS is that of the largest process among CMD and the children it waited for.
measure() {
  local out=$work/$1.time
  shift
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f '%e %M' -o "$out" "$@"
  else
    python3 -c 'import resource, subprocess, sys, time
t = time.monotonic(); rc = subprocess.call(sys.argv[2:]); t = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(f"{t:.2f} {rss}\n"); sys.exit(rc)' "$out" "$@"
  fi
}

mkdir -p "$work"
echo "work folder: $work"
"$rw" loadgen --events "$events" --output "$work/events.jsonl" "${@:2}"

# Spark's file source reads folders: one holding the file itself (a hard link), one holding it
# cut into chunks. Spark takes new files oldest first (by mtime, in ms), so the chunks get
# mtimes one second apart, in the order of the lines.
mkdir -p "$work/one" "$work/chunks"
ln -f "$work/events.jsonl" "$work/one/events.jsonl"
split -l "$chunk" -d -a 6 --additional-suffix=.jsonl "$work/events.jsonl" "$work/chunks/part-"
files=("$work"/chunks/part-*)
t=$(($(date +%s) - ${#files[@]}))
for f in "${files[@]}"; do
  touch -d "@$((t += 1))" "$f"
done

echo "--- rulewatch replay"
measure rulewatch "$rw" replay "$work/events.jsonl" --format jsonl --mode append \
  > "$work/rulewatch.jsonl"
echo "--- spark, one micro-batch"
measure spark-one "$py" "$here/spark_crash.py" "$work/one" "$work/spark-one"
echo "--- spark, ${#files[@]} micro-batches of $chunk lines"
measure spark-batches "$py" "$here/spark_crash.py" "$work/chunks" "$work/spark-batches" 1

python3 "$here/compare.py" "$work" "$events" "$work/spark-one" "$work/spark-batches"
