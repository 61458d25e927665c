//! A cluster of Apache Kafka nodes on loopback for the tests: each node a KRaft broker and
//! controller (`tests/kafka/broker.sh` with NODE_ID, VOTERS and a shared CLUSTER_ID), topics
//! replicated to every node with `min.insync.replicas` one less, so that the cluster keeps
//! accepting writes with one node down. Nodes can be killed and started again on their data.

use super::kafka::{Broker, Node, free_port};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

impl Broker {
    /// Starts `n` nodes (ids 1..=n) forming one cluster and waits until every broker has
    /// registered.
    pub(crate) fn cluster(n: usize) -> Broker {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let voters: Vec<String> = (ports.iter().enumerate())
            .map(|(i, (_, controller))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect();
        let id = cluster_id();
        let nodes = (ports.iter().enumerate())
            .map(|(i, (port, controller))| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("extra.properties"), replication(n)).unwrap();
                let env = vec![
                    ("NODE_ID".to_owned(), (i + 1).to_string()),
                    ("VOTERS".to_owned(), voters.join(",")),
                    ("CLUSTER_ID".to_owned(), id.clone()),
                ];
                Node::spawn(
                    dir,
                    *port,
                    vec![port.to_string(), controller.to_string()],
                    env,
                )
            })
            .collect();
        let addr = (ports.iter().map(|(port, _)| format!("127.0.0.1:{port}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Broker {
            nodes,
            addr,
            tls: None,
        };
        for node in &mut cluster.nodes {
            node.wait_listening();
        }
        cluster.wait_brokers(n);
        cluster
    }

    /// Kills node `id` (SIGKILL): its partitions' leadership moves to the others once the
    /// controller notices.
    pub(crate) fn kill_node(&self, id: i32) {
        super::kafka::signal(self.nodes[id as usize - 1].pid(), "KILL");
    }

    /// Starts node `id` again on its data; it catches up and rejoins the in-sync replicas.
    pub(crate) fn restart_node(&mut self, id: i32) {
        self.nodes[id as usize - 1].restart();
    }

    /// Creates a topic replicated to every node with node `leader` first, its preferred
    /// leader, on every partition; `settings` are topic configurations.
    pub(crate) fn create_topic_led_by(
        &self,
        name: &str,
        partitions: i32,
        leader: i32,
        settings: &[(&str, &str)],
    ) {
        let n = self.nodes.len() as i32;
        let replicas: Vec<i32> = std::iter::once(leader)
            .chain((1..=n).filter(|&i| i != leader))
            .collect();
        let assignment: Vec<&[i32]> = (0..partitions).map(|_| replicas.as_slice()).collect();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Variable(&assignment));
        for (k, v) in settings {
            topic = topic.set(k, v);
        }
        let admin: AdminClient<DefaultClientContext> = self.client().create().unwrap();
        let result =
            futures_executor::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
                .unwrap();
        result[0].as_ref().unwrap();
    }

    /// The leader and the number of replicas of each partition of `topic`, as the cluster's
    /// metadata gives them now.
    pub(crate) fn partitions_of(&self, topic: &str) -> Vec<(i32, usize)> {
        let consumer: BaseConsumer = self.client().create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        (metadata.topics()[0].partitions().iter())
            .map(|p| (p.leader(), p.replicas().len()))
            .collect()
    }

    /// Waits until `n` brokers are in the cluster's metadata (60 s at most).
    fn wait_brokers(&self, n: usize) {
        let consumer: BaseConsumer = self.client().create().unwrap();
        let registered = || {
            (consumer.fetch_metadata(None, Duration::from_secs(5))).map_or(0, |m| m.brokers().len())
        };
        super::eventually(
            Duration::from_secs(60),
            || format!("{} of {n} brokers registered: {}", registered(), self.log()),
            || (registered() == n).then_some(()),
        );
    }
}

/// Every topic on `n` nodes by default, internal ones included, and writes acknowledged by
/// all but one of them; leadership moves back to a restarted node within seconds.
fn replication(n: usize) -> String {
    format!(
        "default.replication.factor={n}
min.insync.replicas={}
offsets.topic.replication.factor={n}
transaction.state.log.replication.factor={n}
transaction.state.log.min.isr={}
leader.imbalance.check.interval.seconds=5
",
        n - 1,
        n - 1
    )
}

/// A cluster id: 16 bytes (the clock's nanoseconds), base64url without padding.
fn cluster_id() -> String {
    use base64::Engine;
    let nanos = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
        .unwrap()
        .as_nanos();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(nanos.to_le_bytes())
}
