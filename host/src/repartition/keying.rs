//! Whether the input topic is keyed by a rule's group-by field: every message's key is the
//! value of that field, so all events of a key are in one partition. Checked on a sample:
//! the first messages of each partition (reading from a partition's start also avoids
//! brokers that answer a fetch from the middle of a record batch with the next batch).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Messages sampled per partition.
const SAMPLE: i64 = 100;

/// What the sample says about one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Sampled messages that have the field (as a string or number).
    pub with_field: usize,
    /// Of those, messages whose key is the field's value.
    pub keyed: usize,
}

impl Sample {
    /// Keyed by the field: every sampled message that has it is keyed by its value.
    pub fn keyed(&self) -> bool {
        self.with_field > 0 && self.keyed == self.with_field
    }
}

/// The partitions of `topics` (`topic/partition`), and the sample per field of `fields`.
pub fn inspect(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topics: &[String],
    fields: &[&str],
) -> anyhow::Result<(Vec<String>, BTreeMap<String, Sample>)> {
    use anyhow::Context;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "rulewatch-keying-check")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Some brokers hold a fetch for the whole wait when little is new.
        .set("fetch.wait.max.ms", "10");
    for (k, v) in options {
        config.set(k, v);
    }
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    let consumer: BaseConsumer = config
        .create()
        .context("cannot create the Kafka consumer")?;
    let mut partitions = Vec::new();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for topic in topics {
        let meta = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
        for p in meta.topics().iter().flat_map(|t| t.partitions()) {
            partitions.push(crate::source::kafka::partition_name(topic, p.id()));
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(30))
                .with_context(|| format!("cannot read the offsets of topic {topic}"))?;
            if high > low {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
                ends.insert((topic.clone(), p.id()), (low + SAMPLE).min(high) - 1);
            }
        }
    }
    if partitions.is_empty() {
        anyhow::bail!(
            "topic {} has no partitions: does it exist? (rulewatch does not create its input)",
            topics.join(", ")
        );
    }
    let mut samples: BTreeMap<String, Sample> = fields
        .iter()
        .map(|f| (f.to_string(), Sample::default()))
        .collect();
    if ends.is_empty() {
        return Ok((partitions, samples));
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    while !ends.is_empty() && started.elapsed() < Duration::from_secs(20) {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let at = (msg.topic().to_owned(), msg.partition());
        match ends.get(&at) {
            None => continue, // sampled enough of it
            Some(&end) if msg.offset() >= end => {
                ends.remove(&at);
            }
            Some(_) => {}
        }
        let Ok(serde_json::Value::Object(event)) =
            serde_json::from_slice::<serde_json::Value>(msg.payload().unwrap_or_default())
        else {
            continue;
        };
        for (field, sample) in &mut samples {
            let value = match event.get(field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => continue,
            };
            sample.with_field += 1;
            if msg.key() == Some(value.as_bytes()) {
                sample.keyed += 1;
            }
        }
    }
    Ok((partitions, samples))
}
