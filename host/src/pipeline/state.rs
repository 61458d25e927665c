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
    pub fn checkpoint(&self, offsets: &BTreeMap<String, i64>) -> anyhow::Result<Vec<Record>> {
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
    pub fn restore_partition(&mut self, source: usize, state: PartitionState) {
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
    pub fn drop_partition(&mut self, source: usize) {
        for r in &mut self.rules {
            r.windows.drop_source(source);
            r.cooldown.drop_source(source);
            if let Some(f) = r.counting.forwarder_mut() {
                f.drop_source(source);
            }
        }
    }
}
