//! The Kafka source: a consumer-group member that hands out batches of messages as lines,
//! tracks the next offset of every partition it reads, and resumes each partition exactly
//! where processing (or the restored checkpoint) left it.

use super::lines::Line;
use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How many messages before its resume point a partition is read again (and skipped) when it
/// is assigned; more than a producer puts in one record batch.
const RESUME_LOOKBACK: i64 = 20_000;

/// A partition: `topic/partition`, the name used in checkpoints, metrics and positions.
pub fn partition_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Callbacks from librdkafka: rebalances (resume at our own offsets) and client errors
/// (logged once per change of state).
pub struct Callbacks {
    /// Next offset to process per partition name: from the checkpoint, then from progress.
    resume: Mutex<HashMap<String, i64>>,
    /// Partitions assigned, as librdkafka last told us.
    assigned: Mutex<Vec<String>>,
    /// The last client error logged, to log each state change once.
    last_error: Mutex<Option<String>>,
}

/// librdkafka's own log lines, through tracing (debug and below unless they are worse).
pub fn log(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!("librdkafka {fac}: {message}")
        }
        L::Warning => tracing::warn!("librdkafka {fac}: {message}"),
        L::Notice | L::Info => tracing::info!("librdkafka {fac}: {message}"),
        L::Debug => tracing::debug!("librdkafka {fac}: {message}"),
    }
}

impl ClientContext for Callbacks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        let mut last = self.last_error.lock().expect("not poisoned");
        if last.as_deref() != Some(message.as_str()) {
            warn!("Kafka: {message} (retrying)");
            *last = Some(message);
        }
    }
}

impl ConsumerContext for Callbacks {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let resume = self.resume.lock().expect("not poisoned");
                let mut names = Vec::new();
                for e in tpl.elements().iter() {
                    names.push(partition_name(e.topic(), e.partition()));
                }
                for name in &names {
                    if let Some((topic, p)) = split(name)
                        && let Some(&offset) = resume.get(name)
                    {
                        // Start a little before the resume point and skip what is below it:
                        // some brokers (tansu 0.6) answer a fetch from the middle of a record
                        // batch with the next batch, which would silently skip the rest of it.
                        let from = offset.saturating_sub(RESUME_LOOKBACK).max(0);
                        tpl.set_partition_offset(topic, p, Offset::Offset(from))
                            .expect("the partition is in the list");
                    }
                }
                info!("Kafka: assigned {}", names.join(", "));
                if let Err(e) = consumer.assign(tpl) {
                    warn!("Kafka: cannot take the assignment: {e}");
                }
                *self.assigned.lock().expect("not poisoned") = names;
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!("Kafka: partitions revoked");
                if let Err(e) = consumer.unassign() {
                    warn!("Kafka: cannot drop the assignment: {e}");
                }
                self.assigned.lock().expect("not poisoned").clear();
            }
            other => warn!("Kafka: rebalance error {other:?}"),
        }
    }
}

fn split(name: &str) -> Option<(&str, i32)> {
    let (topic, p) = name.rsplit_once('/')?;
    Some((topic, p.parse().ok()?))
}

/// A partition as the pipeline knows it.
struct Partition {
    name: String,
    /// Next offset to process.
    next: Option<i64>,
    /// When its last message (or its assignment) came.
    last_seen: Instant,
}

/// The partitions seen, by index.
#[derive(Default)]
struct Partitions {
    list: Vec<Partition>,
    index: HashMap<(String, i32), u32>,
}

impl Partitions {
    /// The index of a partition, registering it if new.
    fn get(&mut self, topic: &str, p: i32) -> u32 {
        if let Some(&i) = self.index.get(&(topic.to_owned(), p)) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(Partition {
            name: partition_name(topic, p),
            next: None,
            last_seen: Instant::now(),
        });
        self.index.insert((topic.to_owned(), p), i);
        i
    }
}

/// Reads messages in batches.
pub struct KafkaSource {
    consumer: BaseConsumer<Callbacks>,
    buf: Vec<u8>,
    partitions: Partitions,
    /// The assignment as last seen by `refresh`.
    assigned: Vec<String>,
    max_message: usize,
    had_error: bool,
}

impl KafkaSource {
    /// Joins consumer group `group` on `topics`. `options` go to librdkafka as they are
    /// (security settings, for example); `sources` and `offsets` come from a checkpoint.
    pub fn connect(
        brokers: &str,
        group: &str,
        topics: &[String],
        options: &BTreeMap<String, String>,
        sources: &[String],
        offsets: &BTreeMap<String, i64>,
        max_message: usize,
    ) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Answer fetches promptly and keep a deep local queue: alerts are wanted within a
            // second, and some brokers hold a fetch for the whole wait when little is new.
            .set("fetch.wait.max.ms", "10")
            .set("queued.min.messages", "1000000")
            .set("max.partition.fetch.bytes", "10485760");
        for (k, v) in options {
            config.set(k, v);
        }
        let context = Callbacks {
            resume: Mutex::new(offsets.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            assigned: Mutex::default(),
            last_error: Mutex::default(),
        };
        // librdkafka logs what its `debug` setting asks for; tracing filters.
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        let consumer: BaseConsumer<Callbacks> = config
            .create_with_context(context)
            .context("cannot create the Kafka consumer (check the [kafka] settings)")?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("cannot subscribe to {}", topics.join(", ")))?;
        let mut source = KafkaSource {
            consumer,
            buf: Vec::with_capacity(4 << 20),
            partitions: Partitions::default(),
            assigned: Vec::new(),
            max_message,
            had_error: false,
        };
        for name in sources {
            let (topic, p) = split(name).unwrap_or((name, 0));
            source.partitions.get(topic, p);
        }
        // Every partition of the topics holds the watermark back until it has been idle for
        // a while, assigned to us yet or not: otherwise the partitions assigned first (while
        // the group settles) would move the watermark past the others' data.
        for topic in &topics {
            match source
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
            {
                Ok(m) => {
                    for p in m.topics().iter().flat_map(|t| t.partitions()) {
                        source.partitions.get(topic, p.id());
                    }
                }
                Err(e) => warn!("Kafka: no metadata for {topic} yet ({e}); continuing"),
            }
        }
        for (name, &offset) in offsets {
            if let Some((topic, p)) = split(name) {
                let i = source.partitions.get(topic, p);
                source.partitions.list[i as usize].next = Some(offset);
            }
        }
        Ok(source)
    }

    /// The bytes that the last batch's line ranges point into.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// Waits up to `wait` for messages, then takes what is ready, up to `max` messages.
    pub fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
        out: &mut Vec<Line>,
    ) -> anyhow::Result<()> {
        out.clear();
        self.buf.clear();
        let mut timeout = wait;
        while out.len() < max {
            let Some(result) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let msg = match result {
                Ok(m) => m,
                Err(e) => {
                    // librdkafka retries by itself; say so once.
                    if !self.had_error {
                        warn!("Kafka: {e} (retrying)");
                        self.had_error = true;
                    }
                    continue;
                }
            };
            if self.had_error {
                info!("Kafka: receiving again");
                self.had_error = false;
            }
            let i = self.partitions.get(msg.topic(), msg.partition());
            let offset = msg.offset();
            let part = &mut self.partitions.list[i as usize];
            part.last_seen = Instant::now();
            if part.next.is_some_and(|next| offset < next) {
                continue; // already covered by the checkpoint
            }
            if let Some(next) = part.next.filter(|&next| offset > next) {
                info!(
                    "Kafka: {}: offsets {next} to {} were not delivered (compacted away, \
                     transaction markers, or skipped by the broker)",
                    part.name,
                    offset - 1
                );
            }
            part.next = Some(offset + 1);
            let payload = msg.payload().unwrap_or_default();
            let too_large = payload.len() > self.max_message;
            let start = self.buf.len();
            if !too_large {
                self.buf.extend_from_slice(payload);
            }
            out.push(Line {
                range: start..self.buf.len(),
                source: i,
                number: offset as u64,
                offset: 0,
                too_large,
            });
        }
        let mut resume = self.consumer.context().resume.lock().expect("not poisoned");
        for part in &self.partitions.list {
            if let Some(next) = part.next {
                match resume.get_mut(&part.name) {
                    Some(offset) => *offset = next,
                    None => {
                        resume.insert(part.name.clone(), next);
                    }
                }
            }
        }
        Ok(())
    }

    /// The next offset to process, per partition name.
    pub fn offsets(&self) -> BTreeMap<String, i64> {
        self.partitions
            .list
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.next?)))
            .collect()
    }

    /// Messages of partition `index` not read yet, from the high watermark in the broker's
    /// last fetch answer (librdkafka's cached value: no request is made).
    pub fn lag(&self, index: usize) -> Option<i64> {
        let part = self.partitions.list.get(index)?;
        let (topic, p) = split(&part.name)?;
        let topic = std::ffi::CString::new(topic).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client handle lives as long as the consumer; the call only reads
        // librdkafka's cached offsets of one partition into the two integers.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                p,
                &mut low,
                &mut high,
            )
        };
        if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
            return None;
        }
        Some((high - part.next.unwrap_or(low.max(0))).max(0))
    }

    /// Commits `offsets` to the group (what a checkpoint covers), for lag monitoring and
    /// for instances started without the checkpoint; with `wait`, synchronously.
    pub fn commit(&self, offsets: &BTreeMap<String, i64>, wait: bool) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (name, &offset) in offsets {
            if let Some((topic, p)) = split(name) {
                tpl.add_partition_offset(topic, p, Offset::Offset(offset))?;
            }
        }
        if tpl.count() > 0 {
            let mode = if wait {
                rdkafka::consumer::CommitMode::Sync
            } else {
                rdkafka::consumer::CommitMode::Async
            };
            self.consumer
                .commit(&tpl, mode)
                .context("committing offsets")?;
        }
        Ok(())
    }

    /// Every known partition: its index, its name, whether it is assigned to this consumer,
    /// and how long since its last message (or since it became known). Assigned partitions
    /// without messages yet become known here.
    pub fn refresh(&mut self) -> Vec<(usize, &str, bool, Duration)> {
        let assigned = self
            .consumer
            .context()
            .assigned
            .lock()
            .expect("not poisoned")
            .clone();
        for name in &assigned {
            if let Some((topic, p)) = split(name) {
                let i = self.partitions.get(topic, p) as usize;
                // Newly assigned: its quiet time counts from now.
                if !self.assigned.contains(name) {
                    self.partitions.list[i].last_seen = Instant::now();
                }
            }
        }
        self.assigned.clone_from(&assigned);
        self.partitions
            .list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let is_assigned = assigned.contains(&p.name);
                (i, p.name.as_str(), is_assigned, p.last_seen.elapsed())
            })
            .collect()
    }
}
