//! Kafka outputs: alerts to a topic (keyed by alert id, so a compacted topic keeps the last
//! row of each window and key), dead letters and late events to topics (the original bytes
//! as the value, the reason and position in headers, as Kafka Connect's dead-letter queues
//! do). One idempotent producer serves all three.

use super::jsonl::alert_json;
use super::records::RejectSink;
use super::{AlertRow, Sink};
use crate::decode::time::format_rfc3339;
use crate::kafka::Client;
use crate::source::{PartitionId, Position};
use anyhow::{Context as _, bail};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tracing::error;

/// Tracks deliveries: the sequence numbers of messages not settled yet (delivered or
/// failed), to know when every message before a checkpoint is, and those that failed for
/// good, so that no checkpoint is written past them.
#[derive(Default)]
pub(crate) struct Deliveries {
    outstanding: Mutex<BTreeSet<usize>>,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The last client error logged (see `source::kafka::changed`).
    last_client_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::source::kafka::log(level, fac, message);
    }

    /// Logged once per change, with what to check (the consumer's own report says the
    /// same for the shared brokers); librdkafka retries.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        if crate::source::kafka::changed(&self.last_client_error, &message) {
            let hint = crate::source::kafka::hint(reason);
            tracing::warn!("Kafka producer: {message} (retrying; {hint})");
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        self.outstanding.lock().expect("not poisoned").remove(&seq);
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().expect("not poisoned") = Some(e.to_string());
        }
    }
}

/// The shared producer.
#[derive(Clone)]
pub(crate) struct Output {
    producer: Arc<ThreadedProducer<Deliveries>>,
    /// The sequence number of the next message.
    next: Arc<AtomicUsize>,
}

impl Output {
    /// An idempotent producer to `brokers`; `options` go to librdkafka as they are.
    pub(crate) fn connect(
        brokers: &str,
        options: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let producer = crate::kafka::config(brokers, Client::Producer, &[], options)
            .create_with_context(Deliveries::default())
            .context("cannot create the Kafka producer (check the [kafka] settings)")?;
        Ok(Output {
            producer: Arc::new(producer),
            next: Arc::default(),
        })
    }

    /// Queues one message (waiting for room if the queue is full).
    pub(crate) fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        self.send_to(topic, None, key, value, headers);
    }

    /// Queues one message to `partition` (else the one its key hashes to).
    pub(crate) fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let outstanding = &self.producer.context().outstanding;
        outstanding.lock().expect("not poisoned").insert(seq);
        let mut record = BaseRecord::with_opaque_to(topic, seq).payload(value);
        if !key.is_empty() {
            record = record.key(key);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // The queue drains as the broker acknowledges; wait for room.
                    std::thread::sleep(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => {
                    outstanding.lock().expect("not poisoned").remove(&seq);
                    self.producer
                        .context()
                        .failed
                        .fetch_add(1, Ordering::Relaxed);
                    error!("Kafka: cannot send to {topic}: {e}");
                    return;
                }
            }
        }
    }

    /// Messages queued so far (see [`Output::settle`]).
    pub(crate) fn sent(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Waits until the first `upto` messages queued are settled, while later ones may still
    /// be in flight; fails if any message was lost, so that the caller does not checkpoint
    /// past it.
    pub(crate) fn settle(&self, upto: usize, timeout: Duration) -> io::Result<()> {
        let started = std::time::Instant::now();
        let pending = || {
            let outstanding = self.producer.context().outstanding.lock();
            outstanding
                .expect("not poisoned")
                .first()
                .is_some_and(|&s| s < upto)
        };
        while pending() {
            if started.elapsed() > timeout {
                return Err(io::Error::other(format!(
                    "Kafka producer: messages not acknowledged within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.check_failures()
    }

    /// Waits until everything sent so far is acknowledged; fails if anything was lost, so
    /// that the caller does not checkpoint past it.
    pub(crate) fn flush(&self, timeout: Duration) -> io::Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|e| io::Error::other(format!("Kafka producer flush: {e}")))?;
        self.check_failures()
    }

    fn check_failures(&self) -> io::Result<()> {
        let failed = self.producer.context().failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = self
                .producer
                .context()
                .last_error
                .lock()
                .expect("not poisoned")
                .clone();
            return Err(io::Error::other(format!(
                "{failed} message(s) could not be delivered to Kafka (last error: {})",
                last.unwrap_or_default()
            )));
        }
        Ok(())
    }
}

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
    let results = futures_executor::block_on(admin.create_topics(&new, &opts))
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
