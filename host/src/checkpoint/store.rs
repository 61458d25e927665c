//! Where partition records are kept: the local checkpoint file (one node), or a compacted
//! Kafka topic keyed by partition (state that moves between instances with its partition).

use super::{Checkpoint, PartitionState};
use crate::kafka as kafka_settings;
use crate::source::kafka;
use anyhow::Context;
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long reading the checkpoint topic may take before the assignment is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest checkpoint record: one partition's state, ~18 bytes per open (window, key)
/// pair, so about 3.5 M pairs per partition. The topic is created with this limit, and the
/// producer and the reader are set up for it.
pub(crate) const MAX_RECORD: usize = crate::kafka::MAX_MESSAGE;

/// The settings of the checkpoint topic rulewatch creates: compacted, with this record
/// size, and segments rolled every 10 minutes so that compaction (which never touches the
/// active segment) keeps restores short.
pub(crate) fn topic_settings() -> [(&'static str, String); 3] {
    [
        ("cleanup.policy", "compact".into()),
        ("max.message.bytes", MAX_RECORD.to_string()),
        ("segment.ms", "600000".into()),
    ]
}

/// A checkpoint store.
#[derive(Clone, Debug)]
pub(crate) enum Store {
    /// Every partition's record in `DIR/checkpoint`.
    File(PathBuf),
    /// One record per partition on a compacted topic, keyed by `topic/partition`.
    Kafka {
        /// `bootstrap.servers`.
        brokers: String,
        /// librdkafka settings, as for the source.
        options: BTreeMap<String, String>,
        /// The checkpoint topic.
        topic: String,
        /// Whether records are committed in transactions (`exactly_once`): only committed
        /// ones are read, once every transaction begun before the read is decided.
        read_committed: bool,
    },
}

impl Store {
    /// Where the records are, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Store::File(dir) => super::path(dir).display().to_string(),
            Store::Kafka { topic, .. } => format!("topic {topic}"),
        }
    }

    /// The latest record of each of `partitions` that has one.
    pub(crate) fn load(
        &self,
        partitions: &[String],
    ) -> anyhow::Result<BTreeMap<String, PartitionState>> {
        let mut all = match self {
            Store::File(dir) => super::load(dir)?.unwrap_or_default().partitions,
            Store::Kafka {
                brokers,
                options,
                topic,
                read_committed,
            } => read_topic(brokers, options, topic, *read_committed, partitions)?,
        };
        all.retain(|name, _| partitions.contains(name));
        Ok(all)
    }

    /// The whole local checkpoint (the file store only; empty for the topic).
    pub(crate) fn load_file(&self) -> anyhow::Result<Checkpoint> {
        match self {
            Store::File(dir) => Ok(super::load(dir)?.unwrap_or_default()),
            Store::Kafka { .. } => Ok(Checkpoint::default()),
        }
    }
}

/// Reads the checkpoint topic from its start to its end and keeps the last record of each
/// wanted partition (a compacted topic holds little more than those).
fn read_topic(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topic: &str,
    read_committed: bool,
    wanted: &[String],
) -> anyhow::Result<BTreeMap<String, PartitionState>> {
    let fetch = (MAX_RECORD + (1 << 20)).to_string();
    let extra = [
        (
            "isolation.level",
            kafka_settings::isolation(read_committed).to_owned(),
        ),
        ("max.partition.fetch.bytes", fetch.clone()),
        ("fetch.max.bytes", fetch),
        ("receive.message.max.bytes", (2 * MAX_RECORD).to_string()),
    ];
    let consumer = kafka::reader(brokers, options, &extra)?;
    // The last record of each wanted partition, undecoded: only those are decoded, so an
    // older damaged record does not matter once a newer one is there. `None`: a tombstone
    // (the partition's state was dropped on purpose).
    let mut last: BTreeMap<String, Option<(Vec<u8>, i32, i64)>> = BTreeMap::new();
    kafka::read_from_start(&consumer, topic, None, READ_TIMEOUT, |msg| {
        let Some(key) = msg.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        if wanted.iter().any(|w| w == key) {
            let record = msg
                .payload()
                .map(|v| (v.to_vec(), msg.partition(), msg.offset()));
            last.insert(key.to_owned(), record);
        }
    })
    .with_context(|| {
        format!("cannot read checkpoint topic {topic} (is it compacted: cleanup.policy=compact?)")
    })?;
    let mut found = BTreeMap::new();
    for (key, record) in last {
        let Some((value, partition, offset)) = record else {
            continue;
        };
        let state = super::parse(&value).with_context(|| {
            format!(
                "the checkpoint of {key} in topic {topic} (partition {partition}, offset \
                 {offset}) is damaged, so its window state cannot be restored; start with \
                 --fresh-start to discard checkpoints (alerts of windows open at the time may \
                 then be missed or under-counted)"
            )
        })?;
        found.insert(key, state);
    }
    Ok(found)
}
