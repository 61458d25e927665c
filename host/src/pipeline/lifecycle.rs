//! The calls a driver makes, and the order inside each that makes a round correct. A driver
//! is a loop that feeds them: `run`'s round is [`Pipeline::on_batch`], the hand-over of
//! partitions ([`Pipeline::on_release`], [`Pipeline::on_assign`]), [`Pipeline::on_tick`],
//! and now and then [`Pipeline::checkpoint`]; every driver ends with
//! [`Pipeline::finish`] (replay feeds batches through [`Pipeline::submit`] instead, to keep
//! several in flight).
//!
//! Progress — what each source's reader says of it: idle, vouched, quiet, unowned — travels
//! with the batch and reaches every rule through [`Pipeline::progress`]: a locally counted
//! rule's windows hear it at once, a repartitioned rule's counterparts hear it in the
//! markers sent between batches. Markers go out only in `on_tick`, after the events they
//! cover were forwarded: a marker's offset must never run ahead of the events before it.
//!
//! A vouched idle source moves to where the active sources stood one vouching period
//! before ([`Stood`]), not to where they stand: records produced to several partitions in
//! event-time order do not land at once, and data landing in the idle partition up to a
//! second after the others' (whose later event times were read meanwhile) must be on time.

use super::Pipeline;
use crate::checkpoint::{PartitionState, Record};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::idle;
use crate::source::{Progress, SourceBatch};
use crate::window::Windows;
use std::collections::BTreeMap;
use std::time::Instant;

/// Where each of a rule's sources stood lately, sampled as rounds go (the clock passed in),
/// so that a vouched idle source moves to where the active ones stood [`VOUCH_EVERY`](crate::source::idle::VOUCH_EVERY) before.
#[derive(Default)]
pub(super) struct Stood {
    /// Per source.
    sources: Vec<idle::Stood>,
}

impl Stood {
    /// Notes where every source of `windows` stands at `now`.
    fn sample(&mut self, now: Instant, windows: &Windows) {
        for (source, watermark, _) in windows.watermarks() {
            if self.sources.len() <= source {
                self.sources.resize_with(source + 1, Default::default);
            }
            self.sources[source].note(now, watermark);
        }
    }

    /// Where the slowest of the sources active now stood `VOUCH_EVERY` before `now`; `None`
    /// while that is not known for one of them (or none is active).
    fn lagged(&self, now: Instant, windows: &Windows) -> Option<i64> {
        let mut slowest = None;
        for (source, _, idle) in windows.watermarks() {
            if idle {
                continue;
            }
            let stood = self.sources.get(source)?.before(now)?;
            slowest = Some(slowest.map_or(stood, |s: i64| s.min(stood)));
        }
        slowest
    }
}

impl Pipeline {
    /// A batch from the driver's source: what each source's reader said of it as of the
    /// batch (a partition whose new data landed with it is not idle while the batch's other
    /// partitions move on), then the rule changes that are ready, then the batch's lines,
    /// and its trigger.
    pub(crate) fn on_batch(
        &mut self,
        batch: &SourceBatch,
        changes: &Changes,
        now: Instant,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        self.progress(&batch.progress, now);
        self.apply_ready(changes, sink)?;
        if !batch.lines.is_empty() {
            self.process(&batch.buf, &batch.lines, sink)?;
            // Where the batch moved each source, as of when it came.
            for r in &mut self.rules {
                r.stood.sample(now, &r.windows);
            }
        }
        Ok(())
    }

    /// Between batches: what each source's reader says of it at `now`, to the rules and in
    /// markers to the repartition topics; then, if no line came (`came` is false), what
    /// the watermark alone decides (windows closed for an idle or quiet source).
    pub(crate) fn on_tick(
        &mut self,
        progress: &[Progress],
        now: Instant,
        came: bool,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        self.progress(progress, now);
        self.send_markers(progress);
        if !came {
            self.trigger(false, sink)?;
        }
        Ok(())
    }

    /// Tells every locally counted rule what each source's reader says of it at `now`:
    /// idle or not, vouched for just now (then its watermark moves to where the active
    /// sources stood a vouching period before), quiet (its open windows close at the next
    /// trigger). Repartition topics' partitions are left out: their progress comes in
    /// markers.
    fn progress(&mut self, progress: &[Progress], now: Instant) {
        let sources = &self.sources;
        let input = || progress.iter().filter(|p| !sources.is_internal(p.index));
        for r in &mut self.rules {
            r.stood.sample(now, &r.windows);
            // Every source's idleness first: who is active decides where the vouched follow.
            for p in input() {
                r.windows.set_idle(p.index, p.reading.idle);
            }
            let to = r.stood.lagged(now, &r.windows);
            for p in input() {
                if let (true, Some(to)) = (p.reading.vouched, to) {
                    r.windows.follow(p.index, to);
                }
                if p.reading.quiet {
                    r.windows.advance_past_open(p.index);
                }
            }
        }
    }

    /// Partitions `sources` go to another instance (checkpointed first by the driver):
    /// their state here is dropped.
    pub(crate) fn on_release(&mut self, sources: &[usize]) {
        for &source in sources {
            self.drop_partition(source);
        }
    }

    /// Partitions `named` (index, name) were given to this instance: each starts from the
    /// state `restored` holds for it (by name), or empty. How many open (window, key) pairs
    /// were restored.
    pub(crate) fn on_assign(
        &mut self,
        named: &[(usize, &str)],
        restored: BTreeMap<String, PartitionState>,
    ) -> usize {
        for &(index, name) in named {
            self.name_source(index, name);
            self.drop_partition(index);
        }
        let mut pairs = 0;
        for (name, state) in restored {
            let Some(&(index, _)) = named.iter().find(|(_, n)| *n == name) else {
                continue;
            };
            pairs += (state.rules.values())
                .map(|r| r.windows.pairs())
                .sum::<usize>();
            self.restore_partition(index, state);
        }
        pairs
    }

    /// A checkpoint of every rule's state per partition in `offsets` (each partition read
    /// here, with its next offset), taken between batches after the sink and the reject
    /// outputs are flushed, so that it covers nothing that is not written.
    pub(crate) fn checkpoint(
        &mut self,
        offsets: &BTreeMap<String, i64>,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Vec<Record>> {
        sink.flush()?;
        self.rejects.flush()?;
        self.snapshot(offsets)
    }

    /// Ends the input: every window closes and the last rows are emitted and delivered.
    pub(crate) fn finish(&mut self, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.trigger(true, sink)?;
        self.rejects.flush()?;
        sink.drain()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::{Recorded, batch, crash, event, repartitioning};
    use crate::sink::AlertRow;
    use crate::source::idle::VOUCH_EVERY;
    use crate::source::{Reading, Sources};
    use std::sync::Arc;

    /// Keeps the keys of the rows emitted, and counts flushes.
    #[derive(Default)]
    struct Keys {
        keys: Vec<String>,
        flushes: usize,
    }

    impl Sink for Keys {
        fn emit(&mut self, _: u64, rows: &[AlertRow]) -> std::io::Result<()> {
            self.keys.extend(rows.iter().map(|r| r.key.clone()));
            Ok(())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    const IDLE_VOUCHED: Reading = Reading {
        assigned: true,
        idle: true,
        vouched: true,
        quiet: false,
    };

    /// The crash rule counted per partition of `logs/0` and `logs/1`.
    fn local() -> Pipeline {
        let rules = [crash("user_id")];
        let mut p = Pipeline::new(Sources::partitions(), &rules, None, Default::default()).unwrap();
        p.name_source(0, "logs/0");
        p.name_source(1, "logs/1");
        p
    }

    /// A batch of `events` from source `source`, with `progress`.
    fn source_batch(source: u32, events: &[String], progress: Vec<Progress>) -> SourceBatch {
        let (buf, lines) = batch(source, events);
        SourceBatch {
            buf,
            lines,
            progress,
        }
    }

    /// logs/1 vouched idle (nothing new as the broker says), as of a batch.
    fn idle_1() -> Vec<Progress> {
        vec![Progress {
            index: 1,
            reading: IDLE_VOUCHED,
            next: Some(3),
        }]
    }

    #[test]
    fn a_batchs_progress_reaches_locally_counted_rules_before_its_lines() {
        // logs/1 holds three crashes of u1 in the first window, then nothing.
        let crashes: Vec<String> = (0..3).map(|i| event(i, "High", "u1", "crash")).collect();
        // logs/0 moves a minute on.
        let (later, latest) = (
            [event(60, "Low", "u0", "ok")],
            [event(61, "Low", "u0", "ok")],
        );
        let start = Instant::now();
        for (progress, alerts) in [(Vec::new(), 0), (idle_1(), 1)] {
            let mut p = local();
            let mut sink = Keys::default();
            let batch = |s, e: &[String]| source_batch(s, e, vec![]);
            (p.on_batch(&batch(1, &crashes), &None, start, &mut sink)).unwrap();
            (p.on_batch(&batch(0, &later), &None, start, &mut sink)).unwrap();
            // A second later, vouched idle with this batch, logs/1 follows where logs/0
            // stood then, in the batch's trigger.
            let batch = source_batch(0, &latest, progress);
            let now = start + VOUCH_EVERY;
            p.on_batch(&batch, &None, now, &mut sink).unwrap();
            assert_eq!(sink.keys.len(), alerts, "{:?}", sink.keys);
        }
    }

    #[test]
    fn data_landing_in_an_idle_partition_just_after_the_others_is_on_time() {
        // logs/1: two crashes of u1, then idle; logs/0 early on.
        let two: Vec<String> = (0..2).map(|i| event(i, "High", "u1", "crash")).collect();
        let (early, ahead) = (
            [event(5, "Low", "u0", "ok")],
            [event(60, "Low", "u0", "ok")],
        );
        let third = [event(3, "High", "u1", "crash")];
        let start = Instant::now();
        let mut p = local();
        let mut sink = Keys::default();
        let batch = |s, e: &[String]| source_batch(s, e, vec![]);
        (p.on_batch(&batch(1, &two), &None, start, &mut sink)).unwrap();
        (p.on_batch(&batch(0, &early), &None, start, &mut sink)).unwrap();
        // Two seconds on, logs/0's next records (a minute ahead) are read; in the same
        // round logs/1 is vouched idle: its third crash, produced before them, has not
        // landed yet.
        let at = start + 2 * VOUCH_EVERY;
        (p.on_batch(&batch(0, &ahead), &None, at, &mut sink)).unwrap();
        p.on_tick(&idle_1(), at, true, &mut sink).unwrap();
        // It lands a moment later: on time, counted in the window still open.
        let landed = at + VOUCH_EVERY / 2;
        (p.on_batch(&batch(1, &third), &None, landed, &mut sink)).unwrap();
        p.finish(&mut sink).unwrap();
        assert_eq!(sink.keys, ["u1"], "three crashes in one window");
    }

    #[test]
    fn markers_go_out_between_batches_after_the_events_they_cover() {
        let output = Arc::new(Recorded::default());
        let mut p = local();
        let topic = "g-crash-repartition";
        (p.set_repartitioning(repartitioning(None, &[("crash", topic)], &output))).unwrap();
        let crashes: Vec<String> = (0..3).map(|i| event(i, "High", "u1", "crash")).collect();
        let progress = vec![Progress {
            index: 0,
            reading: IDLE_VOUCHED,
            next: Some(3),
        }];
        let mut sink = Keys::default();
        let now = Instant::now();
        let batch = source_batch(0, &crashes, progress.clone());
        p.on_batch(&batch, &None, now, &mut sink).unwrap();
        let kinds = |o: &Recorded| -> String {
            let sent = o.0.lock().unwrap();
            sent.iter().map(|(_, _, r)| &r[..1]).collect()
        };
        assert_eq!(kinds(&output), "EEE", "no marker with the batch");
        p.on_tick(&progress, now, true, &mut sink).unwrap();
        // One marker per internal partition, after the events, with the next offset.
        assert_eq!(kinds(&output), "EEEMM");
        let sent = output.0.lock().unwrap();
        let marker = &sent.last().unwrap().2;
        assert!(marker.ends_with("\tlogs/0\t3\t1"), "{marker}");
    }

    #[test]
    fn a_hand_over_restores_the_partitions_named_and_drops_the_ones_released() {
        let mut p = local();
        let mut sink = Keys::default();
        for (source, user) in [(0, "u0"), (1, "u1")] {
            let events: Vec<String> = (0..3).map(|i| event(i, "High", user, "crash")).collect();
            let batch = source_batch(source, &events, vec![]);
            (p.on_batch(&batch, &None, Instant::now(), &mut sink)).unwrap();
        }
        let offsets: BTreeMap<String, i64> = [("logs/0".into(), 3), ("logs/1".into(), 3)].into();
        let flushes = sink.flushes;
        let records = p.checkpoint(&offsets, &mut sink).unwrap();
        assert_eq!(
            sink.flushes,
            flushes + 1,
            "the sink is flushed before the snapshot"
        );
        let restored: BTreeMap<String, PartitionState> = (records.iter())
            .map(|r| {
                (
                    r.partition.clone(),
                    serde_json::from_slice(&r.body).unwrap(),
                )
            })
            .collect();

        // Another instance is given logs/1 (as its source 0): only its state comes in.
        let mut q = Pipeline::new(
            Sources::partitions(),
            &[crash("user_id")],
            None,
            Default::default(),
        )
        .unwrap();
        assert_eq!(q.on_assign(&[(0, "logs/1")], restored), 1);
        assert_eq!(q.rules[0].windows.open_pairs(), 1);
        q.on_release(&[0]);
        assert_eq!(q.rules[0].windows.open_pairs(), 0);
        let snapshot = q
            .checkpoint(&[("logs/1".into(), 3)].into(), &mut sink)
            .unwrap();
        let state: PartitionState = serde_json::from_slice(&snapshot[0].body).unwrap();
        assert_eq!(
            state.rules["crash"].windows.pairs(),
            0,
            "nothing left of it here"
        );
    }
}
