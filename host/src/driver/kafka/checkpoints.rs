//! Checkpoint bookkeeping of `run`, under either guarantee.
//!
//! `at_least_once`: the writer driven from the loop (a checkpoint is handed over between
//! batches, its offsets committed once it is stored, failures retried an interval later
//! while processing goes on).
//!
//! `exactly_once`: a checkpoint is a transaction commit, between batches, on the loop's
//! thread (the producer takes no records while it commits): the partitions' records go to
//! the checkpoint topic in the open transaction, which commits them with the offsets they
//! cover and everything sent since the last commit. A commit that fails is aborted, and the
//! loop redoes the work since the last one ([`Committed::Aborted`]): what a
//! `read_committed` consumer sees never depends on a commit that did not happen.

use crate::checkpoint::store::Store;
use crate::checkpoint::writer::Writer;
use crate::checkpoint::{Checkpoint, frame};
use crate::metrics::Histogram;
use crate::pipeline::Pipeline;
use crate::sink::Sink;
use crate::sink::producer::Output;
use crate::source::kafka::{KafkaSource, offset_list};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Longest wait, under `exactly_once`, for the webhooks and Alertmanagers to take the alerts
/// a commit covers: well within the transaction's timeout (10 s), after which the broker
/// aborts it.
const DELIVER_TIMEOUT: Duration = Duration::from_secs(5);

/// The checkpoint writer as the loop drives it, and what the status says of it.
pub(super) struct Checkpoints {
    how: How,
    /// When the last checkpoint was written (or the run started).
    pub last: Instant,
    /// When the last one was handed to the writer.
    tried: Instant,
    /// From snapshot to stored records.
    pub seconds: Histogram,
    /// Why checkpoints are not being written, while they are not.
    pub failing: Option<String>,
}

/// How checkpoints are written.
enum How {
    /// By the writer thread, once the outputs before them are acknowledged.
    Writer(Writer),
    /// In the transaction of the transactional `output`, to `topic`.
    Transaction {
        output: Output,
        topic: String,
        /// Records sent and offsets as of the last commit: nothing new, nothing to commit.
        last: (usize, BTreeMap<String, i64>),
    },
}

/// Whether a checkpoint taken under `exactly_once` was committed.
#[must_use]
pub(super) enum Committed {
    /// Committed (or handed to the writer, under `at_least_once`).
    Yes,
    /// Aborted: the work since the last commit must be redone from it.
    Aborted,
}

impl Checkpoints {
    /// Starts the writer, which goes on from the checkpoint `file` loaded from `store`; or,
    /// with `transactional`, commits checkpoints in `output`'s transactions.
    pub(super) fn new(
        store: &Store,
        output: Output,
        file: &Checkpoint,
        transactional: bool,
    ) -> anyhow::Result<Self> {
        let how = match store {
            Store::Kafka { topic, .. } if transactional => How::Transaction {
                output,
                topic: topic.clone(),
                last: Default::default(),
            },
            _ => How::Writer(Writer::start(store, output, file)?),
        };
        Ok(Checkpoints {
            how,
            last: Instant::now(),
            tried: Instant::now(),
            seconds: Histogram::default(),
            failing: None,
        })
    }

    /// Hands a checkpoint of the pipeline's state and the source's offsets, taken between
    /// batches after the console and reject files are flushed, to the writer.
    pub(super) fn start(
        &mut self,
        pipeline: &mut Pipeline,
        source: &KafkaSource,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Committed> {
        let offsets = source.offsets();
        self.tried = Instant::now();
        if let How::Transaction { output, last, .. } = &self.how
            && (output.sent(), &offsets) == (last.0, &last.1)
        {
            // Idle (nothing sent, no offset moved since the last commit): a snapshot and an
            // empty transaction would only cost a round trip. Triggers flush the outputs.
            self.last = self.tried;
            return Ok(Committed::Yes);
        }
        let records = pipeline.checkpoint(&offsets, sink)?;
        match &mut self.how {
            How::Writer(writer) => {
                writer.submit(records, offsets, pipeline.triggers(), sink.marks());
                Ok(Committed::Yes)
            }
            How::Transaction {
                output,
                topic,
                last,
            } => {
                let taken = Instant::now();
                let marks = sink.marks();
                let delivered = marks.iter().try_for_each(|m| m.settle(DELIVER_TIMEOUT));
                for r in &records {
                    output.send(topic, r.partition.as_bytes(), &frame(&r.body), None);
                }
                let committed = match delivered {
                    // Outside the transaction: at least once, before the commit covers them.
                    Err(e) => {
                        let why = format!("alerts not delivered to the sinks: {e:#}");
                        output.abort()?;
                        Err(why)
                    }
                    Ok(()) => output.commit(&offset_list(&offsets)?, &source.member()?)?,
                };
                if committed.is_ok() {
                    *last = (output.sent(), offsets);
                }
                Ok(self.committed(committed, taken))
            }
        }
    }

    /// Notes how a transaction ended.
    fn committed(&mut self, result: Result<(), String>, taken: Instant) -> Committed {
        match result {
            Ok(()) => {
                self.seconds.observe(taken.elapsed().as_secs_f64());
                self.last = Instant::now();
                self.failing = None;
                Committed::Yes
            }
            Err(why) => {
                error!(
                    "transaction aborted: {why}; read_committed consumers see none of it, and \
                     the work since the last commit is redone from it"
                );
                self.failing = Some(why);
                Committed::Aborted
            }
        }
    }

    /// Whether the next checkpoint is due: `interval` after the last was written, or after
    /// the last try while they fail.
    pub(super) fn due(&self, interval: Duration) -> bool {
        let busy = matches!(&self.how, How::Writer(w) if w.busy());
        !busy && self.last.elapsed() >= interval && self.tried.elapsed() >= interval
    }

    /// Commits the offsets of a checkpoint the writer finished; with `wait`, waits for the
    /// one in flight. A checkpoint that could not be stored commits nothing: offsets stay
    /// where the last good one put them, processing goes on, and the next one is tried an
    /// interval later; each change between failing and working is logged once.
    pub(super) fn collect(&mut self, source: &KafkaSource, wait: bool) -> anyhow::Result<()> {
        let How::Writer(writer) = &mut self.how else {
            return Ok(()); // committed as they are taken
        };
        match writer.finished(wait)? {
            None => {}
            Some(Ok(written)) => {
                if let Err(e) = source.commit(&written.offsets, wait) {
                    // The checkpoint, not the group's offsets, is what a restart resumes from.
                    warn!("{e:#}");
                }
                self.seconds.observe(written.took.as_secs_f64());
                self.last = Instant::now();
                if self.failing.take().is_some() {
                    info!("checkpoints are written again; offsets are committed again");
                }
            }
            Some(Err(e)) => {
                let why = format!("{e:#}");
                if self.failing.as_deref() != Some(why.as_str()) {
                    error!(
                        "checkpoint not written: {why}; offsets stay committed where the last \
                         checkpoint put them (a restart redoes the work since, with the same \
                         alert ids), processing goes on, and it is tried again every interval"
                    );
                }
                self.failing = Some(why);
            }
        }
        Ok(())
    }

    /// Writes a checkpoint now and waits until it is stored.
    pub(super) fn write_now(
        &mut self,
        pipeline: &mut Pipeline,
        source: &KafkaSource,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Committed> {
        self.collect(source, true)?;
        let committed = self.start(pipeline, source, sink)?;
        self.collect(source, true)?;
        Ok(committed)
    }
}
