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
use crate::source::idle::Quiet;
use crate::source::kafka::KafkaSource;
use crate::status::{CheckpointStatus, Publisher};
use std::sync::Arc;
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
    /// Windows were closed for quiet input, and no data came since (for the log).
    pub quiet_closed: bool,
}

impl Engine<'_> {
    /// Loops until `stop`, then writes a last checkpoint and prints the summary. With
    /// `fresh_start`, the first assignment ignores the store (later ones are hand-overs
    /// between instances and restore what the others wrote).
    pub(super) fn run(mut self, stop: &AtomicBool, fresh_start: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut ignore_store = fresh_start;
        let mut lines = Arc::new(Vec::with_capacity(BATCH_LINES));
        let quiet = self.quiet();
        while !stop.load(Ordering::Relaxed) {
            self.source
                .next_batch(BATCH_LINES, POLL, Arc::make_mut(&mut lines))?;
            // Idleness as of the fetch answers that brought this batch: a partition whose
            // new data landed with it is not idle while the batch's other partitions move on.
            for p in self.source.refresh(quiet, false) {
                self.pipeline.set_source_idle(p.index, p.reading);
            }
            self.pipeline.apply_ready(&self.changes, &mut self.sink)?;
            let processed = !lines.is_empty();
            if processed {
                let buf = self.source.buffer();
                self.pipeline.process(buf, &lines, &mut self.sink)?;
            }
            self.rebalance(&mut ignore_store)?;
            self.look_at_partitions();
            let source = &self.source;
            (self.pipeline).send_markers(&self.partitions, |i| source.next_offset(i));
            self.log_quiet();
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

    /// When partitions count as idle and as quiet.
    fn quiet(&self) -> Quiet {
        Quiet {
            idle: self.config.watermark.idle_timeout,
            close: self.config.watermark.quiet_close,
        }
    }

    /// Names every partition and tells the pipeline what its reader says of it (idle,
    /// quiet: see [`KafkaSource::refresh`]).
    fn look_at_partitions(&mut self) {
        self.partitions.clear();
        let quiet = self.quiet();
        let mut spell = true;
        for p in self.source.refresh(quiet, true) {
            let (i, reading) = (p.index, p.reading);
            self.pipeline.name_source(i, p.name);
            self.pipeline.set_source_idle(i, reading);
            // A quiet spell ends when an input partition read here has data (repartition
            // topics get markers every second, quiet or not).
            if reading.assigned && !self.pipeline.is_internal(i) {
                spell &= quiet.close.is_some_and(|q| p.quiet_for >= q);
            }
            let n = self.partitions.len().max(i + 1);
            self.partitions.resize(n, Reading::default());
            self.partitions[i] = reading;
        }
        self.quiet_closed &= spell;
    }

    /// Says once per quiet spell that windows close for quiet. They close per partition, as
    /// each partition's reader vouches that it is quiet (an input partition nobody reads
    /// holds the windows it feeds: silence here is not quiet there).
    fn log_quiet(&mut self) {
        let Some(q) = self.config.watermark.quiet_close else {
            return;
        };
        if !self.quiet_closed && self.partitions.iter().any(|r| r.quiet) {
            info!(
                "partitions read to their end with no data for {}: closing the windows they \
                 hold as each is vouched quiet",
                humantime::format_duration(q)
            );
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
