//! The poll loop of `run`, a round at a time: a batch (with every partition's progress as of
//! it) to the pipeline, partitions handed over on rebalances — checkpointed before they are
//! released, restored before they are read —, the partitions' progress as of now to the
//! pipeline, a checkpoint when due, the status. The order inside each step is the
//! pipeline's ([`crate::pipeline`]'s lifecycle).

use super::checkpoints::{Checkpoints, Committed};
use crate::checkpoint::store::Store;
use crate::config::run::{Guarantee, RunConfig};
use crate::pipeline::{BATCH_LINES, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Fanout;
use crate::source::kafka::{KafkaSource, Rebalance};
use crate::source::{Progress, Reading, SourceBatch};
use crate::status::{CheckpointStatus, Publisher};
use std::collections::BTreeMap;
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
    /// Every partition's progress this round, by index (what its reader says of it).
    pub progress: Vec<Progress>,
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
        let mut batch = SourceBatch::default();
        while !stop.load(Ordering::Relaxed) {
            self.source.next_batch(BATCH_LINES, POLL, &mut batch)?;
            let now = Instant::now();
            (self.pipeline).on_batch(&batch, &self.changes, now, &mut self.sink)?;
            self.rebalance(&mut ignore_store)?;
            self.source.progress(true, &mut self.progress);
            self.look_at();
            let came = !batch.lines.is_empty();
            let now = Instant::now();
            (self.pipeline).on_tick(&self.progress, now, came, &mut self.sink)?;
            self.checkpoints.collect(&self.source, false)?;
            if self.checkpoints.due(self.config.checkpoint_interval()) {
                let c = (self.checkpoints).start(&mut self.pipeline, &self.source, &mut self.sink);
                if let Committed::Aborted = c? {
                    self.rewind()?;
                }
            }
            self.publish();
        }
        info!("stopping: writing a last checkpoint");
        // Aborted: the partitions' next owner redoes the work since the last commit.
        let _last =
            (self.checkpoints).write_now(&mut self.pipeline, &self.source, &mut self.sink)?;
        crate::metrics::print_summary(&self.pipeline.summary(started.elapsed()));
        Ok(())
    }

    /// Notes when a quiet spell ends: when an input partition read here has data
    /// (repartition topics get markers every second, quiet or not).
    fn look_at(&mut self) {
        let close = self.config.watermark.quiet_close;
        let mut spell = true;
        for p in &self.progress {
            if p.reading.assigned && !self.pipeline.is_internal(p.index) {
                spell &= close.is_some_and(|q| self.source.quiet_for(p.index) >= q);
            }
        }
        self.quiet_closed &= spell;
        self.log_quiet();
    }

    /// Says once per quiet spell that windows close for quiet. They close per partition, as
    /// each partition's reader vouches that it is quiet (an input partition nobody reads
    /// holds the windows it feeds: silence here is not quiet there).
    fn log_quiet(&mut self) {
        let Some(q) = self.config.watermark.quiet_close else {
            return;
        };
        if !self.quiet_closed && self.progress.iter().any(|p| p.reading.quiet) {
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
        let progress = &self.progress;
        p.publish(false, |s| {
            pipeline.status(s);
            for (i, part) in s.partitions.iter_mut().enumerate() {
                // The source's progress lists every partition, by index.
                let reading = progress.get(i).map(|p| p.reading).unwrap_or_default();
                let Reading { assigned, idle, .. } = reading;
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

impl Engine<'_> {
    /// Hands over the partitions of every rebalance announced: revoked ones are released,
    /// assigned ones taken (restored from the store unless `ignore_store`, which the first
    /// assignment clears).
    fn rebalance(&mut self, ignore_store: &mut bool) -> anyhow::Result<()> {
        while let Some(change) = self.source.take_rebalance() {
            match change {
                Rebalance::Revoke(names) => self.release(&names)?,
                Rebalance::Assign(names) => {
                    let from_store = !std::mem::take(ignore_store);
                    self.take(&names, from_store)?
                }
            }
        }
        Ok(())
    }

    /// Gives partitions `names` back to the group, checkpointed first so that their next owner
    /// starts where this instance ended.
    fn release(&mut self, names: &[String]) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut committed = Committed::Yes;
        if !names.is_empty() {
            let (pipeline, sink) = (&mut self.pipeline, &mut self.sink);
            committed = self.checkpoints.write_now(pipeline, &self.source, sink)?;
        }
        // Cooperative rebalances also announce empty changes; librdkafka waits for them too.
        self.drop_partitions(names)?;
        if let Committed::Aborted = committed {
            // The released partitions' next owner redoes their part; the rest is redone here.
            self.rewind()?;
        }
        if !names.is_empty() {
            info!(
                "rebalance: checkpointed and released {} partition(s) in {:?}",
                names.len(),
                started.elapsed()
            );
        }
        Ok(())
    }

    /// Redoes the work since the last commit, after a transaction was aborted: every
    /// partition read here is restored from its last committed checkpoint and read again
    /// from the offset it covers. The consumer's assignment is not touched (see
    /// [`KafkaSource::seek`]): a rebalance announced meanwhile is carried out next round.
    fn rewind(&mut self) -> anyhow::Result<()> {
        let names = self.source.assigned().to_vec();
        if names.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let Restored {
            offsets,
            committed,
            pairs,
        } = self.restore(&names, true)?;
        self.source.seek(&names, &offsets, &committed)?;
        info!(
            "rewound {} partition(s) to the last commit ({pairs} open (window, key) pairs) in \
             {:?}",
            names.len(),
            started.elapsed()
        );
        Ok(())
    }

    /// Drops partitions `names`: their state from the pipeline, their reading from the source.
    fn drop_partitions(&mut self, names: &[String]) -> anyhow::Result<()> {
        let sources: Vec<usize> = names.iter().map(|n| self.source.index(n)).collect();
        self.pipeline.on_release(&sources);
        self.source.revoke(names)
    }

    /// Takes partitions `names`: restores their state, then reads each from the offset its
    /// state covers.
    fn take(&mut self, names: &[String], from_store: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let Restored { offsets, pairs, .. } = self.restore(names, from_store)?;
        self.source.assign(names, &offsets)?;
        if !names.is_empty() {
            info!(
                "rebalance: restored {} of {} partition(s){} ({pairs} open (window, key) pairs) in \
                 {:?}",
                offsets.len(),
                names.len(),
                (from_store.then_some(&self.store))
                    .map_or(String::new(), |s| format!(" from {}", s.describe())),
                started.elapsed()
            );
        }
        Ok(())
    }

    /// Restores the state of partitions `names` into the pipeline: from the store (if
    /// `from_store`), else empty. Under `exactly_once`, once their last owner's transactions
    /// are decided.
    fn restore(&mut self, names: &[String], from_store: bool) -> anyhow::Result<Restored> {
        let mut committed = BTreeMap::new();
        if self.config.kafka.guarantee == Guarantee::ExactlyOnce && !names.is_empty() {
            committed = self.source.wait_stable(names)?;
        }
        let records = match from_store {
            true if !names.is_empty() => self.store.load(names)?,
            _ => Default::default(),
        };
        let offsets: BTreeMap<String, i64> = (records.iter())
            .map(|(name, state)| (name.clone(), state.offset))
            .collect();
        let named: Vec<(usize, &str)> = (names.iter())
            .map(|n| (self.source.index(n), n.as_str()))
            .collect();
        let pairs = self.pipeline.on_assign(&named, records);
        Ok(Restored {
            offsets,
            committed,
            pairs,
        })
    }
}

/// What [`Engine::restore`] restored.
struct Restored {
    /// The offsets the restored state covers, by partition name.
    offsets: BTreeMap<String, i64>,
    /// The offsets the group committed, by partition name (under `exactly_once`).
    committed: BTreeMap<String, i64>,
    /// Open (window, key) pairs restored.
    pairs: usize,
}
