//! `replay --brokers`: a backtest over the history of a topic with 4 partitions gives,
//! alert for alert, what `run` gives over the same topic and the reference's alerts over
//! those partitions (each with its own watermark), and `--from`/`--to` select the records
//! they say.

mod common;

use common::engine::{Engine, dedup, sorted};
use common::kafka::{Broker, sentinels};
use common::*;
use std::path::Path;
use std::time::Duration;

const PARTITIONS: usize = 4;

/// One produced record: its partition, key, line and timestamp.
struct Record {
    partition: usize,
    key: String,
    line: Vec<u8>,
    stamp: i64,
}

/// The lines of `input` spread over the partitions by key (by line number when a line has
/// none; `keyed` false: by line number, without keys), stamped as a producer's clock would
/// stamp them as they are sent: the latest event time so far in their partition (never
/// going back), moved to the last hour.
fn records(input: &[u8], keyed: bool) -> Vec<Record> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now = since.unwrap().as_millis() as i64;
    let mut shift = None;
    let mut clocks = [i64::MIN; PARTITIONS];
    let lines = input.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    lines
        .enumerate()
        .map(|(i, line)| {
            let v = serde_json::from_slice::<serde_json::Value>(line).ok();
            let field = |name: &str| {
                v.as_ref()
                    .and_then(|v| v.get(name))
                    .and_then(|u| u.as_str())
                    .map(str::to_owned)
            };
            let key = field("user_id").unwrap_or_else(|| format!("line-{i}"));
            let partition = key.bytes().map(usize::from).sum::<usize>() % PARTITIONS;
            let (key, partition) = match keyed {
                true => (key, partition),
                false => (String::new(), i % PARTITIONS),
            };
            let clock = &mut clocks[partition];
            if let Some(t) =
                field("timestamp").and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            {
                let t = t.timestamp_millis();
                *clock = (*clock).max(t + *shift.get_or_insert(now - 3_600_000 - t));
            }
            let stamp = if *clock == i64::MIN {
                now - 3_600_000
            } else {
                *clock
            };
            Record {
                partition,
                key,
                line: line.to_vec(),
                stamp,
            }
        })
        .collect()
}

/// What a backtest over `from..to` reads of each partition: from the first record stamped
/// at or after `from`, skipping later ones stamped before it, up to the first stamped at or
/// after `to`.
fn selected(records: &[Record], from: i64, to: i64) -> Vec<Vec<u8>> {
    let mut parts = vec![Vec::new(); PARTITIONS];
    for (p, part) in parts.iter_mut().enumerate() {
        let mine = records.iter().filter(|r| r.partition == p);
        let started = mine.skip_while(|r| r.stamp < from);
        for r in started.take_while(|r| r.stamp < to) {
            if r.stamp >= from {
                part.extend_from_slice(&r.line);
                part.push(b'\n');
            }
        }
    }
    parts
}

fn backtest(broker: &Broker, extra: &[&str]) -> (Vec<Alert>, String) {
    let args = [
        &["replay", "--brokers", &broker.addr, "--topics", "logs"][..],
        &["--format", "jsonl"],
        extra,
    ]
    .concat();
    let (out, log) = rulewatch_ok(&args, None);
    let mut alerts = parse_alerts(&out);
    alerts.sort();
    (alerts, log)
}

/// Generated events (loadgen `args`) produced as [`records`] make them, in a new
/// `PARTITIONS`-partition topic `logs`.
fn history(broker: &Broker, dir: &Path, args: &[&str], keyed: bool) -> Vec<Record> {
    broker.create_topic("logs", PARTITIONS as i32);
    let input = std::fs::read(generate(dir, "in.jsonl", args)).unwrap();
    let records = records(&input, keyed);
    let messages: Vec<(i32, String, Vec<u8>, i64)> = (records.iter())
        .map(|r| (r.partition as i32, r.key.clone(), r.line.clone(), r.stamp))
        .collect();
    broker.produce_stamped("logs", &messages);
    records
}

/// The reference over what a backtest over `from..to` reads.
fn reference_of(records: &[Record], from: i64, to: i64) -> Expected {
    let parts = selected(records, from, to);
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    crash_reference_partitions(&parts)
}

/// `run` over the topic from the start, its last windows closed by one far-future event per
/// partition (never selected), until it has `count` alerts: they, and its log.
fn run_alerts(
    broker: &Broker,
    dir: &Path,
    records: &[Record],
    count: usize,
) -> (Vec<Alert>, String) {
    let stamp = records.iter().map(|r| r.stamp).max().unwrap();
    let keyed = records.iter().any(|r| !r.key.is_empty());
    let ends: Vec<(i32, String, Vec<u8>, i64)> =
        sentinels(PARTITIONS as i32, "2026-01-28T00:00:00Z")
            .into_iter()
            .map(|(p, k, v)| (p.unwrap(), if keyed { k } else { String::new() }, v, stamp))
            .collect();
    broker.produce_stamped("logs", &ends);
    let state = dir.join("state");
    let args = [
        "--group-id",
        "g",
        "--alerts-topic",
        "alerts",
        "--checkpoint-dir",
    ];
    let mut engine = Engine::start(
        broker,
        dir,
        &[&args[..], &[state.to_str().unwrap()]].concat(),
    );
    let got = broker.consume("alerts", Duration::from_secs(90), |got| {
        engine.assert_running();
        dedup(got).len() >= count
    });
    let log = engine.log();
    engine.kill();
    (sorted(&dedup(&got)), log)
}

#[test]
fn a_backtest_alerts_as_run_and_the_reference_do_and_from_to_select() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--events",
        "40000",
        "--disorder",
        "8",
        "--late-share",
        "0.02",
        "--bad",
        "0.02",
        "--seed",
        "31",
    ];
    let records = history(&broker, dir.path(), &args, true);

    // The whole history.
    let expected = reference_of(&records, i64::MIN, i64::MAX);
    assert!(
        expected.alerts.len() > 30,
        "{} alerts",
        expected.alerts.len()
    );
    let (alerts, log) = backtest(&broker, &[]);
    assert_eq!(alerts, expected.alerts, "{log}");
    assert_eq!(summary_count(&log, "matched"), expected.matched, "{log}");
    assert_eq!(summary_count(&log, "late"), expected.late, "{log}");

    // `run` over the same topic alerts what the backtest alerted.
    let (run, log) = run_alerts(&broker, dir.path(), &records, alerts.len());
    assert_eq!(run, alerts, "{log}");
    let (again, _) = backtest(&broker, &[]);
    assert_eq!(again, alerts, "the sentinels changed nothing");

    // A span in the middle: records stamped before --from or from --to on are not counted.
    let mut stamps: Vec<i64> = records.iter().map(|r| r.stamp).collect();
    stamps.sort();
    let (from, to) = (stamps[stamps.len() * 3 / 10], stamps[stamps.len() * 7 / 10]);
    let expected = reference_of(&records, from, to);
    assert!(!expected.alerts.is_empty());
    let (from_text, to_text) = (from.to_string(), to.to_string());
    let (alerts, log) = backtest(&broker, &["--from", &from_text, "--to", &to_text]);
    assert_eq!(alerts, expected.alerts, "{log}");
    assert_eq!(summary_count(&log, "matched"), expected.matched, "{log}");
}

/// Input not keyed by the rule's field: the backtest decides so as `run` does and counts
/// each key across the partitions as `run` does through its repartition topic (lateness by
/// each partition's watermark): one count per alert id, the reference's and `run`'s.
#[test]
fn a_backtest_of_an_unkeyed_topic_counts_across_partitions_as_run_does() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--events",
        "40000",
        "--disorder",
        "8",
        "--late-share",
        "0.02",
    ];
    let records = history(&broker, dir.path(), &args, false);
    let expected = reference_of(&records, i64::MIN, i64::MAX);
    assert!(expected.alerts.len() > 30);

    let args = ["replay", "--brokers", &broker.addr, "--topics", "logs"];
    let out = rulewatch_logging(&[&args[..], &["--format", "jsonl"]].concat(), None, "info");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let mut alerts = parse_alerts(&String::from_utf8(out.stdout).unwrap());
    alerts.sort();
    assert!(log.contains("is not keyed by `user_id`"), "{log}");
    assert_eq!(alerts, expected.alerts, "{log}");
    assert_eq!(summary_count(&log, "late"), expected.late, "{log}");

    let (run, log) = run_alerts(&broker, dir.path(), &records, alerts.len());
    assert!(log.contains("repartitioning"), "{log}");
    assert_eq!(run, alerts, "{log}");
}

#[test]
fn a_backtest_says_what_is_wrong_with_its_arguments() {
    let out = rulewatch(&["replay", "--brokers", "127.0.0.1:1"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--topics"));
    let out = rulewatch(
        &[
            "replay",
            "in.jsonl",
            "--brokers",
            "127.0.0.1:1",
            "--topics",
            "t",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("either a file to replay or --brokers"),
        "{stderr}"
    );
    let out = rulewatch(
        &[
            "replay",
            "--brokers",
            "b:9092",
            "--topics",
            "t",
            "--from",
            "last tuesday",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected RFC 3339"), "{stderr}");
}
