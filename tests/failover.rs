//! Fail-over as orchestrators do it: three `rulewatch run` instances on unkeyed input (so
//! that they repartition), one SIGKILLed three times over and its replacement started at
//! once, while the dead member is still in the group (as Kubernetes restarts a pod). The
//! group's rebalances must leave no partition unowned: every partition counts again soon
//! after the last replacement, and the deduplicated alerts equal the per-partition
//! reference, no alert id carrying two counts. Under both group protocols.

mod common;

use common::engine::{
    Engine, assert_same, first_alert, member, per_partition_reference, wait_within,
};
use common::kafka::{Broker, Protocol, round_robin, sentinels};
use common::*;
use std::time::Duration;

const PARTITIONS: i32 = 6;

fn replaced_at_once(protocol: Protocol) {
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let rules = crash_rules();
    let events = disordered(dir.path(), "120000");
    let messages = round_robin(&events, PARTITIONS);
    let quarter = messages.len() / 4;
    broker.produce("logs", &messages[..quarter]);
    let start = || member(&broker, dir.path(), rules.path(), "failover", protocol);
    let mut engines: Vec<Engine> = (0..3).map(|_| start()).collect();
    first_alert(&broker, "failover-alerts", &mut engines);
    let mut killed = String::new();
    for round in 0..3 {
        let end = if round == 2 {
            messages.len()
        } else {
            (round + 2) * quarter
        };
        broker.produce("logs", &messages[(round + 1) * quarter..end]);
        // A moment that differs from run to run, then a kill and its replacement at once.
        let moment = wait::some_moment(Duration::from_millis(500), Duration::from_secs(3));
        std::thread::sleep(moment);
        let victim = std::mem::replace(&mut engines[round], start());
        killed.push_str(&format!("--- killed in round {round}:\n{}\n", victim.log()));
        victim.kill();
        std::thread::sleep(wait::GROUP_SETTLES);
    }
    broker.produce("logs", &sentinels(PARTITIONS, "2026-01-28T00:00:00Z"));
    let expected = per_partition_reference(&broker, "logs");
    assert!(expected.len() > 30, "{}", expected.len());
    let mut running: Vec<&mut Engine> = engines.iter_mut().collect();
    // Every partition owned again within a few sessions of the last replacement.
    let got = wait_within(
        &broker,
        "failover-alerts",
        &mut running,
        expected.len(),
        Duration::from_secs(60),
    );
    let logs: String = (engines.iter().enumerate())
        .map(|(i, e)| format!("--- instance {i}:\n{}\n", e.log()))
        .collect();
    assert_same(&got, &expected, &format!("{killed}{logs}"));
}

#[test]
fn replacements_started_at_once_leave_no_partition_unowned() {
    replaced_at_once(Protocol::Classic);
}

#[test]
fn replacements_started_at_once_leave_no_partition_unowned_consumer_protocol() {
    replaced_at_once(Protocol::Consumer);
}
