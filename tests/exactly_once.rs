//! `guarantee = "exactly_once"` end to end on a real broker, read as a downstream consumer
//! reads alerts: a librdkafka consumer with `isolation.level=read_committed`. Whatever
//! happens to the instances — SIGKILLs at moments that differ from run to run, a member
//! frozen past its session that wakes up a zombie, the broker restarted — that consumer must
//! see every alert of the per-partition reference and no record twice: in append mode each
//! alert id once, in update mode each (id, count) row once and counts only growing.

mod common;

use common::engine::{Engine, member_with, per_partition_reference};
use common::kafka::{Broker, Protocol, Received, keyed_messages, round_robin, sentinels};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const PARTITIONS: i32 = 4;
/// Far past the generated data.
const END: &str = "2026-01-28T00:00:00Z";

/// An instance of group `group` under `exactly_once` in output mode `mode` (see
/// [`member_with`]), dead letters to `{group}-dlq`, commits at the default interval.
fn instance(broker: &Broker, dir: &Path, group: &str, mode: &str, keyed_by: &str) -> Engine {
    let rules = dir.join("rules");
    if !rules.exists() {
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(rules.join("crash.toml"), crash_toml()).unwrap();
        let wasm = rule_wasm("rulewatch-rule-crash", "crash");
        std::fs::copy(wasm, rules.join("crash.wasm")).unwrap();
    }
    let dlq = format!("{group}-dlq");
    let more = [
        "--guarantee",
        "exactly_once",
        // The default under exactly_once, given so that the harness does not set its own.
        "--checkpoint-interval",
        "100ms",
        "--dead-letter-topic",
        &dlq,
        "--mode",
        mode,
        "--keyed-by",
        keyed_by,
    ];
    member_with(broker, dir, &rules, group, Protocol::Classic, &more)
}

/// Reads `topic` as a `read_committed` consumer until every alert of `expected` is there
/// (checking that `engines` run), and once more after a pause for any record that would
/// come twice; asserts that no record came twice and that the last row of each alert is
/// the reference's.
fn assert_each_once(
    broker: &Broker,
    topic: &str,
    engines: &mut [&mut Engine],
    expected: &[Alert],
    mode: &str,
    logs: &dyn Fn() -> String,
) {
    // In update mode an alert's rows come as its count grows: done once each one's last
    // row is the reference's.
    let read = |engines: &mut [&mut Engine], timeout| {
        let (mut last, mut taken) = (BTreeMap::new(), 0);
        broker.consume_as("read_committed", topic, timeout, |got| {
            engines.iter_mut().for_each(|e| e.assert_running());
            last.extend(last_rows(&got[taken..]));
            taken = got.len();
            let mut rows: Vec<&Alert> = last.values().collect();
            rows.sort();
            rows.len() == expected.len() && rows.into_iter().eq(expected)
        })
    };
    read(engines, Duration::from_secs(120));
    // Anything committed twice would be committed by now.
    std::thread::sleep(wait::FOR_NOTHING);
    let got = read(engines, Duration::from_secs(30));
    // Each alert id's counts, with where they are in the topic.
    let mut seen: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for m in &got {
        let alert = parse_alerts(std::str::from_utf8(&m.value).unwrap()).remove(0);
        seen.entry(m.key.clone().unwrap())
            .or_default()
            .push((alert.count, m.offset));
    }
    for (id, counts) in &seen {
        let once = match mode {
            "append" => counts.len() == 1,
            _ => counts.windows(2).all(|w| w[0].0 < w[1].0),
        };
        if !once {
            // Everything written for it, aborted transactions too.
            let all = broker.consume(topic, Duration::from_secs(5), |_| false);
            let written: Vec<(u64, i64)> = (all.iter())
                .filter(|m| m.key.as_deref() == Some(id))
                .map(|m| {
                    (
                        parse_alerts(std::str::from_utf8(&m.value).unwrap())[0].count,
                        m.offset,
                    )
                })
                .collect();
            panic!(
                "alert {id} committed as (count, offset) {counts:?}, written as {written:?}\n{}",
                logs()
            );
        }
    }
    let mut last: Vec<Alert> = last_rows(&got).into_values().collect();
    last.sort();
    common::engine::assert_same(&last, expected, &logs());
}

/// The last row of each alert id.
fn last_rows(got: &[Received]) -> BTreeMap<String, Alert> {
    (got.iter())
        .map(|m| {
            let alert = parse_alerts(std::str::from_utf8(&m.value).unwrap()).remove(0);
            (m.key.clone().unwrap(), alert)
        })
        .collect()
}

#[test]
fn one_instance_killed_eight_times_and_a_broker_restart_commit_each_alert_once() {
    let mut broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let messages = keyed_messages(&hostile_events(dir.path(), "90000"));
    let ninth = messages.len() / 9;
    broker.produce("logs", &messages[..ninth]);
    let start = |broker: &Broker| instance(broker, dir.path(), "eos", "append", "user_id");
    let mut engine = start(&broker);
    let mut logs = String::new();
    for round in 1..9 {
        // Once it reads (it waits for the group to drop the killed one, and for the broker
        // to abort its open transaction).
        eventually(Duration::from_secs(60), engine.log_reader(), || {
            engine.log().contains("rebalance: restored").then_some(())
        });
        let end = if round == 8 {
            messages.len()
        } else {
            (round + 1) * ninth
        };
        broker.produce("logs", &messages[round * ninth..end]);
        // Killed while reading the new part, between commits or inside one.
        let moment = wait::some_moment(Duration::from_millis(300), Duration::from_secs(2));
        std::thread::sleep(moment);
        logs += &format!(
            "--- run {round}, killed after {moment:?}:\n{}",
            engine.log()
        );
        std::mem::replace(&mut engine, start(&broker)).kill();
        if round == 4 {
            // And the broker restarted while the replacement starts.
            broker.restart_node(1);
        }
    }
    broker.produce("logs", &sentinels(PARTITIONS, END));
    let expected = per_partition_reference(&broker, "logs");
    assert!(expected.len() > 30, "{}", expected.len());
    let last = engine.log_reader();
    let all = || format!("{logs}--- last run:\n{}", last());
    assert_each_once(
        &broker,
        "eos-alerts",
        &mut [&mut engine],
        &expected,
        "append",
        &all,
    );
    assert!(engine.log().contains("exactly once"), "{}", all());
}

#[test]
fn three_instances_a_kill_a_zombie_and_a_broker_restart_commit_each_row_once() {
    let mut broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    // Unkeyed: matching events go through the repartition topic, transactionally too.
    let messages = round_robin(&hostile_events(dir.path(), "90000"), PARTITIONS);
    let quarter = messages.len() / 4;
    broker.produce("logs", &messages[..quarter]);
    let start = || instance(&broker, dir.path(), "eos3", "update", "none");
    let mut engines = vec![start(), start(), start()];
    common::engine::first_alert(&broker, "eos3-alerts", &mut engines);
    let (mut c, b, mut a) = (
        engines.pop().unwrap(),
        engines.pop().unwrap(),
        engines.pop().unwrap(),
    );
    // b killed while reading the second part; d joins at once, as orchestrators restart.
    broker.produce("logs", &messages[quarter..2 * quarter]);
    std::thread::sleep(wait::some_moment(
        Duration::from_millis(200),
        Duration::from_secs(1),
    ));
    let b_log = b.log();
    b.kill();
    let mut d = start();
    // Once the group gave b's partitions to the others, c frozen past its session while the
    // third part comes: it wakes up a zombie, with an open transaction and partitions the
    // group gave to a and d meanwhile.
    std::thread::sleep(wait::GROUP_SETTLES);
    let owns = |log: &str| log.rfind("Kafka: assigned") > log.rfind("Kafka: released");
    eventually(Duration::from_secs(60), c.log_reader(), || {
        owns(&c.log()).then_some(())
    });
    broker.produce("logs", &messages[2 * quarter..3 * quarter]);
    std::thread::sleep(Duration::from_millis(300));
    c.pause();
    std::thread::sleep(wait::PAST_SESSION);
    c.resume();
    std::thread::sleep(wait::GROUP_SETTLES);
    // The broker restarted while the last part is read.
    broker.produce("logs", &messages[3 * quarter..]);
    broker.produce("logs", &sentinels(PARTITIONS, END));
    std::thread::sleep(wait::some_moment(
        Duration::from_millis(200),
        Duration::from_secs(1),
    ));
    broker.restart_node(1);
    let expected = per_partition_reference(&broker, "logs");
    assert!(expected.len() > 30, "{}", expected.len());
    let readers = [a.log_reader(), c.log_reader(), d.log_reader()];
    let all = || {
        let [a, c, d] = &readers;
        format!(
            "--- b (killed):\n{b_log}\n--- a:\n{}\n--- c (zombie):\n{}\n--- d:\n{}",
            a(),
            c(),
            d()
        )
    };
    assert_each_once(
        &broker,
        "eos3-alerts",
        &mut [&mut a, &mut c, &mut d],
        &expected,
        "update",
        &all,
    );
}

#[test]
fn exactly_once_without_a_checkpoint_topic_is_refused_with_the_fix() {
    let out = rulewatch(&["run", "--guarantee", "exactly_once"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs [checkpoint] topic") && err.contains("--checkpoint-topic"),
        "{err}"
    );
}
