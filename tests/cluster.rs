//! Kafka is the distributed engine: three `rulewatch run` instances on a three-node Apache
//! Kafka cluster (every topic replicated three ways, `min.insync.replicas` 2) while the node
//! leading the input partitions and the checkpoint topic is SIGKILLed mid-run and started
//! again later. The instances keep going through the leader elections, and their
//! deduplicated alerts equal the reference applied to each partition, no alert id carrying
//! two counts.

mod common;

use common::engine::{Engine, assert_same, first_alert, member, per_partition_reference, wait_for};
use common::kafka::{Broker, Protocol, round_robin, sentinels};
use common::*;
use std::time::Duration;

const PARTITIONS: i32 = 6;
/// The node that leads every partition of the input and of the checkpoint topic.
const LEADER: i32 = 1;

#[test]
fn three_instances_keep_going_when_the_node_leading_input_and_checkpoints_dies() {
    let mut cluster = Broker::cluster(3);
    cluster.create_topic_led_by("logs", PARTITIONS, LEADER, &[]);
    // The instances create the other topics they use, at the brokers' replication (3).
    cluster.create_topic_led_by("cluster-cp", 1, LEADER, &[("cleanup.policy", "compact")]);
    let dir = tempfile::tempdir().unwrap();
    let rules = crash_rules();
    let events = disordered(dir.path(), "90000");
    // Unkeyed: the instances repartition through a topic of their own.
    let messages = round_robin(&events, PARTITIONS);
    let third = messages.len() / 3;
    cluster.produce("logs", &messages[..third]);
    let mut engines: Vec<Engine> = (0..3)
        .map(|_| {
            member(
                &cluster,
                dir.path(),
                rules.path(),
                "cluster",
                Protocol::Classic,
            )
        })
        .collect();
    first_alert(&cluster, "cluster-alerts", &mut engines);

    // The leader dies while the second part is produced and read; the producer and the
    // instances find the new leaders once the controller has fenced it (~9 s).
    std::thread::scope(|s| {
        let producing = s.spawn(|| cluster.produce("logs", &messages[third..2 * third]));
        let into_producing = Duration::from_millis(500);
        std::thread::sleep(into_producing);
        cluster.kill_node(LEADER);
        producing.join().unwrap();
    });
    cluster.produce("logs", &messages[2 * third..]);
    // The cluster runs on two nodes for a while (the fault is the point).
    let outage = Duration::from_secs(5);
    std::thread::sleep(outage);
    // Back on its data: it catches up, and leads its partitions again (preferred leader).
    cluster.restart_node(LEADER);
    cluster.produce("logs", &sentinels(PARTITIONS, "2026-01-28T00:00:00Z"));

    let expected = per_partition_reference(&cluster, "logs");
    assert!(expected.len() > 30, "{}", expected.len());
    let mut running: Vec<&mut Engine> = engines.iter_mut().collect();
    let got = wait_for(&cluster, "cluster-alerts", &mut running, expected.len());
    let logs: String = (engines.iter().enumerate())
        .map(|(i, e)| format!("--- instance {i}:\n{}\n", e.log()))
        .collect();
    assert_same(&got, &expected, &logs);
    // The topics the instances created are replicated as the cluster's default says.
    for topic in ["cluster-alerts", "cluster-crash-repartition"] {
        for (_, replicas) in cluster.partitions_of(topic) {
            assert_eq!(replicas, 3, "{topic}");
        }
    }
}
