//! The consumer group's side of the Kafka source: hand-overs and commits.
//!
//! The assignment changes only in the rebalances the group announces, carried out between
//! batches ([`KafkaSource::take_rebalance`]): taken partitions are read from where their
//! restored state ends ([`KafkaSource::assign`]), released ones are dropped
//! ([`KafkaSource::revoke`]). Nothing else assigns or unassigns — after an aborted
//! transaction the work since the last commit is redone by seeking ([`KafkaSource::seek`]) —
//! so that a transaction never commits work of a partition the group gave to another in the
//! generation it commits with: the group fences stale generations (KIP-447), not partitions.

use super::client::partition_name;
use super::{KafkaSource, PartitionId};
use anyhow::Context as _;
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::info;

/// How many messages before its resume point a partition is read again (and skipped) when it
/// is assigned; more than a producer puts in one record batch.
const RESUME_LOOKBACK: i64 = 20_000;

/// How long a hand-over waits for the last owner's transaction to be decided: longer than
/// the transaction timeout (10 s) and the broker's check for timed-out ones (10 s).
const STABLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a seek back to the last commit may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// A change of assignment the group asked for, to carry out between batches.
#[derive(Debug)]
pub(crate) enum Rebalance {
    /// Partitions given to this instance (`topic/partition`).
    Assign(Vec<String>),
    /// Partitions taken away (with the eager protocol: all of them).
    Revoke(Vec<String>),
}

impl KafkaSource {
    /// The oldest rebalance asked for and not carried out yet.
    pub(crate) fn take_rebalance(&self) -> Option<Rebalance> {
        let context = self.consumer.context();
        let mut pending = context.pending.lock().expect("not poisoned");
        let next = pending.pop_front();
        context
            .waiting
            .store(!pending.is_empty(), Ordering::Relaxed);
        next
    }

    /// Takes partitions `names`, each from its offset in `offsets` (a restored checkpoint),
    /// else from the group's committed offset, else from the start.
    pub(crate) fn assign(
        &mut self,
        names: &[String],
        offsets: &BTreeMap<String, i64>,
    ) -> anyhow::Result<()> {
        let tpl = self.resume(names, offsets, Offset::Stored)?;
        for name in names {
            if !self.assigned.contains(name) {
                self.assigned.push(name.clone());
            }
        }
        let taken = if self.incremental() {
            self.consumer.incremental_assign(&tpl)
        } else {
            self.consumer.assign(&tpl)
        };
        taken.context("Kafka: cannot take the assignment")?;
        self.forward(names);
        if !names.is_empty() {
            info!("Kafka: assigned {}", names.join(", "));
        }
        Ok(())
    }

    /// Reads partitions `names`, assigned here, again from their offsets in `offsets` (a
    /// restored checkpoint), else from `committed` (the group's), else from the start: the
    /// work since the last commit is redone after a transaction was aborted. The assignment
    /// itself is left alone: it changes only in the rebalances the group announces, so that
    /// a commit never carries work of a partition the group gave to another in the
    /// generation the commit is made in (KIP-447 fences generations, not partitions).
    pub(crate) fn seek(
        &mut self,
        names: &[String],
        offsets: &BTreeMap<String, i64>,
        committed: &BTreeMap<String, i64>,
    ) -> anyhow::Result<()> {
        let mut resume = committed.clone();
        resume.extend(offsets.iter().map(|(n, &o)| (n.clone(), o)));
        let tpl = self.resume(names, &resume, Offset::Beginning)?;
        let sought = (self.consumer)
            .seek_partitions(tpl, SEEK_TIMEOUT)
            .context("Kafka: cannot read the partitions again from the last commit")?;
        for e in sought.elements() {
            if let Err(why) = e.error() {
                anyhow::bail!(
                    "Kafka: cannot read {} again from the last commit: {why}",
                    partition_name(e.topic(), e.partition())
                );
            }
        }
        self.forward(names);
        if !names.is_empty() {
            info!(
                "Kafka: reading {} again from the last commit",
                names.join(", ")
            );
        }
        Ok(())
    }

    /// Forwards partitions `names`' messages to the batch queue (`fetched.rs`): an
    /// assignment or a seek may leave them forwarded nowhere else.
    fn forward(&mut self, names: &[String]) {
        for name in names {
            let i = self.index(name);
            let PartitionId { topic, partition } = PartitionId::of(name);
            let forwarded = self.fetched.forward(&self.consumer, topic, partition);
            self.partitions.list[i].forwarded = forwarded;
        }
    }

    /// Sets where partitions `names` resume (each from its offset in `offsets`, else
    /// `otherwise`) and lists them with the offsets to fetch from.
    fn resume(
        &mut self,
        names: &[String],
        offsets: &BTreeMap<String, i64>,
        otherwise: Offset,
    ) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for name in names {
            let i = self.index(name);
            let PartitionId {
                topic,
                partition: p,
            } = PartitionId::of(name);
            let part = &mut self.partitions.list[i];
            part.next = offsets.get(name).copied();
            // Its callers forward it once the consumer took the change; a message of it on
            // the consumer's queue from then on says that was undone.
            part.fetching = false;
            part.watch.seen(Instant::now());
            let from = match part.next {
                // Start a little before the resume point and skip what is below it: some
                // brokers (tansu 0.6) answer a fetch from the middle of a record batch with
                // the next batch, which would silently skip the rest of it.
                Some(next) => Offset::Offset(next.saturating_sub(RESUME_LOOKBACK).max(0)),
                None => otherwise,
            };
            tpl.add_partition_offset(topic, p, from)?;
        }
        Ok(tpl)
    }

    /// Releases partitions `names` (after the caller checkpointed them).
    pub(crate) fn revoke(&mut self, names: &[String]) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for name in names {
            let PartitionId {
                topic,
                partition: p,
            } = PartitionId::of(name);
            tpl.add_partition(topic, p);
            let i = self.index(name);
            let part = &mut self.partitions.list[i];
            (part.next, part.fetching, part.forwarded) = (None, false, false);
        }
        self.assigned.retain(|a| !names.contains(a));
        let released = if self.incremental() {
            self.consumer.incremental_unassign(&tpl)
        } else {
            self.consumer.unassign()
        };
        released.context("Kafka: cannot release the assignment")?;
        if !names.is_empty() {
            info!("Kafka: released {}", names.join(", "));
        }
        Ok(())
    }

    fn incremental(&self) -> bool {
        matches!(
            self.consumer.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        )
    }

    /// Commits `offsets` to the group (what a checkpoint covers), for lag monitoring and
    /// for instances started without the checkpoint; with `wait`, synchronously.
    pub(crate) fn commit(&self, offsets: &BTreeMap<String, i64>, wait: bool) -> anyhow::Result<()> {
        let tpl = offset_list(offsets)?;
        if tpl.count() > 0 {
            let mode = if wait {
                rdkafka::consumer::CommitMode::Sync
            } else {
                rdkafka::consumer::CommitMode::Async
            };
            self.consumer
                .commit(&tpl, mode)
                .context("committing offsets")?;
        }
        Ok(())
    }

    /// This member's place in its group (generation, member id), which a transaction
    /// committing offsets for it carries, so that the group refuses them once a rebalance
    /// this member missed gave its partitions to another (KIP-447).
    pub(crate) fn member(&self) -> anyhow::Result<ConsumerGroupMetadata> {
        self.consumer
            .group_metadata()
            .context("Kafka: the consumer has no group metadata to commit offsets with")
    }

    /// Waits until the offsets committed for partitions `names` are decided: no
    /// transaction that commits offsets for them is open (a `read_committed` member's offset
    /// fetch is answered only then), so that their last owner's work is all committed, or
    /// all aborted, before their checkpoints are read. The offsets committed, by name.
    pub(crate) fn wait_stable(&self, names: &[String]) -> anyhow::Result<BTreeMap<String, i64>> {
        let mut tpl = TopicPartitionList::new();
        for name in names {
            let PartitionId { topic, partition } = PartitionId::of(name);
            tpl.add_partition(topic, partition);
        }
        let committed = (self.consumer)
            .committed_offsets(tpl, STABLE_TIMEOUT)
            .with_context(|| {
                format!(
                    "Kafka: the committed offsets of {} are not decided within {STABLE_TIMEOUT:?} \
                     (a transaction of their last owner is open)",
                    names.join(", ")
                )
            })?;
        Ok((committed.elements().iter())
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((partition_name(e.topic(), e.partition()), o)),
                _ => None,
            })
            .collect())
    }
}

/// `offsets` by partition name as a list for the client.
pub(crate) fn offset_list(offsets: &BTreeMap<String, i64>) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (name, &offset) in offsets {
        if let Some(PartitionId {
            topic,
            partition: p,
        }) = PartitionId::parse(name)
        {
            tpl.add_partition_offset(topic, p, Offset::Offset(offset))?;
        }
    }
    Ok(tpl)
}
