//! The poll loop of `run`: read a batch, tell the pipeline which partitions are idle, apply
//! rule changes, process, hand partitions over on rebalances, send watermark markers,
//! close windows when the input is quiet, checkpoint when due, publish the status.

use super::checkpoints::Checkpoints;
use crate::checkpoint::store::Store;
use crate::config::run::RunConfig;
use crate::pipeline::{BATCH_LINES, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Fanout;
use crate::source::Reading;
use crate::source::kafka::KafkaSource;
use crate::status::{CheckpointStatus, Publisher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::info;

/// How long a poll waits for messages before the loop looks at idleness and checkpoints.
const POLL: Duration = Duration::from_millis(100);

/// Everything the loop drives.
pub(super) struct Engine<'a> {
    pub config: &'a RunConfig,
    pub pipeline: Pipeline,
    pub source: KafkaSource,
    pub sink: Fanout,
    pub checkpoints: Checkpoints,
    pub store: Store,
    pub changes: Changes,
    pub status: Option<Publisher>,
    /// Per partition index: what its reader says of it this round.
    pub partitions: Vec<Reading>,
    /// The open windows were closed for quiet input, and no data came since.
    pub quiet_closed: bool,
}

impl Engine<'_> {
    /// Loops until `stop`, then writes a last checkpoint and prints the summary. With
    /// `fresh_start`, the first assignment ignores the store (later ones are hand-overs
    /// between instances and restore what the others wrote).
    pub fn run(mut self, stop: &AtomicBool, fresh_start: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut ignore_store = fresh_start;
        let mut lines = Vec::with_capacity(BATCH_LINES);
        let idle_timeout = self.config.watermark.idle_timeout;
        while !stop.load(Ordering::Relaxed) {
            self.source.next_batch(BATCH_LINES, POLL, &mut lines)?;
            // Idleness as of the fetch answers that brought this batch: a partition whose
            // new data landed with it is not idle while the batch's other partitions move on.
            for p in self.source.refresh(idle_timeout, false) {
                self.pipeline.set_source_idle(p.index, p.reading);
            }
            self.pipeline.apply_ready(&self.changes, &mut self.sink)?;
            let processed = !lines.is_empty();
            if processed {
                self.quiet_closed = false;
                let buf = self.source.buffer();
                self.pipeline.process(buf, &lines, &mut self.sink)?;
            }
            self.rebalance(&mut ignore_store)?;
            let quiet_for = self.look_at_partitions();
            let source = &self.source;
            (self.pipeline).send_markers(&self.partitions, |i| source.next_offset(i));
            self.close_when_quiet(quiet_for);
            if !processed {
                self.pipeline.tick(&mut self.sink)?;
            }
            self.checkpoints.collect(&self.source, false)?;
            if self.checkpoints.due(self.config.checkpoint.interval) {
                (self.checkpoints).start(&mut self.pipeline, &self.source, &mut self.sink)?;
            }
            self.publish();
        }
        info!("stopping: writing a last checkpoint");
        (self.checkpoints).write_now(&mut self.pipeline, &self.source, &mut self.sink)?;
        crate::metrics::print_summary(&self.pipeline.summary(started.elapsed()));
        Ok(())
    }

    /// Names every partition, tells the pipeline what its reader says of it, and returns
    /// how long the input partitions read here have had nothing new.
    fn look_at_partitions(&mut self) -> Duration {
        let mut quiet_for = Duration::MAX;
        self.partitions.clear();
        for p in self
            .source
            .refresh(self.config.watermark.idle_timeout, true)
        {
            let (i, reading) = (p.index, p.reading);
            self.pipeline.name_source(i, p.name);
            self.pipeline.set_source_idle(i, reading);
            // Quiet means: input partitions we read have nothing new (not: we read none yet;
            // repartition topics get watermark markers every second, quiet or not).
            if reading.assigned && !self.pipeline.is_internal(i) {
                quiet_for = quiet_for.min(p.quiet_for);
            }
            let n = self.partitions.len().max(i + 1);
            self.partitions.resize(n, Reading::default());
            self.partitions[i] = reading;
        }
        quiet_for
    }

    /// With `watermark.quiet_close`, closes the open windows once the input has been quiet
    /// that long (once per quiet spell).
    fn close_when_quiet(&mut self, quiet_for: Duration) {
        if let Some(q) = self.config.watermark.quiet_close
            && quiet_for != Duration::MAX
            && quiet_for >= q
            && !self.quiet_closed
        {
            info!(
                "no data for {}: closing the open windows",
                humantime::format_duration(q)
            );
            self.pipeline.close_open_windows();
            self.quiet_closed = true;
        }
    }

    /// Publishes the status: the pipeline's, with what the source and the checkpoints say.
    fn publish(&mut self) {
        let Some(p) = self.status.as_mut() else {
            return;
        };
        let (pipeline, source, checkpoints) = (&self.pipeline, &self.source, &self.checkpoints);
        let partitions = &self.partitions;
        p.publish(false, |s| {
            pipeline.status(s);
            for (i, part) in s.partitions.iter_mut().enumerate() {
                let Reading { assigned, idle, .. } = partitions.get(i).copied().unwrap_or_default();
                part.assigned = assigned;
                part.idle = idle;
                part.lag = if assigned { source.lag(i) } else { None };
            }
            let assigned = s.partitions.iter().any(|p| p.assigned);
            s.ready = assigned && s.a_rule_runs() && checkpoints.failing.is_none();
            (s.kafka_problem, s.kafka_problems) = source.problem();
            s.checkpoint = Some(CheckpointStatus {
                age_seconds: checkpoints.last.elapsed().as_secs_f64(),
                duration_seconds: checkpoints.seconds.clone(),
                failing: checkpoints.failing.clone(),
            });
        });
    }
}
