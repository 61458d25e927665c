//! Scale-out, end to end on a real broker: several `rulewatch run` instances in one consumer
//! group share a multi-partition topic, keep their checkpoints in a Kafka topic, and hand
//! partitions over when one is killed (SIGKILL) or added. Their deduplicated alerts must
//! equal one instance's over the same events, which must equal the independent reference
//! applied to each partition on its own (each partition's windows close by its own
//! watermark, so late data is judged the same wherever the partition is read).

mod common;

use common::engine::{Engine, assert_same, dedup, per_partition_reference, wait_for};
use common::kafka::{Broker, Protocol, keyed_messages, round_robin, sentinels};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A message to produce: partition, key, value.
type Message = (Option<i32>, String, Vec<u8>);
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
/// Far past the generated data (which starts 2026-01-27T22:00Z).
const END: &str = "2026-01-28T00:00:00Z";

/// When partitions go idle: never within a test (`1h`: idleness, a wall-clock decision, is
/// kept out of the way while the test pauses between steps), or within `2s`; or never, with
/// windows closed for quiet after `3s` (shorter than the group's session).
#[derive(Clone, Copy, PartialEq)]
enum Idle {
    Never,
    Soon,
    Quiet,
}

/// The crash rule keeping 3 evidence positions per alert, in `dir/rules`.
fn rules(dir: &Path) -> std::path::PathBuf {
    let folder = dir.join("rules");
    if !folder.exists() {
        std::fs::create_dir_all(&folder).unwrap();
        let toml = crash_toml().replace("[output]", "[output]\nevidence = 3");
        std::fs::write(folder.join("crash.toml"), toml).unwrap();
        std::fs::copy(
            rule_wasm("rulewatch-rule-crash", "crash"),
            folder.join("crash.wasm"),
        )
        .unwrap();
    }
    folder
}

/// One instance of group `group` running the crash rule with evidence, alerts to
/// `alerts`, checkpoints in topic `group-cp`; quiet-close is kept out of the way but with
/// `Idle::Quiet`.
fn instance(
    broker: &Broker,
    dir: &Path,
    group: &str,
    alerts: &str,
    idle: Idle,
    protocol: Protocol,
) -> Engine {
    let checkpoints = format!("{group}-cp");
    let rules = rules(dir);
    let (idle, quiet) = match idle {
        Idle::Never => ("1h", "1h"),
        Idle::Soon => ("2s", "1h"),
        Idle::Quiet => ("1h", "3s"),
    };
    Engine::start_in(
        broker,
        "logs",
        dir,
        &[
            "--group-id",
            group,
            "--alerts-topic",
            alerts,
            "--checkpoint-topic",
            &checkpoints,
            "--idle-timeout",
            idle,
            "--quiet-close",
            quiet,
            "--rules",
            rules.to_str().unwrap(),
        ],
        protocol,
    )
}

/// Alert id → evidence of every message of an alerts topic; each message of an alert
/// carries the same evidence.
fn evidence_of(broker: &Broker, topic: &str, alerts: usize) -> BTreeMap<String, serde_json::Value> {
    let mut evidence = BTreeMap::new();
    let got = broker.consume(topic, Duration::from_secs(60), |g| dedup(g).len() >= alerts);
    for m in got {
        let alert: serde_json::Value = serde_json::from_slice(&m.value).unwrap();
        let id = alert["alert_id"].as_str().unwrap().to_owned();
        if let Some(before) = evidence.insert(id.clone(), alert["evidence"].clone()) {
            assert_eq!(
                before, alert["evidence"],
                "alert {id} sent with two evidences"
            );
        }
    }
    evidence
}

/// The instances of the scenario and the single instance gave each alert the same
/// evidence, and `rulewatch evidence` reads it back as events of the alert's key.
fn assert_same_evidence(broker: &Broker, alerts: usize) {
    let scaled = evidence_of(broker, "alerts-scale", alerts);
    let single = evidence_of(broker, "alerts-single", alerts);
    let differ: Vec<String> = (scaled.keys().chain(single.keys()))
        .filter(|id| scaled.get(*id) != single.get(*id))
        .map(|id| format!("{id}: {:?} vs {:?}", scaled.get(id), single.get(id)))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        single.len(),
        differ.join("\n")
    );
    let some = broker.consume("alerts-single", Duration::from_secs(60), |g| g.len() >= 5);
    for m in some.iter().take(5) {
        let alert: serde_json::Value = serde_json::from_slice(&m.value).unwrap();
        let shown = alert["evidence"].as_array().unwrap().len() as u64;
        assert_eq!(shown, alert["count"].as_u64().unwrap().min(3), "{alert}");
        let (out, _) = rulewatch_ok(&["evidence", "--brokers", &broker.addr], Some(&m.value));
        let events = json_lines(&out);
        assert_eq!(events.len() as u64, shown);
        for e in events {
            assert_eq!(e["user_id"], alert["key"], "{e}");
            let content = e["content"].as_str().unwrap().to_lowercase();
            assert!(content.contains("crash"), "{e}");
        }
    }
}

/// Runs the scenario on `messages` (produced in three parts): three instances of one
/// group, one SIGKILLed while the second part is read (with `Idle::Soon`: once its
/// partitions are idle, and the second part produced right after, so that its partitions
/// get data nobody reads until the group notices), one added before the third; then one
/// instance alone in another group. Both must give the reference's alerts; returns the
/// instances' logs and the number of alerts.
fn scenario(
    protocol: Protocol,
    broker: &Broker,
    dir: &Path,
    messages: &[Message],
    mode: &str,
    idle: Idle,
) -> (String, usize) {
    let third = messages.len() / 3;
    // The first part is there before the instances start, so that they can see how it is
    // keyed.
    broker.produce("logs", &messages[..third]);
    let mut a = instance(broker, dir, "scale", "alerts-scale", idle, protocol);
    let mut b = instance(broker, dir, "scale", "alerts-scale", idle, protocol);
    let mut c = instance(broker, dir, "scale", "alerts-scale", idle, protocol);
    let started = Instant::now();
    while broker
        .consume("alerts-scale", Duration::from_secs(1), |g| !g.is_empty())
        .is_empty()
    {
        for e in [&mut a, &mut b, &mut c] {
            e.assert_running();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no alert yet:\n{}",
            a.log()
        );
    }
    let b_log = if idle == Idle::Never {
        // Killed while the second part is being read, between checkpoints or not.
        broker.produce("logs", &messages[third..2 * third]);
        let into_reading = Duration::from_millis(300);
        std::thread::sleep(into_reading);
        let log = b.log();
        b.kill();
        log
    } else {
        // Killed once its partitions are idle (idle_timeout: 2 s, vouched every second);
        // their new data waits for a new reader.
        let idle_and_vouched = Duration::from_secs(5);
        std::thread::sleep(idle_and_vouched);
        let log = b.log();
        b.kill();
        broker.produce("logs", &messages[third..2 * third]);
        // And c frozen past its session: the group moves on without it, then it wakes up
        // a zombie, holding partitions it no longer owns.
        c.pause();
        std::thread::sleep(wait::PAST_SESSION);
        c.resume();
        log
    };
    // The group notices after the session timeout and gives b's partitions to a and c.
    std::thread::sleep(wait::SESSION_EXPIRES);
    let mut d = instance(broker, dir, "scale", "alerts-scale", idle, protocol);
    // d joins while nothing new comes: the hand-over it causes runs on its own.
    let joining = Duration::from_secs(2);
    std::thread::sleep(joining);
    let d_log = if idle == Idle::Soon {
        // Once d has partitions, a second kill at a moment that differs from run to run
        // while the last part is read; the replacement joins once the group noticed.
        eventually(Duration::from_secs(60), d.log_reader(), || {
            d.log().contains("Kafka: assigned").then_some(())
        });
        std::thread::sleep(joining);
        broker.produce("logs", &messages[2 * third..]);
        broker.produce("logs", &sentinels(PARTITIONS, END));
        std::thread::sleep(wait::some_moment(
            Duration::ZERO,
            Duration::from_millis(1500),
        ));
        let log = d.log();
        d.kill();
        std::thread::sleep(wait::SESSION_EXPIRES);
        d = instance(broker, dir, "scale", "alerts-scale", idle, protocol);
        log
    } else {
        broker.produce("logs", &messages[2 * third..]);
        broker.produce("logs", &sentinels(PARTITIONS, END));
        String::new()
    };

    // What was produced, per partition, and the reference on each partition.
    let expected = per_partition_reference(broker, "logs");
    assert!(expected.len() > 50, "{}", expected.len());
    let got = wait_for(
        broker,
        "alerts-scale",
        &mut [&mut a, &mut c, &mut d],
        expected.len(),
    );
    let logs = format!(
        "--- a:\n{}\n--- b (killed):\n{b_log}\n--- c:\n{}\n--- d (added{}):\n{d_log}\n{}",
        a.log(),
        c.log(),
        if d_log.is_empty() {
            ""
        } else {
            ", killed, replaced"
        },
        d.log()
    );
    assert_same(&got, &expected, &logs);
    for log in [&a.log(), &b_log, &c.log(), &d.log()] {
        assert!(log.contains(mode), "{logs}");
    }
    // Partitions moved with their state: after the kill and after the addition, an
    // instance restored partitions from the checkpoint topic.
    let moved: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("rebalance: restored") && !l.contains("restored 0 of"))
        .collect();
    assert!(moved.len() >= 2, "{logs}");
    for line in &moved {
        eprintln!("{line}");
    }

    // One instance over the same events, from the start, in its own group.
    let mut single = instance(
        broker,
        dir,
        "single",
        "alerts-single",
        Idle::Never,
        protocol,
    );
    let alone = wait_for(broker, "alerts-single", &mut [&mut single], expected.len());
    assert_same(&alone, &expected, &single.log());
    assert!(single.log().contains(mode), "{}", single.log());
    (logs, expected.len())
}

/// Generated events with disorder, very late events and bad lines: late data must be
/// judged the same way whichever instance reads a partition.
fn events(dir: &Path) -> Vec<u8> {
    hostile_events(dir, "150000")
}

fn keyed(idle: Idle, protocol: Protocol) {
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let messages = keyed_messages(&events(dir.path()));
    let (_, alerts) = scenario(
        protocol,
        &broker,
        dir.path(),
        &messages,
        "is keyed by `user_id`",
        idle,
    );
    assert_same_evidence(&broker, alerts);
}

fn unkeyed(idle: Idle, protocol: Protocol) {
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    // Round robin over the partitions, without keys: a user's events are everywhere.
    let messages: Vec<Message> = round_robin(&events(dir.path()), PARTITIONS);
    let (logs, alerts) = scenario(
        protocol,
        &broker,
        dir.path(),
        &messages,
        "repartitioning its matching events",
        idle,
    );
    assert!(logs.contains("is not keyed by `user_id` (0 of"), "{logs}");
    assert_same_evidence(&broker, alerts);
}

#[test]
fn keyed_input_three_instances_one_killed_one_added_alert_as_one_instance_does() {
    keyed(Idle::Never, Protocol::Classic);
}

#[test]
fn unkeyed_input_is_repartitioned_and_alerts_as_one_instance_does() {
    unkeyed(Idle::Never, Protocol::Classic);
}

/// Idle after 2 s, session 6 s: a reader killed while its partitions are idle, and data
/// arriving in them before the group notices; meanwhile another instance frozen past its
/// session wakes up a zombie; later the added instance is killed at a moment that differs
/// from run to run, and replaced. Through the repartition topic, the dead reader's partitions
/// are unowned, not idle, and hold the internal partitions' windows back until their new
/// reader has read that data. No alert id carries two counts.
#[test]
fn unkeyed_input_a_reader_killed_while_idle_and_a_zombie_lose_nothing() {
    unkeyed(Idle::Soon, Protocol::Classic);
}

/// The same with keyed input: partitions restored on another instance start not idle, and
/// an idle partition moves along only when its reader vouches (about once a second) that it
/// still has nothing new, so data landing in it just after another partition's does not
/// come too late.
#[test]
fn keyed_input_a_reader_killed_while_idle_and_a_zombie_lose_nothing() {
    keyed(Idle::Soon, Protocol::Classic);
}

/// Windows close for quiet (3 s) with no event past them: an instance killed while the
/// last events are produced leaves its partitions unowned until the group notices (6 s).
/// Silence here is not quiet there: those partitions hold the windows they feed until
/// their new reader has read them and vouches that they are quiet, and every alert is the
/// reference's, with no id carrying two counts.
fn killed_while_production_ends(
    protocol: Protocol,
    messages: &[Message],
    mode: &str,
    broker: &Broker,
    dir: &Path,
) {
    let half = messages.len() / 2;
    broker.produce("logs", &messages[..half]);
    let mut a = instance(broker, dir, "quiet", "alerts-quiet", Idle::Quiet, protocol);
    let b = instance(broker, dir, "quiet", "alerts-quiet", Idle::Quiet, protocol);
    let mut c = instance(broker, dir, "quiet", "alerts-quiet", Idle::Quiet, protocol);
    eventually(Duration::from_secs(60), b.log_reader(), || {
        a.assert_running();
        b.log().contains("Kafka: assigned").then_some(())
    });
    broker.produce("logs", &messages[half..]);
    let b_log = b.log();
    b.kill();
    let expected = per_partition_reference(broker, "logs");
    assert!(expected.len() > 50, "{}", expected.len());
    let got = wait_for(
        broker,
        "alerts-quiet",
        &mut [&mut a, &mut c],
        expected.len(),
    );
    let logs = format!(
        "--- a:\n{}\n--- b (killed):\n{b_log}\n--- c:\n{}",
        a.log(),
        c.log()
    );
    assert_same(&got, &expected, &logs);
    assert!(a.log().contains(mode), "{logs}");
    assert!(logs.contains("closing the windows they hold"), "{logs}");
}

#[test]
fn quiet_close_waits_for_the_partitions_of_a_killed_reader() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(dir.path());
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let messages: Vec<Message> = round_robin(&events, PARTITIONS);
    let protocol = Protocol::Classic;
    killed_while_production_ends(protocol, &messages, "repartitioning", &broker, dir.path());
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let keyed = keyed_messages(&events);
    killed_while_production_ends(protocol, &keyed, "is keyed by", &broker, dir.path());
}

/// KIP-848's consumer group protocol (the broker assigns, incrementally): the reader killed
/// while idle and the zombie, on keyed input.
#[test]
fn keyed_input_a_reader_killed_while_idle_and_a_zombie_lose_nothing_consumer_protocol() {
    keyed(Idle::Soon, Protocol::Consumer);
}

/// The same through the repartition topic.
#[test]
fn unkeyed_input_a_reader_killed_while_idle_and_a_zombie_lose_nothing_consumer_protocol() {
    unkeyed(Idle::Soon, Protocol::Consumer);
}

/// Quiet closing with a reader killed, under the consumer group protocol.
#[test]
fn quiet_close_waits_for_the_partitions_of_a_killed_reader_consumer_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let messages: Vec<Message> = round_robin(&events(dir.path()), PARTITIONS);
    let protocol = Protocol::Consumer;
    killed_while_production_ends(protocol, &messages, "repartitioning", &broker, dir.path());
}
