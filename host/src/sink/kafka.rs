//! Kafka outputs: alerts to a topic (keyed by alert id, so a compacted topic keeps the last
//! row of each window and key), dead letters and late events to topics (the original bytes
//! as the value, the reason and position in headers, as Kafka Connect's dead-letter queues
//! do), all through the shared producer ([`super::producer`]).

use super::jsonl::alert_json;
use super::producer::Output;
use super::records::RejectSink;
use super::{AlertRow, Sink};
use crate::decode::time::format_rfc3339;
use crate::kafka::Client;
use crate::source::{PartitionId, Position};
use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

/// The repartition topics are written by the shared producer.
impl crate::repartition::ForwardOutput for Output {
    fn send_keyed(&self, topic: &str, key: &[u8], record: &[u8]) {
        self.send(topic, key, record, None);
    }

    fn send_to_partition(&self, topic: &str, partition: i32, record: &[u8]) {
        self.send_to(topic, Some(partition), b"", record, None);
    }
}

/// Creates `topics` (name, partitions) with topic settings `settings` unless they exist.
pub(crate) fn create_topics(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topics: &[(&str, i32)],
    replication: i32,
    settings: &[(&str, &str)],
) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        crate::kafka::config(brokers, Client::Admin, &[], options)
            .create()
            .context("cannot create the Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            let mut topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(replication));
            for (k, v) in settings {
                topic = topic.set(k, v);
            }
            topic
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    // A broker restarting while the instance starts is waited for, as the readers do.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let results = crate::source::kafka::retrying(deadline, || {
        futures_executor::block_on(admin.create_topics(&new, &opts))
    })
    .context("cannot create topics (is the broker reachable?)")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!(
                "cannot create topic {name}: {code}; create it yourself or allow this \
                 principal to create topics"
            ),
        }
    }
    Ok(())
}

/// Alerts to a topic, keyed by alert id, the value the JSON of `--format jsonl`.
pub(crate) struct AlertTopic {
    output: Output,
    topic: String,
}

impl AlertTopic {
    /// Alerts to `topic`.
    pub(crate) fn new(output: Output, topic: &str) -> Self {
        AlertTopic {
            output,
            topic: topic.to_owned(),
        }
    }
}

impl Sink for AlertTopic {
    fn emit(&mut self, _batch: u64, rows: &[AlertRow]) -> io::Result<()> {
        for r in rows {
            self.output.send(
                &self.topic,
                r.id().as_bytes(),
                alert_json(r).as_bytes(),
                None,
            );
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Delivery is confirmed at checkpoints; a flush per trigger would cost a round trip.
        Ok(())
    }
}

/// Dead letters or late events to a topic.
pub(crate) struct RejectTopic {
    output: Output,
    topic: String,
}

impl RejectTopic {
    /// Rejects to `topic`.
    pub(crate) fn new(output: Output, topic: &str) -> Self {
        RejectTopic {
            output,
            topic: topic.to_owned(),
        }
    }

    fn send(&self, pos: &Position<'_>, raw: &[u8], extra: &[(&str, String)]) {
        let (topic, partition) = match PartitionId::parse(pos.input) {
            Some(p) => (p.topic, p.partition.to_string()),
            None => (pos.input, String::new()),
        };
        let mut headers = OwnedHeaders::new();
        let position = [
            ("rulewatch.source.topic", topic.to_owned()),
            ("rulewatch.source.partition", partition),
            ("rulewatch.source.offset", pos.number.to_string()),
        ];
        for (key, value) in position.iter().chain(extra) {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        self.output.send(&self.topic, b"", raw, Some(headers));
    }
}

impl RejectSink for RejectTopic {
    fn dead_letter(
        &mut self,
        pos: Position<'_>,
        reason: &str,
        error: &str,
        rule: Option<&str>,
        raw: &[u8],
    ) {
        let mut extra = vec![
            ("rulewatch.reason", reason.to_owned()),
            ("rulewatch.error", error.to_owned()),
        ];
        if let Some(rule) = rule {
            extra.push(("rulewatch.rule", rule.to_owned()));
        }
        self.send(&pos, raw, &extra);
    }

    fn late(&mut self, pos: Position<'_>, rule: &str, event_time: i64, watermark: i64, raw: &[u8]) {
        let extra = [
            ("rulewatch.rule", rule.to_owned()),
            ("rulewatch.event_time", format_rfc3339(event_time)),
            ("rulewatch.watermark", format_rfc3339(watermark)),
            (
                "rulewatch.lateness_ms",
                (watermark - event_time).to_string(),
            ),
        ];
        self.send(&pos, raw, &extra);
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
