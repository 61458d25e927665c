//! The pipeline: what happens to a batch of lines, read top to bottom in
//! [`Pipeline::process`]:
//!
//! 1. records of repartition topics are taken apart from input lines and counted where
//!    they belong ([`forward`]);
//! 2. each input line is decoded once, and each rule projects the fields it declared into
//!    its own event batch ([`crate::decode`]); lines no rule can use are rejected
//!    ([`rejects`]);
//! 3. each rule's filter sees its batch in one Wasm call, and the selected events are
//!    counted in its windows or forwarded ([`runner`]);
//! 4. the trigger gathers each rule's candidate (window, key) counts and asks its module
//!    which are alerts (one Wasm call per rule), cooldowns suppress repeats ([`cooldown`]),
//!    shadows are compared and taken out ([`shadow`]);
//! 5. the rows are emitted to the sink, as one trigger.
//!
//! Between batches the driver applies rule changes ([`reload`]), checkpoints, restores and
//! drops partitions ([`state`]), and reads the status ([`report`]).
//!
//! Everything per event happens in reused buffers; allocation happens per batch, per new
//! (window, key) pair and per alert.

mod cooldown;
pub mod forward;
mod rejects;
mod reload;
mod report;
mod runner;
mod shadow;
mod state;
#[cfg(test)]
mod test_support;

pub use forward::Repartitioning;
pub use rejects::Rejects;

use crate::config::OutputMode;
use crate::decode::{Decoder, LineError, Reason};
use crate::metrics::{RuleChanges, StageTimes};
use crate::registry::LoadedRule;
use crate::rules::RuleError;
use crate::sink::{AlertRow, Sink};
use crate::source::lines::Line;
use crate::source::{Reading, Sources};
use crate::status::{self, AlertStatus};
use rejects::InputTally;
use runner::RuleRunner;
use std::collections::VecDeque;
use std::time::Instant;

/// Lines per batch: large enough that a Wasm call per batch is noise, small enough that a
/// batch's buffers stay in cache and `update` rows come out promptly.
pub const BATCH_LINES: usize = 4096;

/// Runs rules over batches of lines.
pub struct Pipeline {
    sources: Sources,
    decoder: Decoder,
    rules: Vec<RuleRunner>,
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
    pub fn new(
        sources: Sources,
        rules: &[LoadedRule],
        mode: Option<OutputMode>,
        rejects: Rejects,
    ) -> Result<Self, RuleError> {
        let mut decoder = Decoder::default();
        let runners = rules
            .iter()
            .map(|rule| RuleRunner::new(rule, &mut decoder, mode))
            .collect::<Result<_, _>>()?;
        Ok(Pipeline {
            sources,
            decoder,
            rules: runners,
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

    /// Sets up repartitioning: rules not grouping by the field the input is keyed by
    /// forward their events through their internal topic.
    pub fn set_repartitioning(&mut self, r: Repartitioning) -> anyhow::Result<()> {
        self.repartitioning = Some(r);
        let mut rules = std::mem::take(&mut self.rules);
        let counted = rules
            .iter_mut()
            .try_for_each(|r| self.set_counting(r).map_err(anyhow::Error::msg));
        self.rules = rules;
        counted
    }

    /// Processes one batch of lines (`buf` holds their bytes) and emits its trigger.
    pub fn process(
        &mut self,
        buf: &[u8],
        lines: &[Line],
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        if self.repartitioning.is_some() {
            for line in lines {
                if self.sources.is_internal(line.source as usize) {
                    self.absorb_forwarded(line, &buf[line.range.clone()]);
                }
            }
        }
        let Pipeline {
            sources,
            decoder,
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
        for r in rules.iter_mut() {
            r.start_batch();
        }
        for (index, line) in lines.iter().enumerate() {
            if ctx.sources.is_internal(line.source as usize) {
                continue;
            }
            input.stats.lines += 1;
            let decoded = if line.too_large {
                Err(TOO_LARGE)
            } else {
                decoder.decode(&buf[line.range.clone()])
            };
            match decoded {
                Ok(rec) => {
                    for r in rules.iter_mut().filter(|r| r.instance.is_some()) {
                        r.stage(&rec, index, &mut ctx);
                    }
                }
                Err(e) => input.reject(line, &e, &mut ctx),
            }
        }
        ctx.times.decode += started.elapsed();
        for r in rules.iter_mut() {
            r.flush_events(&mut ctx);
        }
        self.rejects.flush()?;
        self.trigger(false, sink)
    }

    /// Emits what the watermark alone decides (windows it closed while no data came, for
    /// example after a source went idle).
    pub fn tick(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.trigger(false, sink)
    }

    /// Ends the input: every window closes and the last rows are emitted.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.trigger(true, sink)?;
        self.rejects.flush()?;
        sink.flush()?;
        Ok(())
    }

    /// Asks every rule for its alerts (`end`: every window closes), takes the shadows'
    /// rows out and emits the rest as one trigger.
    fn trigger(&mut self, end: bool, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let started = Instant::now();
        self.rows.clear();
        for r in &mut self.rules {
            if let Err(e) = r.trigger(end, &mut self.rows) {
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
            });
        }
        if !self.rows.is_empty() {
            sink.emit(self.triggers, &self.rows)?;
            sink.flush()?;
            self.triggers += 1;
        }
        Ok(())
    }

    /// Moves every rule's watermark past its open windows (the input has been quiet); the
    /// next trigger emits them.
    pub fn close_open_windows(&mut self) {
        for r in &mut self.rules {
            r.windows.advance_past_open();
        }
    }

    /// Names source `index` (a partition as it is assigned) for positions and checkpoints.
    pub fn name_source(&mut self, index: usize, name: &str) {
        let rp = self.repartitioning.as_ref();
        self.sources.name(index, name, |topic| {
            rp.is_some_and(|r| r.is_internal(topic))
        });
    }

    /// Whether source `index` is a partition of a repartition topic.
    pub fn is_internal(&self, index: usize) -> bool {
        self.sources.is_internal(index)
    }

    /// Tells every rule what source `index`'s reader says of it: idle or not, and whether
    /// it was vouched for just now (then its watermark moves to the active sources').
    pub fn set_source_idle(&mut self, index: usize, reading: Reading) {
        // A repartition topic's partitions get markers at least once a second.
        if self.sources.is_internal(index) {
            return;
        }
        for r in &mut self.rules {
            r.windows.set_idle(index, reading.idle);
            if reading.vouched {
                r.windows.follow(index);
            }
        }
    }

    /// Triggers emitted so far (the console's batch number).
    pub fn triggers(&self) -> u64 {
        self.triggers
    }

    /// Goes on numbering triggers from `triggers` (restored from a checkpoint).
    pub fn set_triggers(&mut self, triggers: u64) {
        self.triggers = triggers;
    }

    /// Time spent per stage so far.
    pub fn stage_times(&self) -> &StageTimes {
        &self.times
    }

    /// Flushes the reject outputs (before a checkpoint).
    pub fn flush_rejects(&mut self) -> anyhow::Result<()> {
        self.rejects.flush()
    }
}

/// A line over the record size, rejected before decoding.
const TOO_LARGE: LineError = LineError {
    reason: Reason::TooLarge,
    at: None,
    detail: "longer than the maximum record size",
};

/// What a rule's batch run needs from the pipeline: the batch's lines and bytes, their
/// sources, where rejected input goes, and the stage clocks.
pub(crate) struct BatchContext<'a> {
    buf: &'a [u8],
    lines: &'a [Line],
    sources: &'a Sources,
    rejects: &'a mut Rejects,
    times: &'a mut StageTimes,
}
