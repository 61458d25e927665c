//! How a rule's events reach its windows — the pipeline's side of [`crate::repartition`].
//! A rule counts locally ([`Counting::Local`]) when the input is keyed by its group-by
//! field; otherwise it forwards its selected, on-time events to its internal topic
//! ([`Counting::Forwarded`]) and counts what it reads back from there. The [`Forwarder`]
//! owns the topic's name and what was sent and seen per partition; it sends through
//! [`ForwardOutput`], which Kafka's producer implements, so the core does not depend on
//! Kafka.

use super::Pipeline;
use crate::decode::Reason;
use crate::repartition::{ForwardOutput, Forwarded, Marker, Progress, Sent, Upstream};
use crate::source::lines::Line;
use crate::source::{PartitionId, Reading};
use crate::window::{Pos, Verdict, Windows};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// Repartitioning set up for a run on Kafka (see [`crate::repartition`]).
pub(crate) struct Repartitioning {
    /// Where the internal topics are written.
    pub output: Arc<dyn ForwardOutput>,
    /// The field the input is keyed by, if any: rules grouping by it count directly.
    pub keyed_by: Option<String>,
    /// The internal topic of each rule that repartitions, created at start.
    pub topics: BTreeMap<String, String>,
    /// Every input partition (`topic/partition`).
    pub inputs: Vec<String>,
    /// Partitions of each internal topic.
    pub partitions: i32,
}

impl Repartitioning {
    /// How rule `rule`, grouping by `key`, counts: locally if the input is keyed by `key`;
    /// an error if it needs an internal topic that was not set up at start.
    pub(crate) fn counting_for(&self, rule: &str, key: &str) -> Result<Counting, String> {
        // Decided at start (which may keep a rule repartitioned although the input looks
        // keyed now: see repartition::Plan::keep_repartitioned).
        if let Some(topic) = self.topics.get(rule) {
            return Ok(Counting::Forwarded(Forwarder::new(topic, &self.output)));
        }
        if self.keyed_by.as_deref() == Some(key) {
            return Ok(Counting::Local);
        }
        Err(format!(
            "rule {rule} groups by `{key}`, but the input is {}: it needs a repartition topic, \
             which is set up when rulewatch starts; restart rulewatch to run it",
            self.keyed_by
                .as_ref()
                .map_or("not keyed by a field".into(), |k| format!("keyed by `{k}`"))
        ))
    }

    /// Whether `topic` is one of the internal topics.
    pub(crate) fn is_internal(&self, topic: &str) -> bool {
        self.topics.values().any(|t| t == topic)
    }
}

/// How a rule's events reach its windows.
pub(crate) enum Counting {
    /// Counted in its own windows, per input partition.
    Local,
    /// Forwarded through its internal topic and counted where that is read.
    Forwarded(Forwarder),
}

impl Counting {
    /// The forwarder, when forwarding.
    pub(crate) fn forwarder(&self) -> Option<&Forwarder> {
        match self {
            Counting::Local => None,
            Counting::Forwarded(f) => Some(f),
        }
    }

    /// The forwarder, when forwarding.
    pub(crate) fn forwarder_mut(&mut self) -> Option<&mut Forwarder> {
        match self {
            Counting::Local => None,
            Counting::Forwarded(f) => Some(f),
        }
    }
}

/// A rule's internal topic and its state: what each internal partition read here saw of
/// the input partitions, and the last marker sent for each input partition read here.
pub(crate) struct Forwarder {
    topic: String,
    output: Arc<dyn ForwardOutput>,
    /// Per partition of the internal topic read here (source index).
    progress: HashMap<usize, Progress>,
    /// Per input partition read here (source index).
    sent: HashMap<usize, Sent>,
    /// Reused record buffer.
    buf: Vec<u8>,
}

impl Forwarder {
    fn new(topic: &str, output: &Arc<dyn ForwardOutput>) -> Self {
        Forwarder {
            topic: topic.to_owned(),
            output: Arc::clone(output),
            progress: HashMap::new(),
            sent: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// The internal topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Judges an event of input partition `source` (named `from`) by that partition's
    /// watermark, and forwards it when it is selected and on time.
    #[allow(clippy::too_many_arguments)] // one event's fields, on the hot path
    pub(crate) fn forward(
        &mut self,
        windows: &mut Windows,
        source: usize,
        from: &str,
        offset: i64,
        time: i64,
        key: &str,
        selected: bool,
    ) -> Verdict {
        let on_time = windows.judge(source, time);
        if !selected {
            return Verdict::Skipped;
        }
        if !on_time {
            return Verdict::Late;
        }
        Forwarded::Event {
            time,
            from,
            offset,
            key,
        }
        .encode(&mut self.buf);
        self.output
            .send_keyed(&self.topic, key.as_bytes(), &self.buf);
        Verdict::Counted
    }

    /// Takes a record read from internal partition `source`: counts an event (its verdict;
    /// `Skipped` for a replayed one) or applies a marker (`Skipped`); `None` if `raw` is not
    /// a record of a repartition topic.
    pub(crate) fn absorb(
        &mut self,
        windows: &mut Windows,
        source: usize,
        raw: &[u8],
        inputs: &[String],
    ) -> Option<Verdict> {
        let progress = self.progress.entry(source).or_default();
        match Forwarded::parse(raw)? {
            Forwarded::Event {
                time,
                from,
                offset,
                key,
            } => Some(if progress.accept_event(from, offset) {
                // Evidence orders inputs by their place in the run's list of them.
                let input = match windows.keeps_evidence() {
                    true => inputs.iter().position(|i| i == from).unwrap_or(usize::MAX),
                    false => 0,
                };
                let pos = Pos {
                    byte: input as u64,
                    number: offset as u64,
                };
                windows.count_forwarded(source, time, key, pos)
            } else {
                Verdict::Skipped
            }),
            Forwarded::Marker { from, marker } => {
                let past_open = windows.past_open(source);
                progress.apply_marker(from, marker, inputs, past_open, Instant::now());
                if let Some(wm) = progress.watermark(inputs) {
                    windows.advance_source(source, wm);
                }
                Some(Verdict::Skipped)
            }
        }
    }

    /// Sends input partition `source`'s (named `from`) watermark to every internal
    /// partition when it moved, its idleness changed, or a second passed.
    #[allow(clippy::too_many_arguments)] // one marker's fields
    pub(crate) fn send_marker(
        &mut self,
        source: usize,
        from: &str,
        watermark: Option<i64>,
        reading: Reading,
        next: i64,
        partitions: i32,
        now: Instant,
    ) {
        if !Sent::due(self.sent.get(&source), watermark, reading, now) {
            return;
        }
        let marker = Marker {
            watermark,
            next,
            idle: reading.idle,
            vouched: reading.vouched,
            quiet: reading.quiet,
        };
        Forwarded::Marker { from, marker }.encode(&mut self.buf);
        for q in 0..partitions {
            self.output.send_to_partition(&self.topic, q, &self.buf);
        }
        let sent = Sent {
            watermark,
            idle: reading.idle,
            at: now,
        };
        self.sent.insert(source, sent);
    }

    /// What internal partition `source` knows of the input partitions, to checkpoint.
    pub(crate) fn upstream(&self, source: usize) -> Option<&BTreeMap<String, Upstream>> {
        self.progress.get(&source).map(|p| &p.upstream)
    }

    /// Restores what internal partition `source` knew of the input partitions.
    pub(crate) fn restore(&mut self, source: usize, mut upstream: BTreeMap<String, Upstream>) {
        if upstream.is_empty() {
            return;
        }
        // Silence is counted from here: nothing could be heard before.
        let now = Some(Instant::now());
        upstream.values_mut().for_each(|u| u.heard = now);
        self.progress.insert(source, Progress { upstream });
    }

    /// Forgets partition `source` (it went to another instance).
    pub(crate) fn drop_source(&mut self, source: usize) {
        self.progress.remove(&source);
        self.sent.remove(&source);
    }

    /// The input partition whose silence holds this rule's windows back longest, and for
    /// how long.
    pub(crate) fn held_by(&self, inputs: &[String]) -> Option<(String, Duration)> {
        self.progress
            .values()
            .filter_map(|p| p.held_by(inputs))
            .max_by_key(|(_, d)| *d)
            .map(|(name, d)| (name.to_owned(), d))
    }
}

impl Pipeline {
    /// Counts an event forwarded through a repartition topic, or applies a marker.
    pub(super) fn absorb_forwarded(&mut self, line: &Line, raw: &[u8]) {
        let source = line.source as usize;
        let name = self.sources.name_of(source);
        let topic = PartitionId::parse(name).map_or(name, |p| p.topic);
        let Some(r) = self.rules.iter_mut().find(|r| {
            r.instance.is_some() && (r.counting.forwarder()).is_some_and(|f| f.topic == topic)
        }) else {
            return; // the rule is gone or stopped
        };
        let inputs = &self.repartitioning.as_ref().expect("set up").inputs;
        let f = r.counting.forwarder_mut().expect("found by it");
        match f.absorb(&mut r.windows, source, raw, inputs) {
            // Possible only after an input partition was idle and woke up.
            Some(Verdict::Late) => r.stats.late += 1,
            Some(_) => {}
            None => {
                if self.input.logged.allow(Reason::NotJson, None) {
                    warn!(
                        "{}: not a record of a repartition topic; skipped",
                        self.sources.position(line)
                    );
                }
            }
        }
    }

    /// Sends each input partition's watermark to the repartition topics when it moved,
    /// went idle, or a second passed (see [`crate::repartition`]), with what its reader
    /// says of it and its next offset (`progress`).
    pub(super) fn send_markers(&mut self, progress: &[crate::source::Progress]) {
        let Some(rp) = &self.repartitioning else {
            return;
        };
        let now = Instant::now();
        for r in self.rules.iter_mut().filter(|r| r.instance.is_some()) {
            let Some(f) = r.counting.forwarder_mut() else {
                continue;
            };
            for p in progress {
                let (i, reading) = (p.index, p.reading);
                if !reading.assigned || self.sources.is_internal(i) {
                    continue;
                }
                let from = self.sources.name_of(i);
                let watermark = r.windows.watermark_of(i);
                let next = p.next.unwrap_or(0);
                f.send_marker(i, from, watermark, reading, next, rp.partitions, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::{Recorded, batch, crash, event, repartitioning};
    use crate::sink::Fanout;
    use crate::source::Sources;
    use crate::status::Status;

    fn pipeline() -> Pipeline {
        let rules = [crash("user_id")];
        Pipeline::new(Sources::partitions(), &rules, None, Default::default()).unwrap()
    }

    #[test]
    fn a_rule_that_needs_a_repartition_topic_not_set_up_is_refused_with_the_way_out() {
        let output = Arc::new(Recorded::default());
        let mut p = pipeline();
        p.set_repartitioning(repartitioning(Some("user_id"), &[], &output))
            .unwrap();
        // Regrouped by a field the input is not keyed by, while running: no internal topic.
        let change = crate::registry::watch::Change::Upsert(Box::new(crash("app")));
        p.apply(change, &mut Fanout(vec![])).unwrap();
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
        let e = p
            .set_repartitioning(repartitioning(None, &[], &output))
            .unwrap_err();
        assert!(e.to_string().contains("not keyed by a field"), "{e}");
    }

    #[test]
    fn selected_events_are_forwarded_by_key_and_counted_where_the_internal_topic_is_read() {
        let output = Arc::new(Recorded::default());
        let mut p = pipeline();
        let topic = "g-crash-repartition";
        p.set_repartitioning(repartitioning(None, &[("crash", topic)], &output))
            .unwrap();
        p.name_source(0, "logs/0");
        p.name_source(1, &format!("{topic}/0"));
        assert!(!p.is_internal(0) && p.is_internal(1));
        let mut s = Status::new("kafka");
        p.status(&mut s);
        assert_eq!(s.rules[0].repartition_topic.as_deref(), Some(topic));
        // State from the other mode is not restored into this one.
        assert!(p.rules[0].settings.repartitioned);

        // Three crashes of one user and one other event, read from the input partition.
        let events = [
            event(0, "High", "u1", "app crash"),
            event(1, "Critical", "u1", "CRASH again"),
            event(2, "Low", "u1", "crash"),
            event(3, "High", "u1", "crash 3"),
        ];
        let (buf, lines) = batch(0, &events);
        let mut sink = Fanout(vec![]);
        p.process(&buf, &lines, &mut sink).unwrap();
        let sent = output.0.lock().unwrap().clone();
        let events: Vec<&(String, String, String)> =
            sent.iter().filter(|(_, _, r)| r.starts_with('E')).collect();
        assert_eq!(events.len(), 3, "only selected events travel: {sent:?}");
        assert!(
            events
                .iter()
                .all(|(t, key, r)| t == topic && key == "u1" && r.contains("\tlogs/0\t"))
        );
        assert_eq!(
            p.rules[0].windows.open_pairs(),
            0,
            "counted where they are read"
        );

        // Read back from the internal partition, they are counted there.
        let records: Vec<String> = events.iter().map(|(_, _, r)| r.clone()).collect();
        let (back, back_lines) = batch(1, &records);
        p.process(&back, &back_lines, &mut sink).unwrap();
        assert_eq!(p.rules[0].windows.open_pairs(), 1);
        // A replay of the same records (after a fail-over) is not counted twice.
        p.process(&back, &back_lines, &mut sink).unwrap();
        let mut s = Status::new("kafka");
        p.status(&mut s);
        assert_eq!(
            s.totals.events, 4,
            "records of the internal topic are not input"
        );
        assert_eq!(s.rules[0].matched, 3);
    }
}
