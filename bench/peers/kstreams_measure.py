"""Runs one stream processor over a Kafka backlog and measures it (bench/peers/kstreams.sh).

    kstreams_measure.py EVENTS LABEL PROGRESS LINGER -- COMMAND...

PROGRESS says how many records the process has read: `metrics:URL` (rulewatch's
`rulewatch_events_total` on its /metrics) or `stdout` (the last `events N` line it printed,
as bench/peers/kstreams/CrashJob does). The process is started, watched every 20 ms until it
has read EVENTS records, left running LINGER seconds more (for its last outputs: Kafka Streams
writes at commits), then stopped with SIGTERM. Prints one line of figures:

- steady events/s: records read from the first one to the last, over that time;
- CPU per million events, steady (the same span) and whole (from the process's start, JVM
  start and JIT included), from /proc/PID/stat (user + system);
- wall seconds from start to the last record; peak RSS (VmHWM).
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def progress_of(spec, out_path):
    if spec.startswith("metrics:"):
        url = spec[len("metrics:"):]

        def read():
            try:
                body = urllib.request.urlopen(url, timeout=1).read().decode()
            except OSError:
                return 0
            for line in body.splitlines():
                if line.startswith("rulewatch_events_total "):
                    return int(float(line.split()[1]))
            return 0

        return read

    def read_stdout():
        try:
            with open(out_path, "rb") as f:
                f.seek(max(0, os.path.getsize(out_path) - 4096))
                lines = [l for l in f.read().decode(errors="replace").splitlines()
                         if l.startswith("events ")]
        except OSError:
            return 0
        return int(lines[-1].split()[1]) if lines else 0

    return read_stdout


def main():
    events, label, spec, linger = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    command = sys.argv[sys.argv.index("--") + 1:]
    out_path = f"{label}.out"
    with open(out_path, "wb") as out, open(f"{label}.err", "wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err)
    read = progress_of(spec, out_path)
    started = time.monotonic()
    first = None
    while True:
        if proc.poll() is not None:
            sys.exit(f"{label}: exited ({proc.returncode}); see {label}.err")
        n, now = read(), time.monotonic()
        if first is None and n > 0:
            first = (now, n, cpu_seconds(proc.pid))
        if n >= events:
            cpu, rss = cpu_seconds(proc.pid), peak_rss_mib(proc.pid)
            break
        if now - started > 600:
            sys.exit(f"{label}: {n} of {events} events read in 10 minutes")
        time.sleep(0.02)
    secs = now - first[0]
    steady = (n - first[1]) / secs
    per_m = (cpu - first[2]) / ((n - first[1]) / 1e6)
    whole = cpu / (n / 1e6)
    time.sleep(linger)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    print(f"{label:<28} {steady:>12,.0f} events/s  CPU {per_m:6.2f} s/M events "
          f"(whole process {whole:6.2f})  {now - started:6.1f} s to the last event  "
          f"peak RSS {rss:5.0f} MiB")


main()
