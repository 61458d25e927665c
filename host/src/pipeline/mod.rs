//! The pipeline: what happens to a batch of lines, read top to bottom in
//! [`Pipeline::process`]:
//!
//! 1. records of repartition topics are taken apart from input lines and counted where
//!    they belong ([`forward`]);
//! 2. the input lines are split into chunks, one per worker of the [`stage`] (a persistent
//!    pool), and each worker's [`front`] decodes its lines once, projects the fields each
//!    rule declared into that rule's event batch ([`crate::decode`]) and runs the rule's
//!    filter over it (one Wasm call per batch), on its own core;
//! 3. chunk by chunk, in line order: lines no rule can use are rejected ([`rejects`]), and
//!    each rule's selected events are counted in its windows or forwarded ([`runner`]);
//! 4. the trigger gathers each rule's candidate (window, key) counts and asks its module
//!    which are alerts (one Wasm call per rule), cooldowns suppress repeats ([`cooldown`]),
//!    shadows are compared and taken out ([`shadow`]);
//! 5. the rows are emitted to the sink, as one trigger.
//!
//! A driver calls the pipeline through a few calls that own the order of a round
//! ([`lifecycle`]); between batches rule changes are applied ([`reload`]), partitions
//! checkpointed, restored and dropped ([`state`]), and the status read ([`report`]).
//!
//! Everything per event happens in reused buffers; allocation happens per batch, per new
//! (window, key) pair and per alert.

mod cooldown;
pub(crate) mod forward;
mod front;
mod lifecycle;
mod rejects;
mod reload;
mod report;
mod runner;
mod shadow;
mod stage;
mod state;
#[cfg(test)]
pub(crate) mod test_support;

pub(crate) use forward::Repartitioning;
use front::FrontSpec;
pub(crate) use rejects::Rejects;
pub(crate) use stage::Chunk;
use stage::Stage;

use crate::config::OutputMode;
use crate::metrics::{RuleChanges, StageTimes};
use crate::registry::LoadedRule;
use crate::rules::RuleError;
use crate::sink::{AlertRow, Sink};
use crate::source::Sources;
use crate::source::lines::Line;
use crate::status::{self, AlertStatus};
use rejects::InputTally;
use runner::RuleRunner;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines per batch: large enough that a Wasm call per batch is noise, small enough that a
/// batch's buffers stay in cache and `update` rows come out promptly.
pub(crate) const BATCH_LINES: usize = 4096;

/// Runs rules over batches of lines.
pub(crate) struct Pipeline {
    sources: Sources,
    rules: Vec<RuleRunner>,
    /// How many workers filter each batch.
    workers: usize,
    /// The filter stage: one front per worker.
    stage: Stage,
    /// The chunks of the batch being applied.
    chunks: Vec<Chunk>,
    /// Output mode for every rule, if overridden.
    mode: Option<OutputMode>,
    changes: RuleChanges,
    /// Input lines read and rejected.
    input: InputTally,
    rejects: Rejects,
    triggers: u64,
    rows: Vec<AlertRow>,
    /// The latest published alerts, newest last.
    recent: VecDeque<AlertStatus>,
    times: StageTimes,
    repartitioning: Option<Repartitioning>,
}

impl Pipeline {
    /// Starts every rule; `mode` overrides the rules' own output mode.
    pub(crate) fn new(
        sources: Sources,
        rules: &[LoadedRule],
        mode: Option<OutputMode>,
        rejects: Rejects,
    ) -> Result<Self, RuleError> {
        let runners: Vec<RuleRunner> = rules
            .iter()
            .map(|rule| RuleRunner::new(rule, mode))
            .collect::<Result<_, _>>()?;
        let stage = Stage::new(&front_specs(&runners))?;
        Ok(Pipeline {
            sources,
            rules: runners,
            workers: 1,
            stage,
            chunks: Vec::new(),
            mode,
            changes: RuleChanges::default(),
            input: InputTally::default(),
            rejects,
            triggers: 0,
            rows: Vec::new(),
            recent: VecDeque::with_capacity(status::RECENT_ALERTS),
            times: StageTimes::default(),
            repartitioning: None,
        })
    }

    /// Runs the filter stage of each batch on `workers` threads (see [`stage`]); the
    /// output does not depend on how many.
    pub(crate) fn set_workers(&mut self, workers: usize) -> anyhow::Result<()> {
        self.workers = workers.max(1);
        let specs = front_specs(&self.rules);
        self.stage.grow(self.workers, &specs)
    }

    /// How many workers filter each batch.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Which rules run, by index (a front stops giving the others their events).
    fn running(&self) -> Arc<[bool]> {
        self.rules.iter().map(|r| r.instance.is_some()).collect()
    }

    /// Brings the fronts up to the rules as they are now (after a rule change): instances
    /// of unchanged rules are kept; a rule whose new instance does not start is quarantined.
    pub(super) fn restart_fronts(&mut self) {
        loop {
            let specs = front_specs(&self.rules);
            match self.stage.renew(&specs) {
                Ok(()) => return,
                Err((i, e)) => {
                    drop(specs);
                    self.rules[i].quarantine(e);
                }
            }
        }
    }

    /// Sets up repartitioning: rules not grouping by the field the input is keyed by
    /// forward their events through their internal topic.
    pub(crate) fn set_repartitioning(&mut self, r: Repartitioning) -> anyhow::Result<()> {
        self.repartitioning = Some(r);
        let mut rules = std::mem::take(&mut self.rules);
        let counted = rules
            .iter_mut()
            .try_for_each(|r| self.set_counting(r).map_err(anyhow::Error::msg));
        self.rules = rules;
        counted
    }

    /// Processes one batch of lines (`buf` holds their bytes) and emits its trigger: its
    /// input lines split over the workers, what they found applied in line order.
    pub(crate) fn process(
        &mut self,
        buf: &Arc<Vec<u8>>,
        lines: &Arc<Vec<Line>>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let internal = self.repartitioning.is_some().then(|| {
            for line in lines.iter() {
                if self.sources.is_internal(line.source as usize) {
                    self.absorb_forwarded(line, &buf[line.range.clone()]);
                }
            }
            self.sources.internal()
        });
        let running = self.running();
        let per_chunk = lines.len().div_ceil(self.workers).max(MIN_CHUNK);
        for start in (0..lines.len().max(1)).step_by(per_chunk) {
            let range = start..lines.len().min(start + per_chunk);
            (self.stage).submit(buf, lines, range, internal.as_ref(), &running);
        }
        let mut chunks = std::mem::take(&mut self.chunks);
        while let Some(chunk) = self.stage.next()? {
            chunks.push(chunk);
        }
        let applied = self.apply_filtered(&chunks, sink);
        for chunk in chunks.drain(..) {
            self.stage.recycle(chunk);
        }
        self.chunks = chunks;
        applied
    }

    /// Queues a whole batch for the workers without waiting (a driver keeping several in
    /// flight); [`Pipeline::next_filtered`] gives them back in order.
    pub(crate) fn submit(&mut self, buf: &Arc<Vec<u8>>, lines: &Arc<Vec<Line>>) {
        let running = self.running();
        (self.stage).submit(buf, lines, 0..lines.len(), None, &running);
    }

    /// The next batch queued with [`Pipeline::submit`], once filtered (filtering queued ones
    /// on this thread meanwhile); `None` if none is in flight.
    pub(crate) fn next_filtered(&mut self) -> anyhow::Result<Option<Chunk>> {
        self.stage.next()
    }

    /// Applies a batch [`Pipeline::next_filtered`] gave back and emits its trigger.
    pub(crate) fn apply_chunk(&mut self, chunk: Chunk, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let chunks = [chunk];
        let applied = self.apply_filtered(&chunks, sink);
        let [chunk] = chunks;
        self.stage.recycle(chunk);
        applied
    }

    /// The back half of [`Pipeline::process`]: applies what the fronts found in the
    /// chunks of one batch (in order; at least one), then emits the trigger.
    fn apply_filtered(&mut self, chunks: &[Chunk], sink: &mut dyn Sink) -> anyhow::Result<()> {
        let (buf, lines) = (&chunks[0].buf, &chunks[0].lines);
        let filtered = || chunks.iter().map(|c| &c.filtered);
        let Pipeline {
            sources,
            rules,
            input,
            rejects,
            times,
            ..
        } = self;
        let mut ctx = BatchContext {
            buf,
            lines,
            sources,
            rejects,
            times,
        };
        for chunk in filtered() {
            input.reject_unusable(chunk, rules, &mut ctx);
            ctx.times.decode += chunk.decode_time;
        }
        for (i, r) in rules.iter_mut().enumerate() {
            if r.instance.is_none() {
                continue;
            }
            r.stats.events += filtered().map(|c| c.rules[i].events).sum::<u64>();
            let filter_time: Duration = filtered().map(|c| c.rules[i].filter_time).sum();
            ctx.times.filter += filter_time;
            r.stats.filter_time += filter_time;
            // A filter that failed anywhere in the batch stops the rule before any of the
            // batch's events count, however the batch was split.
            if let Some(e) = filtered().find_map(|c| c.rules[i].failed.clone()) {
                r.quarantine(e);
                continue;
            }
            let mut took = Duration::ZERO;
            for chunk in filtered() {
                took += chunk.rules[i].filter_time + r.apply(&chunk.rules[i], &mut ctx);
            }
            // One observation per batch, however it was split.
            if filtered().any(|c| !c.rules[i].calls().is_empty()) {
                r.stats.batch_seconds.observe(took.as_secs_f64());
            }
        }
        self.rejects.flush()?;
        self.trigger(false, sink)
    }

    /// Asks every rule for its alerts (`end`: every window closes), takes the shadows'
    /// rows out and emits the rest as one trigger.
    pub(super) fn trigger(&mut self, end: bool, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let started = Instant::now();
        self.rows.clear();
        let inputs = self.repartitioning.as_ref().map(|r| r.inputs.as_slice());
        for r in &mut self.rules {
            if let Err(e) = r.trigger(end, &mut self.rows, &self.sources, inputs) {
                r.quarantine(e);
            }
        }
        self.compare_shadows();
        let emitted = self.emit(sink);
        self.times.trigger += started.elapsed();
        emitted
    }

    /// Sends the collected rows as one trigger.
    fn emit(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        for row in self.rows.iter().rev().take(status::RECENT_ALERTS).rev() {
            if self.recent.len() == status::RECENT_ALERTS {
                self.recent.pop_front();
            }
            self.recent.push_back(AlertStatus {
                rule: row.rule.name.clone(),
                window_start_ms: row.start,
                window_end_ms: row.end,
                key: row.key.clone(),
                count: row.count,
                evidence: row.evidence.clone(),
            });
        }
        if !self.rows.is_empty() {
            sink.emit(self.triggers, &self.rows)?;
            sink.flush()?;
            self.triggers += 1;
        }
        Ok(())
    }

    /// Names source `index` (a partition as it is assigned) for positions and checkpoints.
    pub(crate) fn name_source(&mut self, index: usize, name: &str) {
        let rp = self.repartitioning.as_ref();
        self.sources.name(index, name, |topic| {
            rp.is_some_and(|r| r.is_internal(topic))
        });
    }

    /// Whether source `index` is a partition of a repartition topic.
    pub(crate) fn is_internal(&self, index: usize) -> bool {
        self.sources.is_internal(index)
    }

    /// Triggers emitted so far (the console's batch number).
    pub(crate) fn triggers(&self) -> u64 {
        self.triggers
    }

    /// Goes on numbering triggers from `triggers` (restored from a checkpoint).
    pub(crate) fn set_triggers(&mut self, triggers: u64) {
        self.triggers = triggers;
    }

    /// Time spent per stage so far.
    pub(crate) fn stage_times(&self) -> &StageTimes {
        &self.times
    }

    /// Time in each rule's filter calls so far, summed over the workers, by rule name.
    pub(crate) fn filter_times(&self) -> Vec<(String, Duration)> {
        self.rules
            .iter()
            .map(|r| (r.meta.name.clone(), r.stats.filter_time))
            .collect()
    }
}

/// What the fronts need of each rule, in order.
fn front_specs(rules: &[RuleRunner]) -> Vec<FrontSpec<'_>> {
    (rules.iter())
        .map(|r| FrontSpec {
            rule: &r.rule,
            running: r.instance.is_some(),
            id: r.id,
        })
        .collect()
}

/// Fewest lines worth a chunk of their own: below, the hand-over costs more than it saves.
const MIN_CHUNK: usize = 256;

/// What a rule's batch run needs from the pipeline: the batch's lines and bytes, their
/// sources, where rejected input goes, and the stage clocks.
pub(crate) struct BatchContext<'a> {
    buf: &'a [u8],
    lines: &'a [Line],
    sources: &'a Sources,
    rejects: &'a mut Rejects,
    times: &'a mut StageTimes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::{GenConfig, Generator};
    use crate::pipeline::test_support::{Rows, crash};
    use crate::sink::records::RecordWriter;
    use crate::source::lines::LineReader;
    use std::io::Read;
    use std::sync::Mutex;

    /// A `Write` into a buffer shared with the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Rows, dead letters, late records and summary of `process` over `input` with
    /// `workers` splitting each batch into chunks (as `run` does).
    fn run(input: &[u8], workers: usize) -> (Vec<String>, Vec<u8>, Vec<u8>, String) {
        let (dead, late) = (Shared::default(), Shared::default());
        let rejects = Rejects {
            dead_letter: Some(Box::new(RecordWriter::new(Box::new(dead.clone())))),
            late: Some(Box::new(RecordWriter::new(Box::new(late.clone())))),
        };
        let rules = [crash("user_id")];
        let mut p = Pipeline::new(Sources::file("in"), &rules, None, rejects).unwrap();
        p.set_workers(workers).unwrap();
        let mut sink = Rows(Vec::new());
        let mut reader = LineReader::new(input, 1 << 20);
        let mut lines = Arc::new(Vec::new());
        while (reader.next_batch(BATCH_LINES, Arc::make_mut(&mut lines))).unwrap() {
            p.process(&reader.block(), &lines, &mut sink).unwrap();
        }
        p.finish(&mut sink).unwrap();
        let summary = p.summary(std::time::Duration::from_secs(1));
        let take = |s: &Shared| s.0.lock().unwrap().clone();
        (sink.0, take(&dead), take(&late), summary)
    }

    #[test]
    fn batches_split_over_workers_give_what_one_worker_gives() {
        let mut input = Vec::new();
        let config = GenConfig {
            events: 30_000,
            disorder: 5_000.0,
            late_share: 0.02,
            bad: 0.01,
            ..GenConfig::default()
        };
        Generator::new(config).read_to_end(&mut input).unwrap();
        let one = run(&input, 1);
        assert!(!one.0.is_empty() && !one.1.is_empty() && !one.2.is_empty());
        for workers in [2, 3, 16] {
            assert!(
                run(&input, workers) == one,
                "{workers} workers differ from one"
            );
        }
    }
}
