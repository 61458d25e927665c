"""The crash rule as a Spark Structured Streaming job, for bench/peers/run.sh.

Usage: spark_crash.py INPUT_DIR OUTDIR [FILES_PER_TRIGGER]

INPUT_DIR is a folder of JSON-lines files (Spark's file source reads folders). The alert rows
go to OUTDIR/alerts (json file sink, append mode), the checkpoint to OUTDIR/checkpoint, and a
summary to OUTDIR/summary.json. With FILES_PER_TRIGGER the folder is read in micro-batches of
that many files (Trigger.AvailableNow honours maxFilesPerTrigger), otherwise in one batch.
SPARK_PUSHDOWN=1 lets the optimizer push the filter below withWatermark, into the JSON scan
(see README.md); input rows then count only the rows that pass the pushed part of the filter.
"""
import glob
import json
import os
import resource
import sys
import time

from pyspark import SparkContext
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

src, out = sys.argv[1], sys.argv[2]
files_per_trigger = sys.argv[3] if len(sys.argv) > 3 else None

builder = (
    SparkSession.builder.master("local[2]")
    .appName("crash-rule")
    # 2 cores: the default 200 shuffle (and state store) partitions would only add overhead.
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    # Since Spark 3.4 a stateful operator drops late rows by the watermark of the batch
    # before the current one (for chains of stateful operators). With one operator, false
    # restores the current batch's watermark: late handling one batch closer to rulewatch's.
    .config("spark.sql.streaming.statefulOperator.allowMultiple", "false")
    # Keep every batch's progress, to sum the input rows afterwards.
    .config("spark.sql.streaming.numRecentProgressUpdates", "1000000")
)
if os.environ.get("SPARK_PUSHDOWN") != "1":
    # Keep the filter above withWatermark, so that every decoded event moves the watermark as
    # in rulewatch, and numInputRows counts all lines (Spark would push the filter into the
    # JSON scan and count only the rows that pass it).
    builder = builder.config("spark.sql.optimizer.excludedRules", ",".join(
        "org.apache.spark.sql.catalyst.optimizer." + rule
        for rule in ("PushDownPredicates", "PushPredicateThroughNonJoin")))
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("WARN")

# Only the fields the query needs (rulewatch too decodes only those). A line that is not JSON,
# or whose fields do not fit, becomes a row of nulls (PERMISSIVE mode) and fails the filter.
schema = StructType([
    StructField("timestamp", TimestampType()),
    StructField("severity", StringType()),
    StructField("user_id", StringType()),
    StructField("content", StringType()),
])
reader = spark.readStream.schema(schema).option("mode", "PERMISSIVE")
if files_per_trigger:
    reader = reader.option("maxFilesPerTrigger", files_per_trigger)

alerts = (
    reader.json(src)
    .withColumnRenamed("timestamp", "ts")
    .withWatermark("ts", "10 seconds")
    .where(F.lower("content").contains("crash") & F.col("severity").isin("High", "Critical")
           & F.col("user_id").isNotNull())
    .groupBy(F.window("ts", "10 seconds"), "user_id")
    .count()
    .where("count > 2")
    .select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"),
            "user_id", F.col("count").alias("crash_count"))
)

# The query time: from start() to the end of the last (no-data) batch.
t0 = time.monotonic()
query = (
    alerts.writeStream.outputMode("append").format("json")
    .option("path", os.path.join(out, "alerts"))
    .option("checkpointLocation", os.path.join(out, "checkpoint"))
    .trigger(availableNow=True)
    .start()
)
query.awaitTermination()
secs = time.monotonic() - t0

progress = query.recentProgress
rows = sum(p["numInputRows"] for p in progress)
# Spark drops late rows at the state store, after partial aggregation: these are
# (window, user_id) partial counts, not events.
late = sum(op.get("numRowsDroppedByWatermark", 0) for p in progress for op in p["stateOperators"])
watermark = progress[-1]["eventTime"].get("watermark") if progress else None
# Counting the sink's rows is not timed.
n_alerts = sum(1 for f in glob.glob(os.path.join(out, "alerts", "part-*")) for _ in open(f))
print(f"spark: {len(progress)} batches, input rows {rows}, late partial rows dropped {late}, "
      f"alerts {n_alerts}, final watermark {watermark}")
print(f"spark: query wall {secs:.2f} s, {rows / secs:,.0f} events/s")

spark.stop()
# End the JVM and reap it, so that its peak RSS counts in this process's children (and so in
# /usr/bin/time around this script): the JVM is the largest process.
gateway = SparkContext._gateway  # pylint: disable=protected-access
proc = getattr(gateway, "proc", None)
if proc is not None:
    proc.stdin.close()
    proc.wait()
summary = {
    "input_rows": rows, "late_partial_rows": late, "alerts": n_alerts, "batches": len(progress),
    "watermark": watermark, "query_secs": secs,
    "jvm_max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "python_max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}
with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f)
sys.stdout.flush()
# The JVM is gone: skip py4j's finalizers, which would try to reach it and log errors.
os._exit(0)  # pylint: disable=protected-access
