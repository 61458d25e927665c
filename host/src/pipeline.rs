//! The pipeline: batches of lines → decode → each rule's filter (one Wasm call per batch) →
//! windows → alert decisions (one Wasm call per trigger) → sink.
//!
//! Everything per event happens in reused buffers; allocation happens per batch, per new
//! (window, key) pair and per alert.

use crate::checkpoint::{self, PartitionState, PartitionStateRef, Record, RuleStateRef};
use crate::config::sandbox::ceilings;
use crate::config::{OnDelete, OutputMode, RuleConfig, SHADOW_SUFFIX};
use crate::decode::{Decoder, LineError, Projection, Reason};
use crate::metrics::{InputStats, RuleChanges, RuleStats, StageTimes};
use crate::registry::watch::{Change, Changes};
use crate::repartition::{Forwarded, Marker, Progress, Sent};
use crate::rules::{RuleError, RuleInstance, RuleModule};
use crate::sink::kafka::Output;
use crate::sink::records::{Position, RejectSink};
use crate::sink::{AlertRow, RuleMeta, Sink};
use crate::source::kafka::Reading;
use crate::source::lines::Line;
use crate::status::{self, AlertStatus, PartitionStatus, RuleStatus, Status, WindowStatus};
use crate::window::{SnapshotRef, Verdict, WindowRow, Windows};
use anyhow::Context;
use rulewatch_sdk::abi::{self, Batch, BatchWriter};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tracing::{error, info, warn};

/// Lines per batch: large enough that a Wasm call per batch is noise, small enough that a
/// batch's buffers stay in cache and `update` rows come out promptly.
pub const BATCH_LINES: usize = 4096;

/// How many problems of one kind are logged before they are only counted (for the input,
/// and for each rule on its own, so that one rule's noise hides no other's).
const LOGGED_PER_REASON: u64 = 5;

/// Largest encoded batch handed to a rule in one call (a single larger row goes alone), and
/// at most an eighth of its memory: what others send never swamps a rule's memory.
const MAX_RULE_BATCH_BYTES: usize = 4 << 20;

/// The columns of a window batch: start, end, key, count.
const CANDIDATE_KINDS: [u32; 4] = [abi::KIND_I64, abi::KIND_I64, abi::KIND_STR, abi::KIND_I64];

/// Most differences from its primary a shadow logs per trigger (all are counted).
const LOGGED_SHADOW_DIFFS: usize = 20;

/// A loaded rule: its config, its compiled module and where it came from.
pub struct LoadedRule {
    /// The rule's name.
    pub name: String,
    /// Its configuration.
    pub config: RuleConfig,
    /// Its compiled module.
    pub module: Arc<RuleModule>,
}

/// One rule's running state in the pipeline.
struct RuleRunner {
    meta: Arc<RuleMeta>,
    projection: Projection,
    /// `None` once quarantined.
    instance: Option<RuleInstance>,
    windows: Windows,
    /// Window settings the state depends on, as recorded in checkpoints.
    window_id: String,
    /// `[output] cooldown`, in ms.
    cooldown: Option<i64>,
    /// `[output] on_delete`.
    on_delete: OnDelete,
    /// Per key in cooldown: the window (start, end) of its last alert, and its source.
    last_alert: HashMap<String, (i64, i64, usize)>,
    events: BatchWriter,
    /// For each staged event, the index of its line in the batch.
    event_lines: Vec<u32>,
    encoded: Vec<u8>,
    candidates: BatchWriter,
    /// Per candidate row: its source and that source's watermark.
    candidate_sources: Vec<(usize, Option<i64>)>,
    /// The rule's answer for every candidate row, gathered over its batches.
    alert_bits: Vec<u8>,
    /// Most bytes of one batch to the rule.
    batch_bytes: usize,
    /// This rule's field problems logged so far, per reason.
    logged: [u64; Reason::ALL.len()],
    stats: RuleStats,
    /// 1 for the version loaded first, one more per version swapped in.
    version: u64,
    /// Why its last change was rejected or why it was quarantined.
    last_error: Option<String>,
    /// `[params]`, for the status.
    params: serde_json::Value,
    /// Window settings, for the status.
    window: WindowStatus,
    /// When the input is not keyed by the rule's key: its repartition topic and state.
    forward: Option<Forward>,
}

/// A rule's repartitioning (see [`crate::repartition`]).
struct Forward {
    /// The internal topic.
    topic: String,
    /// Per partition of the internal topic read here (source index): what it saw of each
    /// input partition.
    progress: HashMap<usize, Progress>,
    /// Per input partition read here (source index): the last marker sent.
    sent: HashMap<usize, Sent>,
    /// Reused record buffer.
    buf: Vec<u8>,
}

impl Forward {
    fn new(topic: &str) -> Self {
        Forward {
            topic: topic.to_owned(),
            progress: HashMap::new(),
            sent: HashMap::new(),
            buf: Vec::new(),
        }
    }
}

/// Repartitioning set up for a run on Kafka (see [`crate::repartition`]).
pub struct Repartitioning {
    /// The producer for the internal topics.
    pub output: Output,
    /// The field the input is keyed by, if any: rules grouping by it count directly.
    pub keyed_by: Option<String>,
    /// The internal topic of each rule that repartitions, created at start.
    pub topics: BTreeMap<String, String>,
    /// Every input partition (`topic/partition`).
    pub inputs: Vec<String>,
    /// Partitions of each internal topic.
    pub partitions: i32,
}

/// Optional outputs for rejected input.
#[derive(Default)]
pub struct Rejects {
    /// Dead letters: lines that could not be used.
    pub dead_letter: Option<Box<dyn RejectSink>>,
    /// Late events.
    pub late: Option<Box<dyn RejectSink>>,
}

impl Rejects {
    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(w) = &mut self.dead_letter {
            w.flush().context("cannot write dead letters")?;
        }
        if let Some(w) = &mut self.late {
            w.flush().context("cannot write late events")?;
        }
        Ok(())
    }
}

/// The input sources a pipeline reads: a file (one source) or Kafka partitions.
pub struct Sources {
    names: Vec<String>,
    /// Per source: a partition of a repartition topic.
    internal: Vec<bool>,
    /// Lines of files have byte offsets; messages do not.
    files: bool,
}

impl Sources {
    /// One file (or stdin) named `name`.
    pub fn file(name: &str) -> Self {
        Sources {
            names: vec![name.to_owned()],
            internal: vec![false],
            files: true,
        }
    }

    /// Kafka partitions, named `topic/partition` as they are assigned.
    pub fn partitions() -> Self {
        Sources {
            names: Vec::new(),
            internal: Vec::new(),
            files: false,
        }
    }

    fn is_internal(&self, source: usize) -> bool {
        self.internal.get(source).copied().unwrap_or(false)
    }

    fn position(&self, line: &Line) -> Position<'_> {
        Position {
            input: self
                .names
                .get(line.source as usize)
                .map_or("?", String::as_str),
            number: line.number,
            byte: self.files.then_some(line.offset),
        }
    }
}

/// Runs rules over batches of lines.
pub struct Pipeline {
    sources: Sources,
    decoder: Decoder,
    rules: Vec<RuleRunner>,
    /// Output mode for every rule, if overridden.
    mode: Option<OutputMode>,
    changes: RuleChanges,
    input: InputStats,
    rejects: Rejects,
    /// Problems logged so far, per reason, for rate limiting.
    logged: [u64; Reason::ALL.len()],
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
            input: InputStats::default(),
            rejects,
            logged: [0; Reason::ALL.len()],
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
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let forward = self
                .forward_for(&r.window.key, &r.meta.name)
                .map_err(anyhow::Error::msg)?;
            self.rules[i].set_forward(forward);
        }
        Ok(())
    }

    /// The repartitioning of a rule grouping by `key`: none if the input is keyed by it;
    /// an error if it needs an internal topic that was not set up at start.
    fn forward_for(&self, key: &str, rule: &str) -> Result<Option<Forward>, String> {
        let Some(r) = &self.repartitioning else {
            return Ok(None);
        };
        // Decided at start (which may keep a rule repartitioned although the input looks
        // keyed now: see repartition::Plan::keep_repartitioned).
        if let Some(topic) = r.topics.get(rule) {
            return Ok(Some(Forward::new(topic)));
        }
        if r.keyed_by.as_deref() == Some(key) {
            return Ok(None);
        }
        Err(format!(
            "rule {rule} groups by `{key}`, but the input is {}: it needs a repartition topic, \
             which is set up when rulewatch starts; restart rulewatch to run it",
            r.keyed_by
                .as_ref()
                .map_or("not keyed by a field".into(), |k| format!("keyed by `{k}`"))
        ))
    }

    /// Applies a change of the rules folder, between batches. A new version of a rule with
    /// the same window settings takes over its windows; with other window settings the old
    /// windows are closed and emitted first, as at the end of input. A rule that fails to
    /// start keeps its previous version.
    pub fn apply(&mut self, change: Change, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let started = Instant::now();
        self.apply_change(change, sink)?;
        tracing::debug!("rule change applied in {:?}", started.elapsed());
        Ok(())
    }

    fn apply_change(&mut self, change: Change, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let name = match &change {
            Change::Upsert(rule) => rule.name.clone(),
            Change::Remove(name) => name.clone(),
            Change::Rejected { rule, error } => {
                self.changes.rejected += 1;
                if let Some(r) = self
                    .rules
                    .iter_mut()
                    .find(|r| Some(&r.meta.name) == rule.as_ref())
                {
                    r.last_error = Some(error.clone());
                }
                return Ok(());
            }
        };
        let index = self.rules.iter().position(|r| r.meta.name == name);
        let rule = match change {
            Change::Rejected { .. } => unreachable!("handled above"),
            Change::Remove(_) => {
                if let Some(i) = index {
                    let fate = match self.rules[i].on_delete {
                        OnDelete::Flush => {
                            self.close_rule(i, sink)?;
                            "closed and emitted"
                        }
                        OnDelete::Drop => "dropped (on_delete = \"drop\")",
                    };
                    self.rules.remove(i);
                    self.changes.removed += 1;
                    info!("rule {name}: removed; its open windows were {fate}");
                }
                return Ok(());
            }
            Change::Upsert(rule) => rule,
        };
        let mut runner = match RuleRunner::new(&rule, &mut self.decoder, self.mode) {
            Ok(r) => r,
            Err(e) => {
                error!(
                    "rule {name}: the new version does not start ({e}); the running version stays"
                );
                return Ok(());
            }
        };
        match self.forward_for(&runner.window.key, &name) {
            Ok(forward) => runner.set_forward(forward),
            Err(e) => {
                error!("{e}; the running version stays");
                self.changes.rejected += 1;
                if let Some(i) = index {
                    self.rules[i].last_error = Some(e);
                }
                return Ok(());
            }
        }
        let sha = &runner.meta.sha256;
        match index {
            None => {
                info!("rule {name}: added (module sha256 {sha}); its windows start empty");
                self.rules.push(runner);
                self.changes.added += 1;
            }
            Some(i) if self.rules[i].window_id == runner.window_id => {
                let old = &mut self.rules[i];
                info!(
                    "rule {name}: now running module sha256 {sha} (was {}); windows kept",
                    old.meta.sha256
                );
                runner.windows = std::mem::replace(&mut old.windows, Windows::empty());
                if runner.forward.is_some() {
                    runner.forward = old.forward.take();
                }
                runner.stats = std::mem::take(&mut old.stats);
                runner.version = old.version + 1;
                *old = runner;
                self.changes.swapped += 1;
            }
            Some(i) => {
                let was = self.rules[i].window_id.clone();
                self.close_rule(i, sink)?;
                info!(
                    "rule {name}: window settings changed ({was} -> {}); its open windows were \
                     closed and emitted, and it restarts with empty windows (module sha256 {sha})",
                    runner.window_id
                );
                runner.stats = std::mem::take(&mut self.rules[i].stats);
                runner.version = self.rules[i].version + 1;
                self.rules[i] = runner;
                self.changes.restarted += 1;
            }
        }
        Ok(())
    }

    /// Applies the rule changes that are ready.
    pub fn apply_ready(&mut self, changes: &Changes, sink: &mut dyn Sink) -> anyhow::Result<()> {
        if let Some(rx) = changes {
            while let Ok(change) = rx.try_recv() {
                self.apply(change, sink)?;
            }
        }
        Ok(())
    }

    /// Closes every window of rule `i` and emits the result, as at the end of input.
    fn close_rule(&mut self, i: usize, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.rows.clear();
        if let Err(e) = self.rules[i].trigger(true, &mut self.rows) {
            self.rules[i].quarantine(e);
        }
        // A shadow's rows are never published.
        self.rows.retain(|r| !r.rule.name.ends_with(SHADOW_SUFFIX));
        self.emit(sink)
    }

    /// The run summary for stderr: input and per-rule counters over `elapsed`.
    pub fn summary(&self, elapsed: std::time::Duration) -> String {
        let rules: Vec<(&str, &RuleStats)> = self
            .rules
            .iter()
            .map(|r| (r.meta.name.as_str(), &r.stats))
            .collect();
        crate::metrics::summary(&self.input, &rules, &self.changes, elapsed)
    }

    /// Fills `s` with the counters, rules, latest alerts and per-source watermarks; the
    /// caller adds what the source knows (assignment, idleness, lag) to `s.partitions`.
    pub fn status(&self, s: &mut Status) {
        s.totals.events = self.input.lines;
        s.totals.alerts = 0;
        s.totals.late = 0;
        s.bad.clear();
        for r in crate::decode::Reason::ALL {
            let n =
                self.input.bad.get(r) + self.rules.iter().map(|x| x.stats.bad.get(r)).sum::<u64>();
            if n > 0 {
                s.bad.insert(r.label(), n);
            }
        }
        s.totals.bad = s.bad.values().sum();
        s.rules.clear();
        for r in &self.rules {
            let shadow = r.meta.name.ends_with(SHADOW_SUFFIX);
            if !shadow {
                s.totals.alerts += r.stats.alerts;
                s.totals.late += r.stats.late;
            }
            s.rules.push(RuleStatus {
                name: r.meta.name.clone(),
                state: match (&r.instance, shadow) {
                    (None, _) => "quarantined",
                    (Some(_), true) => "shadow",
                    (Some(_), false) => "running",
                },
                version: r.version,
                sha256: r.meta.sha256.clone(),
                last_error: r.stats.quarantined.clone().or(r.last_error.clone()),
                repartition_topic: r.forward.as_ref().map(|f| f.topic.clone()),
                matched: r.stats.matched,
                late: r.stats.late,
                bad: r.stats.bad.total(),
                bad_by_reason: crate::decode::Reason::ALL
                    .iter()
                    .map(|&x| (x.label(), r.stats.bad.get(x)))
                    .filter(|&(_, n)| n > 0)
                    .collect(),
                alerts: r.stats.alerts,
                watermark_ms: r.windows.watermark(),
                open_pairs: r.windows.open_pairs(),
                window: r.window.clone(),
                key_column: r.meta.key_column.clone(),
                count_column: r.meta.count_column.clone(),
                params: r.params.clone(),
                batch_seconds: r.stats.batch_seconds.clone(),
                held_by: self.repartitioning.as_ref().and_then(|rp| {
                    let f = r.forward.as_ref()?;
                    f.progress
                        .values()
                        .filter_map(|p| p.held_by(&rp.inputs))
                        .max_by_key(|(_, d)| *d)
                        .map(|(name, d)| (name.to_owned(), d.as_secs_f64()))
                }),
            });
        }
        s.alerts.clear();
        s.alerts.extend(self.recent.iter().rev().cloned());
        s.rule_changes = self.changes.clone();
        s.partitions.clear();
        for (i, name) in self.sources.names.iter().enumerate() {
            let (topic, partition) = match name.rsplit_once('/') {
                Some((t, p)) if !self.sources.files => (t, p.parse().unwrap_or(0)),
                _ => (name.as_str(), 0),
            };
            let rule_watermarks: Vec<(String, i64)> = self
                .rules
                .iter()
                .filter_map(|r| Some((r.meta.name.clone(), r.windows.watermark_of(i)?)))
                .collect();
            s.partitions.push(PartitionStatus {
                topic: topic.to_owned(),
                partition,
                // A file is read at once; partitions are marked by the caller.
                assigned: self.sources.files,
                watermark_ms: rule_watermarks.iter().map(|(_, w)| *w).min(),
                rule_watermarks,
                idle: false,
                lag: None,
            });
        }
    }

    /// Names source `index` (a partition as it is assigned) for positions and checkpoints.
    pub fn name_source(&mut self, index: usize, name: &str) {
        if self.sources.names.len() <= index {
            self.sources.names.resize(index + 1, String::new());
            self.sources.internal.resize(index + 1, false);
        }
        if self.sources.names[index] != name {
            self.sources.names[index] = name.to_owned();
            let topic = name.rsplit_once('/').map_or(name, |(t, _)| t);
            self.sources.internal[index] = self
                .repartitioning
                .as_ref()
                .is_some_and(|r| r.topics.values().any(|t| t == topic));
        }
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

    /// Every rule's state per partition in `offsets` (the partitions this instance reads,
    /// with the next offset of each), encoded straight from the live state between batches.
    pub fn checkpoint(&self, offsets: &BTreeMap<String, i64>) -> anyhow::Result<Vec<Record>> {
        let mut records = Vec::with_capacity(offsets.len());
        for (name, &offset) in offsets {
            let Some(source) = self.sources.names.iter().position(|n| n == name) else {
                continue;
            };
            let rules = self
                .rules
                .iter()
                .filter(|r| r.instance.is_some())
                .map(|r| {
                    let state = RuleStateRef {
                        window: &r.window_id,
                        windows: SnapshotRef {
                            windows: &r.windows,
                            source,
                        },
                        cooldown: r
                            .last_alert
                            .iter()
                            .filter(|(_, v)| v.2 == source)
                            .map(|(k, &(s, e, _))| (k.as_str(), s, e))
                            .collect(),
                        upstream: r
                            .forward
                            .as_ref()
                            .and_then(|f| f.progress.get(&source))
                            .map(|p| &p.upstream),
                    };
                    (r.meta.name.as_str(), state)
                })
                .collect();
            let body = checkpoint::encode(&PartitionStateRef { offset, rules })?;
            records.push(Record {
                partition: name.clone(),
                body,
            });
        }
        Ok(records)
    }

    /// Triggers emitted so far (the console's batch number).
    pub fn triggers(&self) -> u64 {
        self.triggers
    }

    /// Goes on numbering triggers from `triggers` (restored from a checkpoint).
    pub fn set_triggers(&mut self, triggers: u64) {
        self.triggers = triggers;
    }

    /// Restores partition `source`'s state from its checkpoint record. State of a rule
    /// whose window settings changed since is not restored (it starts empty there), and
    /// said so.
    pub fn restore_partition(&mut self, source: usize, state: PartitionState) {
        let name = self.sources.names.get(source).cloned().unwrap_or_default();
        for (rule, st) in state.rules {
            match self.rules.iter_mut().find(|r| r.meta.name == rule) {
                Some(r) if r.window_id == st.window => {
                    r.windows.restore(source, st.windows);
                    if let Some(f) = &mut r.forward
                        && !st.upstream.is_empty()
                    {
                        let mut upstream = st.upstream;
                        // Silence is counted from here: nothing could be heard before.
                        let now = Some(Instant::now());
                        upstream.values_mut().for_each(|u| u.heard = now);
                        f.progress.insert(source, Progress { upstream });
                    }
                    r.last_alert.retain(|_, v| v.2 != source);
                    for (k, s, e) in st.cooldown {
                        r.last_alert.insert(k, (s, e, source));
                    }
                    tracing::debug!(
                        "rule {rule}: {name}: restored, watermark {}",
                        r.windows
                            .watermark_of(source)
                            .map_or("none".into(), crate::decode::time::format_rfc3339)
                    );
                }
                Some(r) => warn!(
                    "rule {rule}: its window settings changed since the checkpoint of {name} \
                     ({} then, {} now); it starts with empty windows there",
                    st.window, r.window_id
                ),
                None => warn!(
                    "rule {rule} is in the checkpoint of {name} but no longer loaded; its state \
                     is dropped"
                ),
            }
        }
    }

    /// Drops partition `source`'s state in every rule (it went to another instance).
    pub fn drop_partition(&mut self, source: usize) {
        for r in &mut self.rules {
            r.windows.drop_source(source);
            r.last_alert.retain(|_, v| v.2 != source);
            if let Some(f) = &mut r.forward {
                f.progress.remove(&source);
                f.sent.remove(&source);
            }
        }
    }

    /// Sends each input partition's watermark to the repartition topics when it moved,
    /// went idle, or a second passed (see [`crate::repartition`]). `partitions` holds
    /// (assigned, idle) per source index; `next` gives a source's next offset.
    pub fn send_markers(&mut self, partitions: &[Reading], next: impl Fn(usize) -> Option<i64>) {
        let Some(rp) = &self.repartitioning else {
            return;
        };
        let now = Instant::now();
        for r in self.rules.iter_mut().filter(|r| r.instance.is_some()) {
            let Some(f) = &mut r.forward else { continue };
            for (i, &reading) in partitions.iter().enumerate() {
                if !reading.assigned || self.sources.is_internal(i) {
                    continue;
                }
                let watermark = r.windows.watermark_of(i);
                if !Sent::due(f.sent.get(&i), watermark, reading, now) {
                    continue;
                }
                let Some(from) = self.sources.names.get(i) else {
                    continue;
                };
                let marker = Forwarded::Marker {
                    watermark,
                    from,
                    next: next(i).unwrap_or(0),
                    idle: reading.idle,
                    vouched: reading.vouched,
                };
                marker.encode(&mut f.buf);
                for q in 0..rp.partitions {
                    rp.output.send_to(&f.topic, Some(q), b"", &f.buf, None);
                }
                let at = now;
                f.sent.insert(
                    i,
                    Sent {
                        watermark,
                        idle: reading.idle,
                        at,
                    },
                );
            }
        }
    }

    /// Processes one batch of lines (`buf` holds their bytes) and emits its trigger.
    pub fn process(
        &mut self,
        buf: &[u8],
        lines: &[Line],
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        for r in &mut self.rules {
            r.events.reset(r.projection.kinds());
            r.event_lines.clear();
        }
        for (li, line) in lines.iter().enumerate() {
            let raw = &buf[line.range.clone()];
            if self.sources.is_internal(line.source as usize) {
                self.take_forwarded(line, raw);
                continue;
            }
            self.input.lines += 1;
            if line.too_large {
                let e = LineError {
                    reason: Reason::TooLarge,
                    at: None,
                    detail: "longer than the maximum record size",
                };
                self.reject_line(line, &e, raw);
                continue;
            }
            let rec = match self.decoder.decode(raw) {
                Ok(rec) => rec,
                Err(e) => {
                    self.reject_line(line, &e, raw);
                    continue;
                }
            };
            for r in &mut self.rules {
                if r.instance.is_none() {
                    continue;
                }
                match r.projection.project(&rec, &mut r.events) {
                    Ok(_) => {
                        r.event_lines.push(li as u32);
                        r.stats.events += 1;
                        if r.events.encoded_len() >= r.batch_bytes {
                            let output = self.repartitioning.as_ref().map(|r| &r.output);
                            let (sources, rejects) = (&self.sources, &mut self.rejects);
                            r.flush_events(buf, lines, sources, rejects, &mut self.times, output);
                        }
                    }
                    Err(fe) => {
                        r.stats.bad.add(fe.reason);
                        let field = &r.projection.field_names()[fe.field];
                        let pos = self.sources.position(line);
                        if log_allowed(&mut r.logged, fe.reason, Some(&r.meta.name)) {
                            warn!(
                                "{pos}: rule {}: field `{field}`: {} [{}]; {}",
                                r.meta.name,
                                fe.detail,
                                fe.reason.label(),
                                fe.reason.hint()
                            );
                        }
                        if let Some(dl) = &mut self.rejects.dead_letter {
                            let error = format!("field `{field}`: {}", fe.detail);
                            dl.dead_letter(pos, fe.reason.label(), &error, Some(&r.meta.name), raw);
                        }
                    }
                }
            }
        }
        self.times.decode += started.elapsed();
        let output = self.repartitioning.as_ref().map(|r| &r.output);
        for r in &mut self.rules {
            let (sources, rejects) = (&self.sources, &mut self.rejects);
            r.flush_events(buf, lines, sources, rejects, &mut self.times, output);
        }
        self.rejects.flush()?;
        self.trigger(false, sink)
    }

    /// Time spent per stage so far.
    pub fn stage_times(&self) -> &StageTimes {
        &self.times
    }

    /// Moves every rule's watermark past its open windows (the input has been quiet); the
    /// next trigger emits them.
    pub fn close_open_windows(&mut self) {
        for r in &mut self.rules {
            r.windows.advance_past_open();
        }
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

    /// Flushes the reject sinks (before a checkpoint).
    pub fn flush_rejects(&mut self) -> anyhow::Result<()> {
        self.rejects.flush()
    }

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

    /// Takes the shadows' rows out of this trigger and reports where they differ from the
    /// rows of the rules they shadow.
    fn compare_shadows(&mut self) {
        let (shadow, rows): (Vec<AlertRow>, Vec<AlertRow>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|r| r.rule.name.ends_with(SHADOW_SUFFIX));
        self.rows = rows;
        for r in self.rules.iter_mut() {
            let Some(primary) = r.meta.name.strip_suffix(SHADOW_SUFFIX) else {
                continue;
            };
            let view = |rows: &[AlertRow], name: &str| {
                let mut v: Vec<(i64, String, u64)> = rows
                    .iter()
                    .filter(|row| row.rule.name == name)
                    .map(|row| (row.start, row.key.clone(), row.count))
                    .collect();
                v.sort();
                v
            };
            let theirs = view(&self.rows, primary);
            let ours = view(&shadow, &r.meta.name);
            let mut logged = 0;
            for (only, other, verb, primary_verb) in [
                (&ours, &theirs, "alerts", "does not"),
                (&theirs, &ours, "does not alert", "does"),
            ] {
                // Both are sorted: a binary search keeps large triggers linear-logarithmic.
                for (start, key, count) in only.iter().filter(|x| other.binary_search(x).is_err()) {
                    r.stats.shadow_diffs += 1;
                    logged += 1;
                    if logged <= LOGGED_SHADOW_DIFFS {
                        warn!(
                            "rule {}: {verb} {} {} with count {count}, {primary} {primary_verb}",
                            r.meta.name,
                            crate::decode::time::format_rfc3339(*start),
                            crate::text::shown(key),
                        );
                    }
                }
            }
            if logged > LOGGED_SHADOW_DIFFS {
                warn!(
                    "rule {}: {} more differences in this trigger (counted, not logged)",
                    r.meta.name,
                    logged - LOGGED_SHADOW_DIFFS
                );
            }
        }
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

    /// Counts an event forwarded through a repartition topic, or applies a marker.
    fn take_forwarded(&mut self, line: &Line, raw: &[u8]) {
        let source = line.source as usize;
        let name = &self.sources.names[source];
        let topic = name.rsplit_once('/').map_or(name.as_str(), |(t, _)| t);
        let Some(r) = self
            .rules
            .iter_mut()
            .find(|r| r.instance.is_some() && r.forward.as_ref().is_some_and(|f| f.topic == topic))
        else {
            return; // the rule is gone or stopped
        };
        let inputs = &self.repartitioning.as_ref().expect("set up").inputs;
        let f = r.forward.as_mut().expect("found by it");
        let progress = f.progress.entry(source).or_default();
        match Forwarded::parse(raw) {
            Some(Forwarded::Event {
                time,
                from,
                offset,
                key,
            }) => {
                if progress.accept_event(from, offset)
                    && r.windows.count_forwarded(source, time, key) == Verdict::Late
                {
                    // Possible only after an input partition was idle and woke up.
                    r.stats.late += 1;
                }
            }
            Some(Forwarded::Marker {
                watermark,
                from,
                next,
                idle,
                vouched,
            }) => {
                let marker = Marker {
                    watermark,
                    next,
                    idle,
                    vouched,
                };
                progress.apply_marker(from, marker, inputs);
                if let Some(wm) = progress.watermark(inputs) {
                    r.windows.advance_source(source, wm);
                }
            }
            None => {
                if log_allowed(&mut self.logged, Reason::NotJson, None) {
                    warn!(
                        "{}: not a record of a repartition topic; skipped",
                        self.sources.position(line)
                    );
                }
            }
        }
    }

    /// Counts, logs (rate-limited) and dead-letters a line no rule can use.
    fn reject_line(&mut self, line: &Line, e: &LineError, raw: &[u8]) {
        self.input.bad.add(e.reason);
        let pos = self.sources.position(line);
        if log_allowed(&mut self.logged, e.reason, None) {
            warn!("{pos}: {e} [{}]; {}", e.reason.label(), e.reason.hint());
        }
        if let Some(dl) = &mut self.rejects.dead_letter {
            dl.dead_letter(pos, e.reason.label(), &e.to_string(), None, raw);
        }
    }
}

/// Whether one more problem of `reason` is logged (`rule`: of that rule's fields).
fn log_allowed(logged: &mut [u64; Reason::ALL.len()], reason: Reason, rule: Option<&str>) -> bool {
    let n = &mut logged[reason.index()];
    *n += 1;
    if *n == LOGGED_PER_REASON + 1 {
        warn!(
            "more {} input{}: counted (see the summary) and, with a dead-letter output, \
             written there, but no longer logged",
            reason.label(),
            rule.map(|r| format!(" for rule {r}")).unwrap_or_default()
        );
    }
    *n <= LOGGED_PER_REASON
}

impl RuleRunner {
    /// Starts a rule: instantiates its module with its params and registers its fields.
    fn new(
        rule: &LoadedRule,
        decoder: &mut Decoder,
        mode: Option<OutputMode>,
    ) -> Result<Self, RuleError> {
        let c = &rule.config;
        let instance =
            rule.module
                .instantiate(&c.params_json(), c.limits.memory, c.limits.time_per_batch)?;
        let projection = Projection::new(
            decoder,
            &c.time.field,
            c.time.format,
            &c.window.key,
            rule.module.fields(),
        )
        .with_max_key_bytes(usize::try_from(ceilings().max_key_bytes).unwrap_or(usize::MAX));
        let meta = RuleMeta {
            name: rule.name.clone(),
            sha256: rule.module.sha256().to_owned(),
            key_column: c.output.key_column.clone().unwrap_or(c.window.key.clone()),
            count_column: c.output.count_column.clone().unwrap_or("count".into()),
            mode: mode.unwrap_or(c.output.mode),
        };
        Ok(RuleRunner {
            meta: Arc::new(meta),
            projection,
            instance: Some(instance),
            windows: Windows::hopping(c.window.size, c.window.slide(), c.window.delay),
            window_id: format!(
                "size={:?} slide={:?} delay={:?} key={} time={}",
                c.window.size,
                c.window.slide(),
                c.window.delay,
                c.window.key,
                c.time.field
            ),
            cooldown: c.output.cooldown.map(|d| d.as_millis() as i64),
            on_delete: c.output.on_delete,
            last_alert: HashMap::new(),
            events: BatchWriter::default(),
            event_lines: Vec::new(),
            encoded: Vec::new(),
            candidates: BatchWriter::default(),
            candidate_sources: Vec::new(),
            alert_bits: Vec::new(),
            batch_bytes: usize::try_from(c.limits.memory / 8)
                .unwrap_or(usize::MAX)
                .clamp(64 << 10, MAX_RULE_BATCH_BYTES),
            logged: [0; Reason::ALL.len()],
            stats: RuleStats::default(),
            version: 1,
            last_error: None,
            params: c.params_value(),
            window: WindowStatus {
                key: c.window.key.clone(),
                size_ms: c.window.size.as_millis() as i64,
                slide_ms: c.window.slide().as_millis() as i64,
                delay_ms: c.window.delay.as_millis() as i64,
            },
            forward: None,
        })
    }

    /// Sets how its events reach its windows. Repartitioned state differs from state
    /// counted per input partition, so the mode is part of the settings checkpoints record.
    fn set_forward(&mut self, forward: Option<Forward>) {
        if forward.is_some() {
            self.window_id.push_str(crate::repartition::REPARTITIONED);
        }
        self.forward = forward;
    }

    /// Runs the staged events (see [`RuleRunner::run_batch`]) and empties the stage; a rule
    /// that misbehaves is quarantined.
    fn flush_events(
        &mut self,
        buf: &[u8],
        lines: &[Line],
        sources: &Sources,
        rejects: &mut Rejects,
        times: &mut StageTimes,
        output: Option<&Output>,
    ) {
        let result = self.run_batch(buf, lines, sources, rejects, times, output);
        self.events.reset(self.projection.kinds());
        self.event_lines.clear();
        if let Err(e) = result {
            self.quarantine(e);
        }
    }

    /// Filters the staged events and updates the windows.
    fn run_batch(
        &mut self,
        buf: &[u8],
        lines: &[Line],
        sources: &Sources,
        rejects: &mut Rejects,
        times: &mut StageTimes,
        output: Option<&Output>,
    ) -> Result<(), RuleError> {
        let Some(instance) = &mut self.instance else {
            return Ok(());
        };
        let rows = self.events.rows();
        if rows == 0 {
            return Ok(());
        }
        let started = Instant::now();
        self.events.finish(&mut self.encoded);
        let selected = instance.filter(&self.encoded, rows)?;
        let filtered = Instant::now();
        times.filter += filtered - started;
        let batch = Batch::parse(&self.encoded).expect("the host encodes valid batches");
        for row in 0..rows {
            let is_selected = abi::bit(selected, row);
            let time = batch.i64(0, row);
            let line = &lines[self.event_lines[row] as usize];
            let source = line.source as usize;
            let watermark = self.windows.watermark_of(source);
            let verdict = match (&mut self.forward, output) {
                (Some(f), Some(output)) => {
                    let on_time = self.windows.judge(source, time);
                    if !is_selected {
                        Verdict::Skipped
                    } else if !on_time {
                        Verdict::Late
                    } else {
                        let key = batch.str(1, row);
                        let record = Forwarded::Event {
                            time,
                            from: &sources.names[source],
                            offset: line.number as i64,
                            key,
                        };
                        record.encode(&mut f.buf);
                        output.send(&f.topic, key.as_bytes(), &f.buf, None);
                        Verdict::Counted
                    }
                }
                _ => self
                    .windows
                    .observe(source, time, batch.str(1, row), is_selected),
            };
            match verdict {
                Verdict::Counted => self.stats.matched += 1,
                Verdict::Skipped => {}
                Verdict::Late => {
                    self.stats.matched += 1;
                    self.stats.late += 1;
                    if let (Some(late), Some(wm)) = (&mut rejects.late, watermark) {
                        let raw = &buf[line.range.clone()];
                        late.late(sources.position(line), &self.meta.name, time, wm, raw);
                    }
                }
            }
        }
        times.window += filtered.elapsed();
        self.stats
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
    /// Collects this trigger's candidate rows per the output mode, asks the rule which are
    /// alerts, and frees closed windows.
    fn trigger(&mut self, end: bool, out: &mut Vec<AlertRow>) -> Result<(), RuleError> {
        if self.instance.is_none() {
            return Ok(());
        }
        self.candidates.reset(&CANDIDATE_KINDS);
        self.candidate_sources.clear();
        let (c, sources) = (&mut self.candidates, &mut self.candidate_sources);
        let mut push = |w: WindowRow<'_>| {
            sources.push((w.source, w.watermark));
            c.push_i64(0, w.start);
            c.push_i64(1, w.end);
            c.push_str(2, w.key.as_bytes());
            c.push_i64(3, w.count as i64);
            c.end_row();
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
            let (start, window_end, key) =
                (batch.i64(0, row), batch.i64(1, row), batch.str(2, row));
            let (source, watermark) = self.candidate_sources[row];
            if let Some(cooldown) = self.cooldown {
                match self.last_alert.get(key) {
                    Some(&(s, e, _)) if s != start && start >= s && start < e + cooldown => {
                        self.stats.suppressed += 1;
                        continue;
                    }
                    _ => {
                        self.last_alert
                            .insert(key.to_owned(), (start, window_end, source));
                    }
                }
            }
            self.stats.alerts += 1;
            out.push(AlertRow {
                rule: self.meta.clone(),
                start,
                end: window_end,
                key: key.to_owned(),
                count: batch.i64(3, row) as u64,
                watermark: if end { None } else { watermark },
            });
        }
        // A cooldown whose end the watermark has passed can suppress nothing more.
        if let Some(cooldown) = self.cooldown {
            let windows = &self.windows;
            self.last_alert.retain(|_, &mut (_, e, source)| {
                windows
                    .watermark_of(source)
                    .is_none_or(|wm| e + cooldown > wm)
            });
        }
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
        part.reset(&CANDIDATE_KINDS);
        for row in 0..rows {
            part.push_i64(0, all.i64(0, row));
            part.push_i64(1, all.i64(1, row));
            part.push_str(2, all.str(2, row).as_bytes());
            part.push_i64(3, all.i64(3, row));
            part.end_row();
            if part.encoded_len() >= self.batch_bytes || row + 1 == rows {
                part.finish(&mut encoded);
                let bits = instance.alert(&encoded, part.rows())?;
                for i in (0..part.rows()).filter(|&i| abi::bit(bits, i)) {
                    abi::set_bit(&mut self.alert_bits, first + i);
                }
                first = row + 1;
                part.reset(&CANDIDATE_KINDS);
            }
        }
        Ok(())
    }

    /// Stops a rule that misbehaved; the other rules go on.
    fn quarantine(&mut self, e: RuleError) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::builtin;

    fn crash(key: &str) -> LoadedRule {
        let mut config = builtin::crash_config();
        config.window.key = key.to_owned();
        LoadedRule {
            name: "crash".into(),
            config,
            module: Arc::new(
                RuleModule::compile(builtin::CRASH_WASM, &Default::default()).unwrap(),
            ),
        }
    }

    fn repartitioning(keyed_by: Option<&str>, topics: &[(&str, &str)]) -> Repartitioning {
        // A producer is created without reaching a broker; nothing is sent here.
        Repartitioning {
            output: Output::connect("127.0.0.1:9", &BTreeMap::new()).unwrap(),
            keyed_by: keyed_by.map(str::to_owned),
            topics: topics
                .iter()
                .map(|(r, t)| (r.to_string(), t.to_string()))
                .collect(),
            inputs: vec!["logs/0".into()],
            partitions: 1,
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline::new(
            Sources::partitions(),
            &[crash("user_id")],
            None,
            Rejects::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_rule_that_needs_a_repartition_topic_not_set_up_is_refused_with_the_way_out() {
        let mut p = pipeline();
        p.set_repartitioning(repartitioning(Some("user_id"), &[]))
            .unwrap();
        // Regrouped by a field the input is not keyed by, while running: no internal topic.
        p.apply(
            Change::Upsert(Box::new(crash("app"))),
            &mut crate::sink::Fanout(vec![]),
        )
        .unwrap();
        let mut s = Status::new("kafka");
        p.status(&mut s);
        let error = s.rules[0].last_error.clone().unwrap_or_default();
        assert!(
            error.contains("needs a repartition topic") && error.contains("restart"),
            "{error}"
        );
        assert_eq!(s.rules[0].version, 1, "the running version stays");
        assert_eq!(s.rule_changes.rejected, 1);

        // At start, the same is an error of the set-up.
        let mut p = pipeline();
        let e = p.set_repartitioning(repartitioning(None, &[])).unwrap_err();
        assert!(e.to_string().contains("not keyed by a field"), "{e}");
    }

    #[test]
    fn internal_partitions_are_told_apart_from_input_partitions() {
        let mut p = pipeline();
        let topic = "g-crash-repartition";
        p.set_repartitioning(repartitioning(None, &[("crash", topic)]))
            .unwrap();
        p.name_source(0, "logs/0");
        p.name_source(1, &format!("{topic}/0"));
        assert!(!p.sources.is_internal(0));
        assert!(p.sources.is_internal(1));
        let mut s = Status::new("kafka");
        p.status(&mut s);
        assert_eq!(s.rules[0].repartition_topic.as_deref(), Some(topic));
        // State from the other mode is not restored into this one.
        assert!(
            p.rules[0]
                .window_id
                .ends_with(crate::repartition::REPARTITIONED)
        );
    }
}
