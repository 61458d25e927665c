//! The Kafka client parts every reader and writer shares: librdkafka's callbacks (rebalances
//! recorded for the run loop, client errors logged once per change with what to check),
//! partition names, and a consumer outside any group for reading partitions from their
//! start.

use super::Rebalance;
use crate::source::PartitionId;
use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::warn;

/// A partition: `topic/partition`, the name used in checkpoints, metrics and positions.
pub(crate) fn partition_name(topic: &str, partition: i32) -> String {
    PartitionId { topic, partition }.to_string()
}

/// How long a client problem stays current without being reported again: longer than
/// librdkafka's longest reconnect backoff (10 s).
const PROBLEM_FORGOTTEN: Duration = Duration::from_secs(15);

/// Callbacks from librdkafka: rebalances (recorded for the run loop) and client errors
/// (logged once per change of state).
pub(crate) struct Callbacks {
    /// Rebalances asked for and not carried out yet.
    pub(super) pending: Mutex<VecDeque<Rebalance>>,
    /// Whether `pending` has any.
    pub(super) waiting: AtomicBool,
    /// The consumer is closing: rebalances are carried out at once (librdkafka revokes
    /// the assignment while closing and waits for it to be released).
    pub(super) closing: AtomicBool,
    /// The last client error logged (its words, without numbers), to log each state change
    /// once.
    last_error: Mutex<Option<String>>,
    /// The current client problem with what to check, and when librdkafka last reported
    /// it; over once messages flow again, or once it has not been reported for a while
    /// (librdkafka reports a problem again at each failed reconnect).
    problem: Mutex<Option<(String, Instant)>>,
    /// Client problems logged (changes of state).
    problems: AtomicU64,
    /// The client's settings, to diagnose TLS failures with.
    options: BTreeMap<String, String>,
}

/// What to check for a client error, from librdkafka's reason.
pub(crate) fn hint(reason: &str) -> &'static str {
    let reason = reason.to_ascii_lowercase();
    if reason.contains("certificate verify failed") {
        "check ssl.ca.location (the CA that signed the brokers' certificates) and that the \
         broker names in bootstrap.servers and in the brokers' advertised listeners match \
         their certificates"
    } else if reason.contains("authentication") {
        // Before TLS: a SASL_SSL broker's address (`sasl_ssl://…`) says "ssl" too.
        "check sasl.mechanisms, sasl.username and sasl.password"
    } else if reason.contains("ssl") || reason.contains("tls") {
        "check security.protocol and that the brokers' port speaks TLS"
    } else if reason.contains("sasl") {
        "check sasl.mechanisms, sasl.username and sasl.password"
    } else if reason.contains("unknown topic") {
        "check kafka.topics, or create the topic"
    } else {
        "check that the brokers in bootstrap.servers are up and reachable from here"
    }
}

/// librdkafka's own log lines, through tracing (debug and below unless they are worse).
pub(crate) fn log(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!("librdkafka {fac}: {message}")
        }
        L::Warning => tracing::warn!("librdkafka {fac}: {message}"),
        L::Notice | L::Info => tracing::info!("librdkafka {fac}: {message}"),
        L::Debug => tracing::debug!("librdkafka {fac}: {message}"),
    }
}

impl Callbacks {
    /// Callbacks for a client with `options`.
    pub(super) fn new(options: &BTreeMap<String, String>) -> Self {
        Callbacks {
            pending: Mutex::default(),
            waiting: AtomicBool::default(),
            closing: AtomicBool::default(),
            last_error: Mutex::default(),
            problem: Mutex::default(),
            problems: AtomicU64::default(),
            options: options.clone(),
        }
    }

    /// The current problem, until it is forgotten, and how many were logged since start.
    pub(super) fn problem(&self) -> (Option<String>, u64) {
        let problem = self.problem.lock().expect("not poisoned");
        let current = problem
            .as_ref()
            .filter(|(_, at)| at.elapsed() < PROBLEM_FORGOTTEN)
            .map(|(p, _)| p.clone());
        (current, self.problems.load(Ordering::Relaxed))
    }

    /// Messages flow: whatever went wrong before is over.
    pub(super) fn recovered(&self) {
        let mut problem = self.problem.lock().expect("not poisoned");
        if problem.is_some() {
            *problem = None;
            *self.last_error.lock().expect("not poisoned") = None;
        }
    }
}

impl ClientContext for Callbacks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        {
            // "All brokers are down" follows the reason they are (TLS, credentials): keep
            // the reason as the current problem.
            let mut problem = self.problem.lock().expect("not poisoned");
            let consequence = reason.contains("brokers are down");
            match problem.as_mut() {
                Some((_, at)) if consequence && at.elapsed() < PROBLEM_FORGOTTEN => {
                    *at = Instant::now();
                }
                _ => *problem = Some((format!("{message} ({})", hint(reason)), Instant::now())),
            }
        }
        if changed(&self.last_error, &message) {
            warn!("Kafka: {message} (retrying; {})", hint(reason));
            self.problems.fetch_add(1, Ordering::Relaxed);
            if reason.contains("certificate verify failed")
                && let Some(broker) = crate::source::tls::broker_of(reason)
            {
                // Off the polling thread: a handshake may take seconds.
                let (broker, options) = (broker.to_owned(), self.options.clone());
                std::thread::spawn(move || {
                    if let Some(why) = crate::source::tls::diagnose(&broker, &options) {
                        warn!("Kafka TLS: {why}");
                    }
                });
            }
        }
    }
}

impl ConsumerContext for Callbacks {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if self.closing.load(Ordering::Relaxed) {
            let released = match consumer.rebalance_protocol() {
                rdkafka::consumer::RebalanceProtocol::Cooperative => {
                    consumer.incremental_unassign(tpl)
                }
                _ => consumer.unassign(),
            };
            if let Err(e) = released {
                warn!("Kafka: cannot release the assignment while closing: {e}");
            }
            return;
        }
        let names = tpl
            .elements()
            .iter()
            .map(|e| partition_name(e.topic(), e.partition()))
            .collect();
        let change = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(names),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(names),
            other => {
                warn!("Kafka: rebalance error {other:?}");
                return;
            }
        };
        self.pending.lock().expect("not poisoned").push_back(change);
        self.waiting.store(true, Ordering::Relaxed);
    }
}

/// A consumer outside any group (see [`reader`]).
pub(crate) type Reader = BaseConsumer<ReaderContext>;

/// The callbacks of a [`Reader`]: librdkafka's logs go to ours, and the end of a partition,
/// which a reader asks to be told of, is not an error.
pub(crate) struct ReaderContext;

impl ClientContext for ReaderContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::PartitionEOF;
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(PartitionEOF) => {
                tracing::debug!("Kafka: {reason}");
            }
            _ => warn!("Kafka: {error}: {reason} ({})", hint(reason)),
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A consumer outside any group, for reading partitions from their start (the keying check,
/// restoring checkpoints, backtests, evidence). It reports reaching a partition's end (as
/// `KafkaError::PartitionEOF`): some brokers (tansu 0.6) report the first offset of the last
/// record batch as the high watermark, so only the end of the records says where the end is.
/// `extra` settings come before the user's `options`.
pub(crate) fn reader(
    brokers: &str,
    options: &BTreeMap<String, String>,
    extra: &[(&str, String)],
) -> anyhow::Result<Reader> {
    crate::kafka::config(brokers, crate::kafka::Client::Reader, extra, options)
        .create_with_context(ReaderContext)
        .context("cannot create a Kafka consumer (check the [kafka] settings)")
}

/// Reads every partition of `topic` from its start, its first `limit` messages (all of them
/// if `None`), handing each message to `f`; the topic's partitions, by name. Reading from a
/// partition's start also avoids brokers that answer a fetch from the middle of a record
/// batch with the next batch.
pub(crate) fn read_from_start(
    consumer: &Reader,
    topic: &str,
    limit: Option<i64>,
    timeout: Duration,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let meta = retrying(started + timeout, || {
        consumer.fetch_metadata(Some(topic), Duration::from_secs(10))
    })
    .with_context(|| format!("cannot read the metadata of topic {topic}"))?;
    let mut names = Vec::new();
    let mut tpl = TopicPartitionList::new();
    // The offset of the last message to read, per partition: the `limit`-th, or the last
    // before the end of the records (the consumer says where that is: the high watermark a
    // broker reports may be short of it). A `read_committed` consumer's end is the last
    // stable offset, short of the high watermark while a transaction is open (and its
    // offset queries answer with it too): it reads on until it is past the high watermark
    // of the first fetch that reached that end, so that it has every transaction written
    // before it started, as it stands once decided.
    let mut ends = BTreeMap::new();
    let mut highs: BTreeMap<i32, Option<i64>> = BTreeMap::new();
    for p in meta.topics().iter().flat_map(|t| t.partitions()) {
        names.push(partition_name(topic, p.id()));
        let (low, high) = retrying(started + timeout, || {
            consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
        })
        .with_context(|| format!("cannot read the offsets of topic {topic}"))?;
        if high > low {
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            ends.insert(p.id(), limit.map_or(i64::MAX, |n| low + n - 1));
            highs.insert(p.id(), None);
        }
    }
    if ends.is_empty() {
        return Ok(names);
    }
    consumer.assign(&tpl)?;
    while !ends.is_empty() {
        if started.elapsed() > timeout {
            anyhow::bail!("topic {topic}: not read to its end within {timeout:?}");
        }
        let msg = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let high = highs.get_mut(&p).and_then(|h| {
                    *h = h.or_else(|| cached_watermarks(consumer, topic, p).map(|(_, high)| high));
                    *h
                });
                // Without a position (none fetched yet), the end of the records says it.
                let position = position(consumer, topic, p);
                if position.zip(high).is_none_or(|(at, high)| at >= high) {
                    ends.remove(&p);
                }
                continue;
            }
            // librdkafka reconnects, and finds the new leader, by itself.
            Some(Err(e)) if passes(&e) => continue,
            Some(msg) => msg.with_context(|| format!("reading topic {topic}"))?,
        };
        match ends.get(&msg.partition()) {
            None => continue, // read far enough
            Some(&end) if msg.offset() >= end => {
                ends.remove(&msg.partition());
            }
            Some(_) => {}
        }
        f(&msg);
    }
    Ok(names)
}

/// The low and high watermarks of partition `p` of `topic` in the last fetch answer
/// `consumer` had (no request is made): the high watermark whatever the isolation level.
pub(crate) fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    p: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client handle lives as long as the consumer; the call only reads
    // librdkafka's cached offsets of one partition into the two integers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            p,
            &mut low,
            &mut high,
        )
    };
    let ok = err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    (ok && high >= 0).then_some((low, high))
}

/// Where `consumer` reads partition `p` of `topic`: past the last message handed out and
/// any transaction markers after it.
pub(crate) fn position<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    p: i32,
) -> Option<i64> {
    // One partition, not the whole assignment (`Consumer::position`): this is asked per
    // partition every round.
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, p);
    // SAFETY: the client handle lives as long as the consumer, and the list as long as the
    // call, which only fills in the list's offsets.
    let err =
        unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), list.ptr()) };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    match list.find_partition(topic, p)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Whether `message` says something else than the last one `last` remembers, which it
/// then remembers: the same state may be told with other numbers ("after 2ms", a port), so
/// only the words are compared. Client errors are logged once per change.
pub(crate) fn changed(last: &Mutex<Option<String>>, message: &str) -> bool {
    let words: String = message.chars().filter(|c| !c.is_ascii_digit()).collect();
    let mut last = last.lock().expect("not poisoned");
    if last.as_deref() == Some(words.as_str()) {
        return false;
    }
    *last = Some(words);
    true
}

/// Whether a client error passes by itself: a broker down, restarting or going away (its
/// handle torn down while it leaves the cluster's metadata), a partition's leadership moving
/// to another broker, a timeout. librdkafka retries those; a reader waits for it up to its
/// deadline. Others (a wrong password, a missing topic or permission, a
/// fatal error) are reported at once.
pub(crate) fn passes(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::BrokerDestroy
                | C::DestroyBroker
                | C::Retry
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::ReplicaNotAvailable
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::KafkaStorageError
                | C::OffsetNotAvailable
                | C::BrokerNotAvailable
                | C::NotController
        )
    )
}

/// `call`, again while it fails with an error that [`passes`], until `deadline`.
pub(crate) fn retrying<T>(
    deadline: Instant,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match call() {
            Err(e) if passes(&e) && Instant::now() < deadline => {
                tracing::debug!("Kafka: {e} (retrying)");
                std::thread::sleep(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}
