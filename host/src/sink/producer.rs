//! The one Kafka producer of `run`: alerts, rejects, repartitioned events, watermark
//! markers and checkpoint records all go through it, and it knows which of them the broker
//! has acknowledged, so that nothing is checkpointed past a record that was lost.
//!
//! Under `exactly_once` it is transactional: a transaction is always open, and what was sent
//! in it becomes visible to `read_committed` consumers only when [`Output::commit`] commits
//! it together with the consumed offsets it covers. A producer the broker fenced (its
//! transaction timed out while the process was frozen) is replaced by a new one of the same
//! id, and the caller redoes the work since the last commit.

use crate::kafka::Client;
use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::TopicPartitionList;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tracing::{error, warn};

/// How long a transaction call may take before it is given up: longer than a broker
/// restart or a coordinator moving.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Tracks deliveries: the sequence numbers of messages not settled yet (delivered or
/// failed), to know when every message before a checkpoint is, and those that failed for
/// good, so that no checkpoint is written past them.
#[derive(Default)]
pub(crate) struct Deliveries {
    outstanding: Mutex<BTreeSet<usize>>,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The last client error logged (see `source::kafka::changed`).
    last_client_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::source::kafka::log(level, fac, message);
    }

    /// Logged once per change, with what to check (the consumer's own report says the
    /// same for the shared brokers); librdkafka retries.
    fn error(&self, error: KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        if crate::source::kafka::changed(&self.last_client_error, &message) {
            let hint = crate::source::kafka::hint(reason);
            warn!("Kafka producer: {message} (retrying; {hint})");
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        self.outstanding.lock().expect("not poisoned").remove(&seq);
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().expect("not poisoned") = Some(e.to_string());
        }
    }
}

/// The client the producer is.
type Kafka = ThreadedProducer<Deliveries>;

/// The shared producer.
#[derive(Clone)]
pub(crate) struct Output {
    /// The client; replaced only when a transactional one was fenced.
    producer: Arc<RwLock<Kafka>>,
    /// Its settings, to make it again.
    config: Arc<ClientConfig>,
    /// Its `transactional.id`, under `exactly_once`.
    transactional_id: Option<Arc<str>>,
    /// The sequence number of the next message.
    next: Arc<AtomicUsize>,
}

impl Output {
    /// An idempotent producer to `brokers`; `options` go to librdkafka as they are. With
    /// `transactional_id`, transactional: it fences earlier producers of that id, and a
    /// transaction is open from here on ([`Output::commit`] ends it and opens the next).
    pub(crate) fn connect(
        brokers: &str,
        options: &BTreeMap<String, String>,
        transactional_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let client = Client::Producer { transactional_id };
        let config = crate::kafka::config(brokers, client, &[], options);
        let producer = create(&config, transactional_id)?;
        Ok(Output {
            producer: Arc::new(RwLock::new(producer)),
            config: Arc::new(config),
            transactional_id: transactional_id.map(Arc::from),
            next: Arc::default(),
        })
    }

    /// Queues one message (waiting for room if the queue is full).
    pub(crate) fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        self.send_to(topic, None, key, value, headers);
    }

    /// Queues one message to `partition` (else the one its key hashes to).
    pub(crate) fn send_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) {
        let producer = self.producer.read().expect("not poisoned");
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let deliveries = producer.context();
        deliveries
            .outstanding
            .lock()
            .expect("not poisoned")
            .insert(seq);
        let mut record = BaseRecord::with_opaque_to(topic, seq).payload(value);
        if !key.is_empty() {
            record = record.key(key);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // The queue drains as the broker acknowledges; wait for room.
                    std::thread::sleep(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => {
                    deliveries
                        .outstanding
                        .lock()
                        .expect("not poisoned")
                        .remove(&seq);
                    deliveries.failed.fetch_add(1, Ordering::Relaxed);
                    *deliveries.last_error.lock().expect("not poisoned") = Some(e.to_string());
                    error!("Kafka: cannot send to {topic}: {e}");
                    return;
                }
            }
        }
    }

    /// Messages queued so far (see [`Output::settle`]).
    pub(crate) fn sent(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    /// Waits until the first `upto` messages queued are settled, while later ones may still
    /// be in flight; fails if any message was lost, so that the caller does not checkpoint
    /// past it.
    pub(crate) fn settle(&self, upto: usize, timeout: Duration) -> io::Result<()> {
        let started = std::time::Instant::now();
        let pending = || {
            let producer = self.producer.read().expect("not poisoned");
            let outstanding = producer.context().outstanding.lock();
            outstanding
                .expect("not poisoned")
                .first()
                .is_some_and(|&s| s < upto)
        };
        while pending() {
            if started.elapsed() > timeout {
                return Err(io::Error::other(format!(
                    "Kafka producer: messages not acknowledged within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.check_failures()
    }

    /// Waits until everything sent so far is acknowledged; fails if anything was lost, so
    /// that the caller does not checkpoint past it.
    pub(crate) fn flush(&self, timeout: Duration) -> io::Result<()> {
        let left = {
            let producer = self.producer.read().expect("not poisoned");
            drain(&producer, timeout);
            producer.in_flight_count()
        };
        if left > 0 {
            return Err(io::Error::other(format!(
                "Kafka producer: {left} message(s) not acknowledged within {timeout:?}"
            )));
        }
        self.check_failures()
    }

    fn check_failures(&self) -> io::Result<()> {
        let producer = self.producer.read().expect("not poisoned");
        let deliveries = producer.context();
        let failed = deliveries.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = deliveries.last_error.lock().expect("not poisoned").clone();
            return Err(io::Error::other(format!(
                "{failed} message(s) could not be delivered to Kafka (last error: {})",
                last.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Commits the open transaction — what was sent since it began, and `offsets` as
    /// consumed by the group member `member` — and begins the next. `Ok(Err(why))`: it
    /// could not commit and nothing of it will be visible to `read_committed` consumers nor
    /// are its offsets committed (the member was fenced out of its group by a rebalance it
    /// missed, a record was not delivered, the broker timed the transaction out): the
    /// caller redoes the work since the last commit. `Err`: no producer can go on.
    pub(crate) fn commit(
        &self,
        offsets: &TopicPartitionList,
        member: &ConsumerGroupMetadata,
    ) -> anyhow::Result<Result<(), String>> {
        // A record refused before it reached the broker leaves the transaction committable:
        // it is aborted instead.
        if let Err(refused) = self.check_failures() {
            self.abort()?;
            return Ok(Err(refused.to_string()));
        }
        let committed = {
            let p = self.producer.read().expect("not poisoned");
            retry(|| p.send_offsets_to_transaction(offsets, member, TRANSACTION_TIMEOUT)).and_then(
                |()| {
                    drain(&p, TRANSACTION_TIMEOUT);
                    retry(|| p.commit_transaction(TRANSACTION_TIMEOUT))
                },
            )
        };
        match committed {
            Ok(()) => {
                self.begin()?;
                Ok(Ok(()))
            }
            Err(e) => {
                self.abort()?;
                Ok(Err(e.to_string()))
            }
        }
    }

    /// Aborts the open transaction: nothing sent since it began becomes visible to
    /// `read_committed` consumers, nor are its offsets committed; then begins the next. A
    /// producer that cannot abort (fenced) is replaced by a new one.
    pub(crate) fn abort(&self) -> anyhow::Result<()> {
        let aborted = {
            let p = self.producer.read().expect("not poisoned");
            retry(|| p.abort_transaction(TRANSACTION_TIMEOUT))
        };
        match aborted {
            Ok(()) => {
                // The records the abort purged are reported as failed: wait for their
                // reports, then start the count again.
                let _purged = self.settle(self.sent(), TRANSACTION_TIMEOUT);
                self.begin()
            }
            Err(e) => self.replace(&e),
        }
    }

    /// Begins the next transaction.
    fn begin(&self) -> anyhow::Result<()> {
        (self.producer.read().expect("not poisoned"))
            .begin_transaction()
            .context("Kafka: cannot begin a transaction")
    }

    /// Replaces a producer that cannot go on (`why`) by a new one of the same id, which
    /// fences it and whose broker state starts clean.
    fn replace(&self, why: &KafkaError) -> anyhow::Result<()> {
        let id = self.transactional_id.as_deref();
        warn!(
            "Kafka: the transactional producer {} cannot go on ({why}); starting a new one \
             (its transaction is aborted)",
            id.unwrap_or_default()
        );
        let fresh = create(&self.config, id)?;
        let old = std::mem::replace(&mut *self.producer.write().expect("not poisoned"), fresh);
        // Its messages are purged, not waited for: none of them can be committed.
        old.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        Ok(())
    }
}

/// A producer of `config`; with `transactional_id`, with transactions initialised (which
/// fences earlier producers of that id and aborts their open transaction) and one begun.
fn create(config: &ClientConfig, transactional_id: Option<&str>) -> anyhow::Result<Kafka> {
    let producer: Kafka = config
        .create_with_context(Deliveries::default())
        .context("cannot create the Kafka producer (check the [kafka] settings)")?;
    if let Some(id) = transactional_id {
        retry(|| producer.init_transactions(TRANSACTION_TIMEOUT)).map_err(|e| {
            anyhow::anyhow!(
                "Kafka: cannot start transactions as {id}: {e}; guarantee = \"exactly_once\" \
                 needs brokers with transactions (Apache Kafka 2.5 or later, with the \
                 __transaction_state topic replicated as transaction.state.log.* says) and \
                 the right to write transactional id {id}; set guarantee = \"at_least_once\" \
                 otherwise"
            )
        })?;
        producer
            .begin_transaction()
            .context("Kafka: cannot begin a transaction")?;
    }
    Ok(producer)
}

/// Waits, up to `timeout`, until `producer` has no message queued, in flight or with its
/// report unserved (its own thread serves the reports). rust-rdkafka's `commit_transaction`
/// flushes first, and its flush sleeps up to 100 ms at a time in a poll that finds nothing
/// (the producer's thread took the reports): drained first, a commit takes milliseconds,
/// not 100 more.
fn drain(producer: &Kafka, timeout: Duration) {
    let started = std::time::Instant::now();
    while producer.in_flight_count() > 0 && started.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Calls `f` again while it fails with an error librdkafka says is worth retrying, for
/// [`TRANSACTION_TIMEOUT`] at most.
fn retry(mut f: impl FnMut() -> KafkaResult<()>) -> KafkaResult<()> {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Err(KafkaError::Transaction(e))
                if e.is_retriable() && !e.is_fatal() && started.elapsed() < TRANSACTION_TIMEOUT =>
            {
                warn!("Kafka: {e}; retrying");
            }
            other => return other,
        }
    }
}
