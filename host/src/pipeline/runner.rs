//! One rule in the pipeline: its windows, counters and the instance that decides alerts.
//! Per batch it applies what the fronts found for it ([`super::front`]): the events its
//! filter selected are counted or forwarded in line order; per trigger it gathers the
//! candidate (window, key) counts its output mode asks for and asks its module which are
//! alerts. A rule that traps, runs out of time or memory, or answers nonsense is
//! quarantined; the others go on.

use super::BatchContext;
use super::cooldown::Cooldown;
use super::forward::Counting;
use super::front::{RuleFiltered, batch_bytes};
use super::rejects::Logged;
use crate::config::{OnDelete, OutputMode};
use crate::decode::FieldError;
use crate::metrics::RuleStats;
use crate::registry::LoadedRule;
use crate::rules::{RuleError, RuleInstance};
use crate::sink::{AlertRow, RuleMeta};
use crate::source::Sources;
use crate::source::lines::Line;
use crate::window::{Pos, Verdict, WindowRow, WindowSettings, Windows};
use rulewatch_sdk::abi::{self, Batch, BatchWriter};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{error, warn};

/// A candidate row's source and that source's watermark when it was gathered.
#[derive(Clone)]
struct Candidate {
    source: usize,
    watermark: Option<i64>,
    /// Its evidence (with evidence on).
    evidence: Vec<Pos>,
}

/// One rule's running state in the pipeline.
pub(super) struct RuleRunner {
    /// Unique to this version of the rule in this process (fronts keep its instances by it).
    pub id: u64,
    pub meta: Arc<RuleMeta>,
    /// What it was loaded from: the fronts start their own instances from it.
    pub rule: LoadedRule,
    /// The fields its events are built from: time, key, then the declared ones.
    field_names: Vec<String>,
    /// Decides its alerts; `None` once quarantined.
    pub instance: Option<RuleInstance>,
    pub windows: Windows,
    /// Where its active sources' watermark stood lately, for idle sources to follow.
    pub stood: super::lifecycle::Stood,
    /// What its window state depends on, as checkpoints record it.
    pub settings: WindowSettings,
    pub cooldown: Cooldown,
    pub on_delete: OnDelete,
    /// Counted here, or forwarded through a repartition topic.
    pub counting: Counting,
    encoded: Vec<u8>,
    candidates: BatchWriter,
    candidate_sources: Vec<Candidate>,
    /// The rule's answer for every candidate row, gathered over its batches.
    alert_bits: Vec<u8>,
    /// Most bytes of one window batch to the rule.
    batch_bytes: usize,
    /// This rule's field problems logged so far.
    logged: Logged,
    pub stats: RuleStats,
    /// 1 for the version loaded first, one more per version swapped in.
    pub version: u64,
    /// Why its last change was rejected.
    pub last_error: Option<String>,
    /// `[params]`, for the status.
    pub params: serde_json::Value,
}

impl RuleRunner {
    /// Starts a rule: instantiates its module with its params and registers its fields.
    pub(super) fn new(rule: &LoadedRule, mode: Option<OutputMode>) -> Result<Self, RuleError> {
        let c = &rule.config;
        let instance =
            rule.module
                .instantiate(&c.params_json(), c.limits.memory, c.limits.time_per_batch)?;
        let mut field_names = vec![c.time.field.clone(), c.window.key.clone()];
        field_names.extend(rule.module.fields().iter().map(|(n, _)| n.clone()));
        let meta = RuleMeta {
            name: rule.name.clone(),
            role: rule.role.clone(),
            sha256: rule.module.sha256().to_owned(),
            key_column: c.output.key_column.clone().unwrap_or(c.window.key.clone()),
            count_column: c.output.count_column.clone().unwrap_or("count".into()),
            mode: mode.unwrap_or(c.output.mode),
        };
        static IDS: AtomicU64 = AtomicU64::new(0);
        Ok(RuleRunner {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            meta: Arc::new(meta),
            rule: rule.clone(),
            field_names,
            instance: Some(instance),
            windows: Windows::hopping(c.window.size, c.window.slide(), c.window.delay)
                .with_evidence(c.output.evidence),
            stood: Default::default(),
            settings: WindowSettings {
                size: c.window.size,
                slide: c.window.slide(),
                delay: c.window.delay,
                key: c.window.key.clone(),
                time_field: c.time.field.clone(),
                repartitioned: false,
            },
            cooldown: Cooldown::new(c.output.cooldown),
            on_delete: c.output.on_delete,
            counting: Counting::Local,
            encoded: Vec::new(),
            candidates: BatchWriter::default(),
            candidate_sources: Vec::new(),
            alert_bits: Vec::new(),
            batch_bytes: batch_bytes(rule),
            logged: Logged::default(),
            stats: RuleStats::default(),
            version: 1,
            last_error: None,
            params: c.params_value(),
        })
    }

    /// Sets how its events reach its windows. Repartitioned state differs from state
    /// counted per input partition, so the mode is part of the settings checkpoints record.
    pub(super) fn set_counting(&mut self, counting: Counting) {
        self.settings.repartitioned = matches!(counting, Counting::Forwarded(_));
        self.counting = counting;
    }

    /// Counts, logs (rate-limited) and dead-letters an event this rule cannot read.
    pub(super) fn reject_field(&mut self, e: &FieldError, line: &Line, ctx: &mut BatchContext<'_>) {
        self.stats.bad.add(e.reason);
        let field = &self.field_names[e.field];
        let pos = ctx.sources.position(line);
        if self.logged.allow(e.reason, Some(&self.meta.name)) {
            warn!(
                "{pos}: rule {}: field `{field}`: {} [{}]; {}",
                self.meta.name,
                e.detail,
                e.reason.label(),
                e.reason.hint()
            );
        }
        if let Some(dl) = &mut ctx.rejects.dead_letter {
            let error = format!("field `{field}`: {}", e.detail);
            let raw = &ctx.buf[line.range.clone()];
            dl.dead_letter(pos, e.reason.label(), &error, Some(&self.meta.name), raw);
        }
    }

    /// Applies what a front found for this rule in one chunk: the events its filter
    /// selected are counted or forwarded, in line order. The time it took.
    pub(super) fn apply(&mut self, f: &RuleFiltered, ctx: &mut BatchContext<'_>) -> Duration {
        let started = Instant::now();
        for call in f.calls() {
            let batch = Batch::parse(&call.encoded).expect("the host encodes valid batches");
            for (row, &line) in call.lines.iter().enumerate() {
                let is_selected = abi::bit(&call.selected, row);
                let time = batch.i64(abi::EVENT_TIME, row);
                let line = &ctx.lines[line as usize];
                let source = line.source as usize;
                if !is_selected && matches!(self.counting, Counting::Local) {
                    // Most events: they only move the watermark.
                    self.windows.pass(source, time);
                    continue;
                }
                let key = batch.str(abi::EVENT_KEY, row);
                let watermark = self.windows.watermark_of(source);
                let verdict = match &mut self.counting {
                    Counting::Local => {
                        let pos = Pos {
                            number: line.number,
                            byte: line.offset,
                        };
                        self.windows.observe(source, time, key, is_selected, pos)
                    }
                    Counting::Forwarded(f) => {
                        let from = ctx.sources.name_of(source);
                        let offset = line.number as i64;
                        f.forward(
                            &mut self.windows,
                            source,
                            from,
                            offset,
                            time,
                            key,
                            is_selected,
                        )
                    }
                };
                match verdict {
                    Verdict::Counted => self.stats.matched += 1,
                    Verdict::Skipped => {}
                    Verdict::Late => {
                        self.stats.matched += 1;
                        self.stats.late += 1;
                        if let (Some(late), Some(wm)) = (&mut ctx.rejects.late, watermark) {
                            let raw = &ctx.buf[line.range.clone()];
                            let pos = ctx.sources.position(line);
                            late.late(pos, &self.meta.name, time, wm, raw);
                        }
                    }
                }
            }
        }
        let applied = started.elapsed();
        ctx.times.window += applied;
        applied
    }

    /// Collects this trigger's candidate rows per the output mode, asks the rule which are
    /// alerts, and frees closed windows; `end` closes every window (the input ended).
    /// `sources` and (with a repartition topic) `inputs`, the input partitions, say where
    /// evidence positions are.
    pub(super) fn trigger(
        &mut self,
        end: bool,
        out: &mut Vec<AlertRow>,
        sources: &Sources,
        inputs: Option<&[String]>,
    ) -> Result<(), RuleError> {
        let inputs = inputs.filter(|_| self.settings.repartitioned);
        if self.instance.is_none() {
            return Ok(());
        }
        self.candidates.reset(&abi::WINDOW_KINDS);
        self.candidate_sources.clear();
        let (c, candidates) = (&mut self.candidates, &mut self.candidate_sources);
        let mut push = |w: WindowRow<'_>| {
            candidates.push(Candidate {
                source: w.source,
                watermark: w.watermark,
                evidence: w.evidence.into_owned(),
            });
            push_window(c, w.start, w.end, w.key, w.count as i64);
        };
        match self.meta.mode {
            OutputMode::Append => self.windows.close(end, &mut push),
            OutputMode::Update => {
                self.windows.drain_changed(&mut push);
                self.windows.close(end, |_| {});
            }
            OutputMode::Complete => {
                self.windows.for_each(&mut push);
                self.windows.close(end, |_| {});
            }
        }
        let rows = self.candidates.rows();
        if rows == 0 {
            return Ok(());
        }
        self.candidates.finish(&mut self.encoded);
        self.decide(rows)?;
        let batch = Batch::parse(&self.encoded).expect("the host encodes valid batches");
        for row in (0..rows).filter(|&row| abi::bit(&self.alert_bits, row)) {
            let start = batch.i64(abi::WINDOW_START, row);
            let window_end = batch.i64(abi::WINDOW_END, row);
            let key = batch.str(abi::WINDOW_KEY, row);
            let Candidate {
                source,
                watermark,
                ref evidence,
            } = self.candidate_sources[row];
            if !self.cooldown.admit(key, start, window_end, source) {
                self.stats.suppressed += 1;
                continue;
            }
            self.stats.alerts += 1;
            out.push(AlertRow {
                rule: self.meta.clone(),
                start,
                end: window_end,
                key: key.to_owned(),
                count: batch.i64(abi::WINDOW_COUNT, row) as u64,
                watermark: if end { None } else { watermark },
                evidence: (evidence.iter())
                    .map(|&p| sources.origin(source, p, inputs))
                    .collect(),
            });
        }
        let windows = &self.windows;
        self.cooldown.expire(|source| windows.watermark_of(source));
        Ok(())
    }

    /// Asks the rule which of the `rows` encoded candidates alert, into `alert_bits`: in one
    /// call, or in batches of at most `batch_bytes` when they are more.
    fn decide(&mut self, rows: usize) -> Result<(), RuleError> {
        let instance = self.instance.as_mut().expect("running");
        self.alert_bits.clear();
        if self.encoded.len() <= self.batch_bytes {
            let bits = instance.alert(&self.encoded, rows)?;
            self.alert_bits.extend_from_slice(bits);
            return Ok(());
        }
        self.alert_bits.resize(rows.div_ceil(8), 0);
        let all = Batch::parse(&self.encoded).expect("the host encodes valid batches");
        let (mut part, mut encoded, mut first) = (BatchWriter::default(), Vec::new(), 0);
        part.reset(&abi::WINDOW_KINDS);
        for row in 0..rows {
            push_window(
                &mut part,
                all.i64(abi::WINDOW_START, row),
                all.i64(abi::WINDOW_END, row),
                all.str(abi::WINDOW_KEY, row),
                all.i64(abi::WINDOW_COUNT, row),
            );
            if part.encoded_len() >= self.batch_bytes || row + 1 == rows {
                part.finish(&mut encoded);
                let bits = instance.alert(&encoded, part.rows())?;
                for i in (0..part.rows()).filter(|&i| abi::bit(bits, i)) {
                    abi::set_bit(&mut self.alert_bits, first + i);
                }
                first = row + 1;
                part.reset(&abi::WINDOW_KINDS);
            }
        }
        Ok(())
    }

    /// Stops a rule that misbehaved; the other rules go on.
    pub(super) fn quarantine(&mut self, e: RuleError) {
        error!(
            "rule {} (module sha256 {}) {e}; it is quarantined and its open windows are \
             dropped; the other rules keep running",
            self.meta.name, self.meta.sha256
        );
        self.instance = None;
        self.windows = Windows::empty();
        self.stats.quarantined = Some(e.to_string());
    }
}

/// Appends one row to a window batch.
fn push_window(w: &mut BatchWriter, start: i64, end: i64, key: &str, count: i64) {
    w.push_i64(abi::WINDOW_START, start);
    w.push_i64(abi::WINDOW_END, end);
    w.push_str(abi::WINDOW_KEY, key.as_bytes());
    w.push_i64(abi::WINDOW_COUNT, count);
    w.end_row();
}
