"""Summary of bench/peers/run.sh: timings, memory and alert rows of rulewatch and Spark.

Usage: compare.py WORK EVENTS SPARK_RUN...   (each SPARK_RUN a folder that spark_crash.py wrote)
Reads WORK/rulewatch.time, WORK/rulewatch.jsonl and, per run, RUN.time and RUN/summary.json.
"""
import glob
import json
import os
import sys
from datetime import datetime


def ms(text):
    """RFC 3339 (as both tools write it) to epoch milliseconds."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def timing(path):
    """`wall_seconds max_rss_kib`, as run.sh's measure() writes it."""
    wall, rss = open(path, encoding="utf-8").read().split()
    return float(wall), int(rss)


work, events, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rw_wall, rw_rss = timing(os.path.join(work, "rulewatch.time"))
rw = {}
for line in open(os.path.join(work, "rulewatch.jsonl"), encoding="utf-8"):
    row = json.loads(line)
    rw[(ms(row["window_start"]), row["key"])] = (ms(row["window_end"]), row["count"])

cols = [("rulewatch", rw_wall, None, rw_rss, len(rw))]
diffs = []
for run in runs:
    s = json.load(open(os.path.join(run, "summary.json"), encoding="utf-8"))
    wall, rss = timing(run + ".time")
    cols.append((f"spark {s['batches']} batches", wall, s["query_secs"], rss, s["alerts"]))
    sp = {}
    for f in glob.glob(os.path.join(run, "alerts", "part-*")):
        for line in open(f, encoding="utf-8"):
            row = json.loads(line)
            sp[(ms(row["window_start"]), row["user_id"])] = row["crash_count"]
    wm = ms(s["watermark"]) if s["watermark"] else 0
    only_rw = [k for k in rw if k not in sp]
    diffs.append(
        f"  {cols[-1][0]}: {sum(1 for k in rw if sp.get(k) == rw[k][1])} identical rows, "
        f"{sum(1 for k in rw if k in sp and sp[k] != rw[k][1])} with another count, "
        f"{len(only_rw)} only in rulewatch ({sum(1 for k in only_rw if rw[k][0] > wm)} of them "
        f"in windows Spark's final watermark {s['watermark']} never closed), "
        f"{sum(1 for k in sp if k not in rw)} only in Spark")


def row(label, cells):
    print(f"{label:<24}" + "".join(f"{c:>20}" for c in cells))


print(f"=== crash rule over {events:,} events; load average {open('/proc/loadavg').read()[:14]}")
row("", [c[0] for c in cols])
row("process wall, s", [f"{c[1]:.2f}" for c in cols])
row("query wall, s", ["-" if c[2] is None else f"{c[2]:.2f}" for c in cols])
row("events/s, process", [f"{events / c[1]:,.0f}" for c in cols])
row("events/s, query", ["-" if c[2] is None else f"{events / c[2]:,.0f}" for c in cols])
row("peak RSS, MiB", [f"{c[3] / 1024:,.0f}" for c in cols])
row("alert rows", [c[4] for c in cols])
for c in cols[1:]:
    print(f"rulewatch/{c[0]}: {c[1] / rw_wall:.1f}x the events/s on process wall, "
          f"{c[2] / rw_wall:.1f}x against Spark's query wall alone")
print("alert rows against rulewatch's (window, user_id, count):")
print("\n".join(diffs))
