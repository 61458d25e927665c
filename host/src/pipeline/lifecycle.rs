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

use super::Pipeline;
use crate::checkpoint::{PartitionState, Record};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::{Progress, SourceBatch};
use std::collections::BTreeMap;

impl Pipeline {
    /// A batch from the driver's source: what each source's reader said of it as of the
    /// batch (a partition whose new data landed with it is not idle while the batch's other
    /// partitions move on), then the rule changes that are ready, then the batch's lines,
    /// and its trigger.
    pub(crate) fn on_batch(
        &mut self,
        batch: &SourceBatch,
        changes: &Changes,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        self.progress(&batch.progress);
        self.apply_ready(changes, sink)?;
        if !batch.lines.is_empty() {
            self.process(&batch.buf, &batch.lines, sink)?;
        }
        Ok(())
    }

    /// Between batches: what each source's reader says of it now, to the rules and in
    /// markers to the repartition topics; then, if no line came (`came` is false), what
    /// the watermark alone decides (windows closed for an idle or quiet source).
    pub(crate) fn on_tick(
        &mut self,
        progress: &[Progress],
        came: bool,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        self.progress(progress);
        self.send_markers(progress);
        if !came {
            self.trigger(false, sink)?;
        }
        Ok(())
    }

    /// Tells every locally counted rule what each source's reader says of it: idle or
    /// not, vouched for just now (then its watermark moves to the active sources'), quiet
    /// (its open windows close at the next trigger). Repartition topics' partitions are
    /// left out: their progress comes in markers.
    fn progress(&mut self, progress: &[Progress]) {
        for p in progress {
            if !self.sources.is_internal(p.index) {
                for r in &mut self.rules {
                    r.windows.set_idle(p.index, p.reading.idle);
                    if p.reading.vouched {
                        r.windows.follow(p.index);
                    }
                    if p.reading.quiet {
                        r.windows.advance_past_open(p.index);
                    }
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

    #[test]
    fn a_batchs_progress_reaches_locally_counted_rules_before_its_lines() {
        // logs/1 holds three crashes of u1 in the first window, then nothing.
        let crashes: Vec<String> = (0..3).map(|i| event(i, "High", "u1", "crash")).collect();
        // logs/0 moves a minute on.
        let (later, latest) = (
            [event(60, "Low", "u0", "ok")],
            [event(61, "Low", "u0", "ok")],
        );
        let idle = vec![Progress {
            index: 1,
            reading: IDLE_VOUCHED,
            next: Some(3),
        }];
        for (progress, alerts) in [(Vec::new(), 0), (idle, 1)] {
            let mut p = local();
            let mut sink = Keys::default();
            for events in [&crashes[..], &later] {
                let source = if events == later { 0 } else { 1 };
                (p.on_batch(&source_batch(source, events, vec![]), &None, &mut sink)).unwrap();
            }
            let batch = source_batch(0, &latest, progress);
            p.on_batch(&batch, &None, &mut sink).unwrap();
            // Vouched idle with this batch, logs/1 follows logs/0 in the batch's trigger.
            assert_eq!(sink.keys.len(), alerts, "{:?}", sink.keys);
        }
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
        p.on_batch(
            &source_batch(0, &crashes, progress.clone()),
            &None,
            &mut sink,
        )
        .unwrap();
        let kinds = |o: &Recorded| -> String {
            let sent = o.0.lock().unwrap();
            sent.iter().map(|(_, _, r)| &r[..1]).collect()
        };
        assert_eq!(kinds(&output), "EEE", "no marker with the batch");
        p.on_tick(&progress, true, &mut sink).unwrap();
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
            (p.on_batch(&source_batch(source, &events, vec![]), &None, &mut sink)).unwrap();
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
