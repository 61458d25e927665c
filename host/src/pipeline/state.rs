//! The pipeline's state per source, as checkpoints see it: every rule's windows, cooldowns
//! and repartition progress for one partition are encoded together with the offset they
//! cover, restored when the partition is taken, and dropped when it goes to another
//! instance. State built with other window settings is never restored into a rule.

use super::Pipeline;
use crate::checkpoint::{self, PartitionState, PartitionStateRef, Record, RuleStateRef};
use crate::window::SnapshotRef;
use std::collections::BTreeMap;
use tracing::warn;

impl Pipeline {
    /// Every rule's state per partition in `offsets` (the partitions this instance reads,
    /// with the next offset of each), encoded straight from the live state between batches.
    pub(super) fn snapshot(&self, offsets: &BTreeMap<String, i64>) -> anyhow::Result<Vec<Record>> {
        let mut records = Vec::with_capacity(offsets.len());
        for (name, &offset) in offsets {
            let Some(source) = self.sources.index_of(name) else {
                continue;
            };
            let rules = self
                .rules
                .iter()
                .filter(|r| r.instance.is_some())
                .map(|r| {
                    let state = RuleStateRef {
                        window: &r.settings,
                        windows: SnapshotRef {
                            windows: &r.windows,
                            source,
                        },
                        cooldown: r.cooldown.of_source(source),
                        upstream: r.counting.forwarder().and_then(|f| f.upstream(source)),
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

    /// Restores partition `source`'s state from its checkpoint record. State of a rule
    /// whose window settings changed since is not restored (it starts empty there), and
    /// said so.
    pub(super) fn restore_partition(&mut self, source: usize, state: PartitionState) {
        let name = self.sources.name_of(source);
        for (rule, st) in state.rules {
            match self.rules.iter_mut().find(|r| r.meta.name == rule) {
                Some(r) if r.settings == st.window => {
                    r.windows.restore(source, st.windows);
                    if let Some(f) = r.counting.forwarder_mut() {
                        f.restore(source, st.upstream);
                    }
                    r.cooldown.restore(source, st.cooldown);
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
                    st.window, r.settings
                ),
                None => warn!(
                    "rule {rule} is in the checkpoint of {name} but no longer loaded; its state \
                     is dropped"
                ),
            }
        }
    }

    /// Drops partition `source`'s state in every rule (it went to another instance).
    pub(super) fn drop_partition(&mut self, source: usize) {
        for r in &mut self.rules {
            r.windows.drop_source(source);
            r.cooldown.drop_source(source);
            if let Some(f) = r.counting.forwarder_mut() {
                f.drop_source(source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::{batch, crash, event};
    use crate::sink::Fanout;
    use crate::source::Sources;

    fn pipeline() -> Pipeline {
        let rules = [crash("user_id")];
        let mut p = Pipeline::new(Sources::partitions(), &rules, None, Default::default()).unwrap();
        p.name_source(0, "logs/0");
        p.name_source(1, "logs/1");
        p
    }

    #[test]
    fn a_partition_restored_from_its_checkpoint_holds_what_it_held_and_nothing_else() {
        let mut p = pipeline();
        let mut sink = Fanout(vec![]);
        for (source, user) in [(0, "u0"), (1, "u1")] {
            let events: Vec<String> = (0..3).map(|i| event(i, "High", user, "crash")).collect();
            let (buf, lines) = batch(source, &events);
            p.process(&buf, &lines, &mut sink).unwrap();
        }
        let offsets: BTreeMap<String, i64> = [("logs/0".into(), 3), ("logs/1".into(), 3)].into();
        let records = p.snapshot(&offsets).unwrap();
        assert_eq!(records.len(), 2);
        let state = |name: &str| -> PartitionState {
            let r = records.iter().find(|r| r.partition == name).unwrap();
            serde_json::from_slice(&r.body).unwrap()
        };
        assert_eq!(state("logs/1").offset, 3);

        // Another instance takes logs/1 only.
        let mut q = pipeline();
        q.restore_partition(1, state("logs/1"));
        assert_eq!(q.rules[0].windows.open_pairs(), 1);
        assert_eq!(
            q.rules[0].windows.watermark_of(1),
            p.rules[0].windows.watermark_of(1)
        );
        assert_eq!(q.rules[0].windows.watermark_of(0), None);
        let again = q.snapshot(&[("logs/1".into(), 3)].into()).unwrap();
        assert_eq!(
            again[0].body,
            records
                .iter()
                .find(|r| r.partition == "logs/1")
                .unwrap()
                .body
        );

        // State built with other window settings is not restored.
        let mut other = state("logs/0");
        other.rules.get_mut("crash").unwrap().window.size *= 2;
        q.restore_partition(0, other);
        assert_eq!(q.rules[0].windows.watermark_of(0), None);

        // A partition that leaves takes its state with it.
        q.drop_partition(1);
        assert_eq!(q.rules[0].windows.open_pairs(), 0);
    }
}
