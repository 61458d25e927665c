//! Checkpoint bookkeeping of `run`: the writer driven from the loop (a checkpoint is handed
//! over between batches, its offsets committed once it is stored, failures retried an
//! interval later while processing goes on).

use crate::checkpoint::Checkpoint;
use crate::checkpoint::store::Store;
use crate::checkpoint::writer::Writer;
use crate::metrics::Histogram;
use crate::pipeline::Pipeline;
use crate::sink::Sink;
use crate::sink::kafka::Output;
use crate::source::kafka::KafkaSource;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// The checkpoint writer as the loop drives it, and what the status says of it.
pub(super) struct Checkpoints {
    writer: Writer,
    /// When the last checkpoint was written (or the run started).
    pub last: Instant,
    /// When the last one was handed to the writer.
    tried: Instant,
    /// From snapshot to stored records.
    pub seconds: Histogram,
    /// Why checkpoints are not being written, while they are not.
    pub failing: Option<String>,
}

impl Checkpoints {
    /// Starts the writer, which goes on from the checkpoint `file` loaded from `store`.
    pub(super) fn new(store: &Store, output: Output, file: &Checkpoint) -> anyhow::Result<Self> {
        Ok(Checkpoints {
            writer: Writer::start(store, output, file)?,
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
    ) -> anyhow::Result<()> {
        let offsets = source.offsets();
        let records = pipeline.checkpoint(&offsets, sink)?;
        self.writer
            .submit(records, offsets, pipeline.triggers(), sink.marks());
        self.tried = Instant::now();
        Ok(())
    }

    /// Whether the next checkpoint is due: `interval` after the last was written, or after
    /// the last try while they fail.
    pub(super) fn due(&self, interval: Duration) -> bool {
        !self.writer.busy() && self.last.elapsed() >= interval && self.tried.elapsed() >= interval
    }

    /// Commits the offsets of a checkpoint the writer finished; with `wait`, waits for the
    /// one in flight. A checkpoint that could not be stored commits nothing: offsets stay
    /// where the last good one put them, processing goes on, and the next one is tried an
    /// interval later; each change between failing and working is logged once.
    pub(super) fn collect(&mut self, source: &KafkaSource, wait: bool) -> anyhow::Result<()> {
        match self.writer.finished(wait)? {
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
    ) -> anyhow::Result<()> {
        self.collect(source, true)?;
        self.start(pipeline, source, sink)?;
        self.collect(source, true)
    }
}
