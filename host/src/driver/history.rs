//! The loop of a backtest (`replay --brokers`): a topic's history through the pipeline as
//! a file replay goes through it — batches in, rule changes applied between them, the
//! status published — and every window closed at the end. Each partition keeps its own
//! watermark, as in `run`; a partition read to its end is idle, vouched for by its end.
//!
//! Which rules count per input partition and which repartition is decided as `run` decides
//! it ([`crate::repartition::plan`]: `--keyed-by`, by default sampling the topic). A rule
//! that repartitions gets its internal topic in memory ([`Loopback`]): what it forwards,
//! events and watermark markers, comes back to it after each batch as one internal
//! partition, so that it counts each key across the input partitions with `run`'s
//! semantics (lateness by each input partition's watermark, windows closing as the slowest
//! allows) and gives `run`'s alerts on input not keyed by its field.

use super::file::{end, publish};
use crate::config::run::KafkaConfig;
use crate::pipeline::{BATCH_LINES, Pipeline, Repartitioning};
use crate::registry::LoadedRule;
use crate::registry::watch::Changes;
use crate::repartition::ForwardOutput;
use crate::sink::Sink;
use crate::source::kafka::history::History;
use crate::source::{SourceBatch, lines::Line};
use crate::status::Publisher;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::info;

/// The internal topics of a backtest, in memory, one partition each: the records forwarded
/// since they were last taken, in the order they were sent.
#[derive(Default)]
pub(crate) struct Loopback {
    /// The internal topics, by the source index their partition has.
    topics: Vec<(usize, String)>,
    sent: Mutex<Sent>,
}

/// Records sent: their bytes, and per record its source index and range.
#[derive(Default)]
struct Sent {
    buf: Vec<u8>,
    records: Vec<(u32, Range<usize>)>,
    /// Records sent so far per internal partition: the next one's offset.
    offsets: Vec<u64>,
}

impl Loopback {
    fn send(&self, topic: &str, record: &[u8]) {
        let Some(&(source, _)) = self.topics.iter().find(|(_, t)| t == topic) else {
            return;
        };
        let mut sent = self.sent.lock().expect("not poisoned");
        let start = sent.buf.len();
        sent.buf.extend_from_slice(record);
        let end = sent.buf.len();
        sent.records.push((source as u32, start..end));
    }

    /// Hands what was sent since the last call to `pipeline`, as lines of the internal
    /// partitions.
    fn deliver(&self, pipeline: &mut Pipeline, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let batch = {
            let mut sent = self.sent.lock().expect("not poisoned");
            if sent.records.is_empty() {
                return Ok(());
            }
            let first = self.topics.first().map_or(0, |(i, _)| *i);
            let Sent {
                buf,
                records,
                offsets,
            } = &mut *sent;
            offsets.resize(self.topics.len(), 0);
            let lines: Vec<Line> = records
                .drain(..)
                .map(|(source, range)| {
                    let offset = &mut offsets[source as usize - first];
                    *offset += 1;
                    Line {
                        range,
                        source,
                        number: *offset - 1,
                        offset: 0,
                        too_large: false,
                    }
                })
                .collect();
            SourceBatch {
                buf: Arc::new(std::mem::take(buf)),
                lines: Arc::new(lines),
                progress: Vec::new(),
            }
        };
        pipeline.on_batch(&batch, &None, Instant::now(), sink)
    }
}

impl ForwardOutput for Loopback {
    fn send_keyed(&self, topic: &str, _key: &[u8], record: &[u8]) {
        self.send(topic, record);
    }

    fn send_to_partition(&self, topic: &str, _partition: i32, record: &[u8]) {
        self.send(topic, record);
    }
}

/// Decides, as `run` would over `topics`, which rules count per input partition and which
/// repartition (`keyed_by`: `auto` to sample the topics, `none`, or a field), and sets the
/// latter up in memory; `None` when no rule repartitions. `partitions` is how many input
/// partitions the backtest reads (their source indices come first).
pub(crate) fn repartition(
    pipeline: &mut Pipeline,
    kafka: &KafkaConfig,
    rules: &[LoadedRule],
    partitions: usize,
) -> anyhow::Result<Option<Arc<Loopback>>> {
    let plan = super::repartition_plan(kafka, rules)?;
    if plan.topics.is_empty() {
        return Ok(None);
    }
    let topics = (plan.topics.values().enumerate())
        .map(|(k, t)| (partitions + k, t.clone()))
        .collect();
    let loopback = Arc::new(Loopback {
        topics,
        sent: Mutex::default(),
    });
    pipeline.set_repartitioning(Repartitioning {
        output: loopback.clone(),
        keyed_by: plan.keyed_by,
        partitions: 1,
        topics: plan.topics,
        inputs: plan.inputs,
    })?;
    for (i, topic) in &loopback.topics {
        pipeline.name_source(*i, &crate::source::kafka::partition_name(topic, 0));
    }
    Ok(Some(loopback))
}

/// How long a poll waits for records.
const POLL: Duration = Duration::from_millis(100);

/// Feeds the history to `pipeline` until every partition is read to its end, then closes
/// every window.
pub(crate) fn drive(
    pipeline: &mut Pipeline,
    history: &mut History,
    loopback: Option<&Loopback>,
    sink: &mut dyn Sink,
    changes: &Changes,
    mut status: Option<&mut Publisher>,
) -> anyhow::Result<()> {
    for (i, name) in history.names() {
        pipeline.name_source(i, name);
    }
    let mut batch = SourceBatch::default();
    let mut progress = Vec::new();
    loop {
        let done = history.done();
        if !done {
            history.next_batch(BATCH_LINES, POLL, &mut batch)?;
            pipeline.on_batch(&batch, changes, Instant::now(), sink)?;
            if !batch.lines.is_empty() {
                publish(pipeline, &batch.lines, status.as_deref_mut());
            }
        }
        if let Some(loopback) = loopback {
            // Each input partition's watermark goes to the internal ones; one read to its
            // end is idle, and its end vouches for it.
            history.progress(&mut progress);
            pipeline.on_tick(&progress, Instant::now(), true, sink)?;
            loopback.deliver(pipeline, sink)?;
        }
        if done {
            break;
        }
    }
    if history.early > 0 {
        info!(
            "backtest: skipped {} records stamped before --from that came after its first offset",
            history.early
        );
    }
    end(pipeline, sink, status)
}
