//! The Kafka source: a consumer-group member that hands out batches of messages as lines,
//! tracks the next offset of every partition it reads, and resumes each partition exactly
//! where processing (or the restored checkpoint) left it.
//!
//! Rebalances are carried out between batches, not inside librdkafka's callback: the
//! callback only records what the group asked for and ends the batch; the run loop then
//! checkpoints revoked partitions before releasing them and restores assigned ones before
//! reading them (`group.rs`). librdkafka waits for the assign/unassign call that far.

mod client;
mod fetched;
mod group;
pub(crate) mod history;

pub(crate) use client::{
    Callbacks, Reader, cached_watermarks, changed, hint, log, partition_name, passes, position,
    read_from_start, reader, retrying,
};
pub(crate) use group::{Rebalance, offset_list};

use super::idle::{Quiet, Watch};
use super::lines::Line;
use super::{PartitionId, Progress, Reading, SourceBatch};
use crate::kafka::Client;
use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How long the loop waits for the broker's answer when it asks for a partition's end.
const ASK_TIMEOUT: Duration = Duration::from_millis(300);

/// A partition as the pipeline knows it.
struct Partition {
    name: String,
    /// Next offset to process.
    next: Option<i64>,
    /// Its activity and what the broker last said of its end.
    watch: Watch,
    /// A message of it came through the consumer's queue since it was assigned (or sought):
    /// it is being fetched, and forwarding it again makes its next ones go to the batch queue.
    fetching: bool,
    /// Its messages go to [`KafkaSource::fetched`].
    forwarded: bool,
}

/// The partitions seen, by index.
#[derive(Default)]
struct Partitions {
    list: Vec<Partition>,
    index: HashMap<(String, i32), u32>,
    /// The last partition looked up: topic, partition, index.
    last: Option<(Box<str>, i32, u32)>,
}

impl Partitions {
    /// The index of a partition, registering it if new.
    fn get(&mut self, topic: &str, p: i32) -> u32 {
        // Messages come in runs from one partition: most lookups are the last one's.
        if let Some(&(ref t, last_p, i)) = self.last.as_ref()
            && last_p == p
            && **t == *topic
        {
            return i;
        }
        let i = self.find(topic, p);
        self.last = Some((topic.into(), p, i));
        i
    }

    /// [`Partitions::get`] without the shortcut.
    fn find(&mut self, topic: &str, p: i32) -> u32 {
        if let Some(&i) = self.index.get(&(topic.to_owned(), p)) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(Partition {
            name: partition_name(topic, p),
            next: None,
            watch: Watch::new(Instant::now()),
            fetching: false,
            forwarded: false,
        });
        self.index.insert((topic.to_owned(), p), i);
        i
    }
}

/// Reads messages in batches.
pub(crate) struct KafkaSource {
    /// Where fetched messages go once forwarded; dropped before the consumer.
    fetched: fetched::Fetched,
    consumer: BaseConsumer<Callbacks>,
    batch: Batch,
    partitions: Partitions,
    /// The partitions assigned here.
    assigned: Vec<String>,
    max_message: usize,
    /// When partitions count as idle and quiet.
    quiet: Quiet,
    /// Whether only committed records are read (`exactly_once`).
    read_committed: bool,
}

/// What both readers of Kafka do with the records they poll: say once that fetching fails
/// (librdkafka retries by itself), and copy payloads into one buffer as lines.
#[derive(Default)]
struct Batch {
    /// The batch being read.
    buf: Vec<u8>,
    had_error: bool,
}

impl Batch {
    /// Starts reading a batch.
    fn start(&mut self) {
        self.buf.clear();
    }

    /// Ends the batch: its bytes go to `out`, shared with the workers that filter it (the
    /// last batch's buffer there, let go by then, is the next one to fill).
    fn seal(&mut self, out: &mut Arc<Vec<u8>>) {
        std::mem::swap(Arc::make_mut(out), &mut self.buf);
    }

    /// The message of a poll's result; `None` on an error (logged once until one comes).
    fn message<'a>(
        &mut self,
        result: rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'a>>,
    ) -> Option<rdkafka::message::BorrowedMessage<'a>> {
        match result {
            Ok(m) => {
                if std::mem::take(&mut self.had_error) {
                    info!("Kafka: receiving again");
                }
                Some(m)
            }
            // Readers outside the group report partition ends; the batch ends them by offset.
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => None,
            Err(e) => {
                self.failed(&e.to_string());
                None
            }
        }
    }

    /// Notes a fetch error `why` (logged once until messages come again).
    fn failed(&mut self, why: &str) {
        if !std::mem::replace(&mut self.had_error, true) {
            warn!("Kafka: {why} (retrying; {})", hint(why));
        }
    }

    /// Appends `payload` (unless larger than `max`) as a line of source `source` numbered
    /// `offset`.
    fn push(&mut self, out: &mut Vec<Line>, payload: &[u8], max: usize, source: u32, offset: i64) {
        let too_large = payload.len() > max;
        let start = self.buf.len();
        if !too_large {
            self.buf.extend_from_slice(payload);
        }
        out.push(Line {
            range: start..self.buf.len(),
            source,
            number: offset as u64,
            offset: 0,
            too_large,
        });
    }
}

impl KafkaSource {
    /// Joins consumer group `group` on `topics`. `options` go to librdkafka as they are
    /// (security settings, for example).
    pub(crate) fn connect(
        brokers: &str,
        group: &str,
        topics: &[String],
        options: &BTreeMap<String, String>,
        max_message: usize,
        read_committed: bool,
        quiet: Quiet,
    ) -> anyhow::Result<Self> {
        let member = Client::Member {
            group,
            read_committed,
        };
        let config = crate::kafka::config(brokers, member, &[], options);
        let context = Callbacks::new(options);
        let consumer: BaseConsumer<Callbacks> = config
            .create_with_context(context)
            .context("cannot create the Kafka consumer (check the [kafka] settings)")?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .with_context(|| format!("cannot subscribe to {}", topics.join(", ")))?;
        let fetched = fetched::Fetched::new(&consumer)
            .context("cannot create a queue for the Kafka consumer's messages")?;
        let source = KafkaSource {
            fetched,
            consumer,
            batch: Batch::default(),
            partitions: Partitions::default(),
            assigned: Vec::new(),
            max_message,
            quiet,
            read_committed,
        };
        Ok(source)
    }

    /// Waits up to `wait` for messages, then takes what is ready, up to `max` messages,
    /// into `batch`, with every partition's progress as of the fetch answers that brought
    /// them (the broker is not asked: see [`KafkaSource::progress`]). The consumer's queue
    /// first (rebalances, and messages of partitions not forwarded: older than any forwarded
    /// one), then the forwarded messages (`fetched.rs`).
    pub(crate) fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
        batch: &mut SourceBatch,
    ) -> anyhow::Result<()> {
        let out = batch.lines_mut();
        out.clear();
        self.batch.start();
        // One clock read per batch: a batch takes no longer than its polls.
        let mut now = None;
        while out.len() < max && !self.rebalance_pending() {
            let Some(result) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let Some(msg) = self.batch.message(result) else {
                continue;
            };
            let i = self.partitions.get(msg.topic(), msg.partition());
            let (offset, payload) = (msg.offset(), msg.payload().unwrap_or_default());
            let part = &mut self.partitions.list[i as usize];
            // Through the consumer's queue: fetched, and not forwarded (any more).
            (part.fetching, part.forwarded) = (true, false);
            if Self::is_new(part, offset, self.read_committed, &mut now) {
                self.batch.push(out, payload, self.max_message, i, offset);
            }
        }
        // A partition forwarded now sends its next messages there, while messages of it
        // already on the consumer's queue are older: those go first, next batch.
        if !self.forward_fetching() && out.len() < max && !self.rebalance_pending() {
            let wait = if out.is_empty() { wait } else { Duration::ZERO };
            let (fetched, partitions) = (&mut self.fetched, &mut self.partitions);
            let mut failed = None;
            fetched.take(max - out.len(), wait, |fetch| match fetch {
                Ok(f) => {
                    let i = partitions.get(f.topic, f.partition);
                    let part = &mut partitions.list[i as usize];
                    if Self::is_new(part, f.offset, self.read_committed, &mut now) {
                        self.batch
                            .push(out, f.payload, self.max_message, i, f.offset);
                    }
                }
                Err(why) => failed = Some(why),
            });
            if let Some(why) = failed {
                self.batch.failed(&why);
            }
        }
        if !out.is_empty() {
            self.consumer.context().recovered();
        }
        self.batch.seal(&mut batch.buf);
        self.progress(false, &mut batch.progress);
        Ok(())
    }

    /// Notes that the message at `offset` of `part` was read (at `now`, read once per
    /// batch); whether it is new, not below where the partition resumes.
    fn is_new(
        part: &mut Partition,
        offset: i64,
        read_committed: bool,
        now: &mut Option<Instant>,
    ) -> bool {
        part.watch.seen(*now.get_or_insert_with(Instant::now));
        if part.next.is_some_and(|next| offset < next) {
            return false; // already covered by the checkpoint
        }
        // Under read_committed, transaction markers and aborted records leave gaps.
        if let Some(next) = part.next.filter(|&next| offset > next && !read_committed) {
            info!(
                "Kafka: {}: offsets {next} to {} were not delivered (compacted away, \
                 transaction markers, or skipped by the broker)",
                part.name,
                offset - 1
            );
        }
        part.next = Some(offset + 1);
        true
    }

    /// Forwards the assigned partitions that are being fetched and are not forwarded yet;
    /// whether any was.
    fn forward_fetching(&mut self) -> bool {
        let mut any = false;
        for part in &mut self.partitions.list {
            if part.forwarded || !part.fetching || !self.assigned.contains(&part.name) {
                continue;
            }
            if let Some(PartitionId { topic, partition }) = PartitionId::parse(&part.name) {
                part.forwarded = self.fetched.forward(&self.consumer, topic, partition);
                any |= part.forwarded;
            }
        }
        any
    }

    /// The next offset to process, per assigned partition name.
    pub(crate) fn offsets(&self) -> BTreeMap<String, i64> {
        self.partitions
            .list
            .iter()
            .filter(|p| self.assigned.contains(&p.name))
            .filter_map(|p| Some((p.name.clone(), p.next?)))
            .collect()
    }

    /// Whether a rebalance waits: the batch then ends, so that it is carried out before
    /// any message that follows.
    #[inline]
    fn rebalance_pending(&self) -> bool {
        self.consumer.context().waiting.load(Ordering::Relaxed)
    }

    /// What this reader says of partition `index` at `now`, by the policy of
    /// [`Watch`]: assigned or not, idle, vouched, quiet. `ask`: whether this call may ask
    /// the broker for the partition's end (one partition per loop round, briefly, so that a
    /// slow broker never stalls the loop) — the broker's answer, not librdkafka's cached
    /// offsets, which may date from before a hand-over.
    fn reading(&mut self, index: usize, quiet: Quiet, ask: &mut bool, now: Instant) -> Reading {
        let Some(part) = self.partitions.list.get(index) else {
            return Reading::default();
        };
        let assigned = self.assigned.contains(&part.name);
        let mut answered = false;
        if *ask && part.watch.due(assigned, quiet, now) {
            *ask = false;
            if let Some(PartitionId { topic, partition }) = PartitionId::parse(&part.name) {
                let ends = (self.consumer).fetch_watermarks(topic, partition, ASK_TIMEOUT);
                let at_end = ends
                    .is_ok_and(|(low, high)| high <= self.read_to(index, topic, partition, low));
                self.partitions.list[index].watch.answered(at_end, now);
                answered = true;
            }
        }
        let lag = self.lag(index);
        let watch = &self.partitions.list[index].watch;
        watch.reading(assigned, lag, answered, quiet, now)
    }

    /// The client's current problem (an unreachable broker, a TLS failure, bad credentials,
    /// a missing topic) with what to check, until messages flow again; and how many were
    /// logged since start.
    pub(crate) fn problem(&self) -> (Option<String>, u64) {
        self.consumer.context().problem()
    }

    /// The index of partition `name` (registering it).
    pub(crate) fn index(&mut self, name: &str) -> usize {
        let PartitionId {
            topic,
            partition: p,
        } = PartitionId::of(name);
        self.partitions.get(topic, p) as usize
    }

    /// Messages of partition `index` not read yet, from the high watermark in the broker's
    /// last fetch answer (librdkafka's cached value: no request is made).
    pub(crate) fn lag(&self, index: usize) -> Option<i64> {
        let part = self.partitions.list.get(index)?;
        let PartitionId {
            topic,
            partition: p,
        } = PartitionId::parse(&part.name)?;
        let (low, high) = cached_watermarks(&self.consumer, topic, p)?;
        Some((high - self.read_to(index, topic, p, low.max(0))).max(0))
    }

    /// How far partition `index` (`topic`, `p`) was read: its next offset (else `low`), or
    /// the consumer's position where that is further, past transaction markers, which are
    /// never handed out.
    fn read_to(&self, index: usize, topic: &str, p: i32, low: i64) -> i64 {
        let read = self.partitions.list[index].next.unwrap_or(low);
        read.max(position(&self.consumer, topic, p).unwrap_or(read))
    }

    /// The partitions assigned here.
    pub(crate) fn assigned(&self) -> &[String] {
        &self.assigned
    }

    /// Every known partition's progress as of now into `out`, by index (`out[i]` is partition
    /// `i`): what its reader says of it ([`KafkaSource::reading`]) and its next offset;
    /// `ask`: whether the broker may be asked (once).
    pub(crate) fn progress(&mut self, mut ask: bool, out: &mut Vec<Progress>) {
        let now = Instant::now();
        out.clear();
        for index in 0..self.partitions.list.len() {
            let reading = self.reading(index, self.quiet, &mut ask, now);
            let next = self.partitions.list[index].next;
            out.push(Progress {
                index,
                reading,
                next,
            });
        }
    }

    /// How long partition `index` had nothing new (since its last message, or since it
    /// was assigned).
    pub(crate) fn quiet_for(&self, index: usize) -> Duration {
        let part = self.partitions.list.get(index);
        part.map_or(Duration::ZERO, |p| p.watch.quiet_for(Instant::now()))
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // The consumer's close (after this) revokes the assignment and waits for it to be
        // released, which the deferred handling would never do.
        let context = self.consumer.context();
        context.closing.store(true, Ordering::Relaxed);
        context.pending.lock().expect("not poisoned").clear();
        if !self.assigned.is_empty()
            && let Err(e) = self.consumer.unassign()
        {
            warn!("Kafka: cannot release the assignment: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_going_away_passes_and_a_refusal_does_not() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        // What a checkpoint restore saw while a cluster node was killed and started again.
        for passing in [
            C::DestroyBroker,
            C::BrokerDestroy,
            C::BrokerTransportFailure,
        ] {
            assert!(passes(&KafkaError::MetadataFetch(passing)), "{passing:?}");
        }
        for fatal in [
            C::SaslAuthenticationFailed,
            C::UnknownTopicOrPartition,
            C::TopicAuthorizationFailed,
        ] {
            assert!(!passes(&KafkaError::MetadataFetch(fatal)), "{fatal:?}");
        }
    }

    #[test]
    fn client_errors_come_with_what_to_check() {
        let ssl = "ssl://localhost:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
                   routines::certificate verify failed";
        assert!(hint(ssl).contains("ssl.ca.location"));
        assert!(hint("SASL authentication error: Authentication failed").contains("sasl.username"));
        let scram = "sasl_ssl://localhost:42905/bootstrap: SASL authentication error: \
                     Authentication failed during authentication due to invalid credentials \
                     with SASL mechanism SCRAM-SHA-512";
        assert!(hint(scram).contains("sasl.password"), "{}", hint(scram));
        assert!(hint("1/1 brokers are down").contains("reachable"));
    }
}
