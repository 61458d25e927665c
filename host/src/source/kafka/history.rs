//! The history already in Kafka topics, for a backtest (`replay --brokers`): every partition
//! is read from the first record stamped at or after `from` (Kafka's offsets-for-times) up to
//! its end offset as of the start, or up to the first record stamped at or after `to`. No
//! consumer group is joined and nothing is committed: a backtest leaves no trace on the
//! cluster.
//!
//! Partitions are read with [`client::reader`](super::reader)'s consumer outside any group,
//! assigned explicitly, each from an offset where a record batch starts (its start, or what
//! offsets-for-times answers): some brokers answer a fetch from the middle of a record batch
//! with nothing.

use super::{Batch, Reader, partition_name, reader};
use crate::source::{Progress, Reading, SourceBatch};
use anyhow::Context as _;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long the cluster may answer nothing before the backtest gives up.
const STALL: Duration = Duration::from_secs(120);
/// Timeout of each metadata and offsets request.
const ASK: Duration = Duration::from_secs(30);
/// How long nothing must come after a partition's last record for its end to be found.
const QUIET: Duration = Duration::from_secs(1);
/// How long a partition that gives nothing at all is waited for.
const FIRST: Duration = Duration::from_secs(5);

/// What to read.
pub(crate) struct Span {
    /// Records stamped before this (epoch ms) are not read; `None`: from the start.
    pub from: Option<i64>,
    /// The first record stamped at or after this (epoch ms) ends its partition.
    pub to: Option<i64>,
}

struct Part {
    topic: String,
    partition: i32,
    name: String,
    /// The partition's first offset.
    low: i64,
    /// The first offset to hand out.
    first: i64,
    /// The end offset as of the start: the partition is read up to `end - 1`.
    end: i64,
    /// The offset after the last record taken.
    next: i64,
    done: bool,
}

/// Reads the history of some topics in batches, as lines whose source is the partition's
/// index (numbered as listed by [`History::names`]) and whose number is the offset.
pub(crate) struct History {
    consumer: Reader,
    batch: Batch,
    parts: Vec<Part>,
    /// The topics read, and each partition's index by (place in `topics`, partition).
    topics: Vec<String>,
    index: HashMap<(usize, i32), usize>,
    span: Span,
    open: usize,
    max_message: usize,
    last_progress: Instant,
    /// Records skipped for being stamped before `from` (after the first offset).
    pub early: u64,
}

impl History {
    /// Plans and starts reading `topics` over `span`.
    pub(crate) fn connect(
        brokers: &str,
        topics: &[String],
        options: &BTreeMap<String, String>,
        span: Span,
        max_message: usize,
    ) -> anyhow::Result<Self> {
        let consumer = reader(
            brokers,
            options,
            &[("queued.min.messages", "1000000".into())],
        )?;
        let mut parts = Vec::new();
        for topic in topics {
            parts.extend(plan(&consumer, topic)?);
        }
        measure_ends(brokers, options, &mut parts)?;
        let mut tpl = TopicPartitionList::new();
        for p in &mut parts {
            p.first = match span.from {
                None => p.low,
                Some(ms) => first_at(&consumer, &p.topic, p.partition, ms)?.unwrap_or(p.end),
            };
            p.done = p.first >= p.end;
            if !p.done {
                // The partition's start or what offsets-for-times answered: where a record
                // batch starts (a fetch from the middle of one may be answered with nothing).
                tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.first))?;
            }
        }
        consumer
            .assign(&tpl)
            .context("cannot assign the partitions to read")?;
        let open = parts.iter().filter(|p| !p.done).count();
        for p in &parts {
            info!(
                "backtest: {} offsets {} to {} ({} records at most)",
                p.name,
                p.first,
                p.end - 1,
                (p.end - p.first).max(0)
            );
        }
        let topics = topics.to_vec();
        let place = |topic: &str| topics.iter().position(|t| t == topic).unwrap_or(0);
        let index = (parts.iter().enumerate())
            .map(|(i, p)| ((place(&p.topic), p.partition), i))
            .collect();
        Ok(History {
            consumer,
            batch: Batch::default(),
            parts,
            topics,
            index,
            span,
            open,
            max_message,
            last_progress: Instant::now(),
            early: 0,
        })
    }

    /// The partitions, `topic/partition`, by source index.
    pub(crate) fn names(&self) -> impl Iterator<Item = (usize, &str)> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.name.as_str()))
    }

    /// Whether every partition has been read to its end.
    pub(crate) fn done(&self) -> bool {
        self.open == 0
    }

    /// Every partition's progress into `out`: a partition read to its end is idle, and its
    /// end vouches for it (nothing can come after it in a backtest).
    pub(crate) fn progress(&self, out: &mut Vec<Progress>) {
        out.clear();
        out.extend(self.parts.iter().enumerate().map(|(index, p)| Progress {
            index,
            reading: Reading {
                assigned: true,
                idle: p.done,
                vouched: p.done,
                quiet: false,
            },
            next: Some(p.next.max(p.first)),
        }));
    }

    /// Waits up to `wait` for records, then takes what is ready, up to `max` of them.
    pub(crate) fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
        batch: &mut SourceBatch,
    ) -> anyhow::Result<()> {
        let out = batch.lines_mut();
        out.clear();
        self.batch.start();
        let mut timeout = wait;
        while out.len() < max && self.open > 0 {
            let Some(result) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let Some(msg) = self.batch.message(result) else {
                continue;
            };
            // No allocation per record: the topic by its place in the (short) list.
            let topic = self.topics.iter().position(|t| t == msg.topic());
            let Some(&i) = topic.and_then(|t| self.index.get(&(t, msg.partition()))) else {
                continue;
            };
            let offset = msg.offset();
            let Part {
                done, first, end, ..
            } = self.parts[i];
            if done || offset < first {
                continue;
            }
            self.parts[i].next = offset + 1;
            let stamp = msg.timestamp().to_millis();
            let past_to = stamp.zip(self.span.to).is_some_and(|(t, to)| t >= to);
            if offset >= end || past_to {
                finish(&mut self.parts[i], &mut self.open, &self.consumer);
                continue;
            }
            if offset + 1 >= end {
                finish(&mut self.parts[i], &mut self.open, &self.consumer);
            }
            if stamp.zip(self.span.from).is_some_and(|(t, from)| t < from) {
                self.early += 1;
                continue;
            }
            let payload = msg.payload().unwrap_or_default();
            (self.batch).push(out, payload, self.max_message, i as u32, offset);
        }
        let read = !out.is_empty();
        self.batch.seal(&mut batch.buf);
        batch.progress.clear();
        if read {
            self.last_progress = Instant::now();
        } else if self.open > 0 && self.last_progress.elapsed() > STALL {
            let waiting: Vec<&str> = (self.parts.iter())
                .filter(|p| !p.done)
                .map(|p| p.name.as_str())
                .collect();
            anyhow::bail!(
                "no records from {} for {}s although they have more before their end offsets: \
                 is the cluster reachable? (see the Kafka messages above)",
                waiting.join(", "),
                STALL.as_secs()
            );
        }
        Ok(())
    }
}

/// Marks `p` read to its end (one fewer `open`) and stops fetching it.
fn finish(p: &mut Part, open: &mut usize, consumer: &Reader) {
    if p.done {
        return;
    }
    p.done = true;
    *open -= 1;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&p.topic, p.partition);
    if let Err(e) = consumer.pause(&tpl) {
        warn!("Kafka: cannot stop fetching {}: {e}", p.name);
    }
}

/// The partitions of `topic` with their offsets as the broker reports them.
fn plan(consumer: &Reader, topic: &str) -> anyhow::Result<Vec<Part>> {
    let meta = consumer
        .fetch_metadata(Some(topic), ASK)
        .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!("topic {topic} does not exist (or has no partitions): check --topics");
    }
    let mut parts = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, ASK)
            .with_context(|| format!("cannot read the end offsets of topic {topic}"))?;
        parts.push(Part {
            topic: topic.to_owned(),
            partition,
            name: partition_name(topic, partition),
            low,
            first: low,
            end: high,
            next: low,
            done: false,
        });
    }
    Ok(parts)
}

/// Sets each partition's end to the offset after its last record as of now. Some brokers
/// report the first offset of their last record batch (+1) as the high watermark: reading
/// from the offset before it to the end finds the real end. A partition's end is found when the
/// consumer reports it at its end, or when records came and then nothing for [`QUIET`], or
/// when nothing came for [`FIRST`].
fn measure_ends(
    brokers: &str,
    options: &BTreeMap<String, String>,
    parts: &mut [Part],
) -> anyhow::Result<()> {
    let probe = reader(brokers, options, &[])?;
    let mut tpl = TopicPartitionList::new();
    for p in parts.iter() {
        // The offset before the reported end: where the last record batch starts on the brokers
        // that report it as the end, the last record on the others.
        let at = (p.end - 1).max(p.low);
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(at))?;
    }
    probe
        .assign(&tpl)
        .context("cannot assign the partitions to read")?;
    let index: HashMap<(&str, i32), usize> = (parts.iter().enumerate())
        .map(|(i, p)| ((p.topic.as_str(), p.partition), i))
        .collect();
    // Per partition: its end so far, when its last record came, whether it is found.
    let mut ends: Vec<(i64, Option<Instant>, bool)> =
        parts.iter().map(|p| (p.end, None, false)).collect();
    let started = Instant::now();
    while ends.iter().any(|e| !e.2) && started.elapsed() < ASK {
        match probe.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                if let Some(&i) = index.get(&(msg.topic(), msg.partition())) {
                    ends[i].0 = ends[i].0.max(msg.offset() + 1);
                    ends[i].1 = Some(Instant::now());
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // Which topic is not said: a partition of each at its end is done if it
                // has had its records (or had none to give).
                for (p, e) in parts.iter().zip(&mut ends) {
                    if p.partition == partition && e.1.is_none_or(|t| t.elapsed() > QUIET / 4) {
                        e.2 = true;
                    }
                }
            }
            _ => {}
        }
        for e in &mut ends {
            e.2 |= match e.1 {
                Some(last) => last.elapsed() > QUIET,
                None => started.elapsed() > FIRST,
            };
        }
    }
    for (p, (end, _, _)) in parts.iter_mut().zip(ends) {
        p.end = end;
    }
    Ok(())
}

/// The first offset of a record stamped at or after `ms`, if there is one.
fn first_at(
    consumer: &Reader,
    topic: &str,
    partition: i32,
    ms: i64,
) -> anyhow::Result<Option<i64>> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms))?;
    let found = consumer
        .offsets_for_times(tpl, ASK)
        .with_context(|| format!("cannot look up the offsets of {topic} by time"))?;
    let offset = found.find_partition(topic, partition).map(|p| p.offset());
    Ok(match offset {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    })
}
