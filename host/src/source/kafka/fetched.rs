//! A queue the group member's partitions' messages are forwarded to, read a batch at a time.
//!
//! rust-rdkafka's consumer hands out one message per poll, and each poll reads the clock
//! (twice, with librdkafka's poll tracking) and wraps the message in an event: 350-450 ns of
//! CPU per message here, 40 % of reading itself (`bench/run-cost.sh`). librdkafka's batch
//! consume takes up to
//! thousands of messages per call, but from a queue that holds messages only: the consumer's
//! own queue also carries the rebalances, which only rust-rdkafka's poll hands over. So the
//! partitions' messages are forwarded here — when they are assigned, after a seek, and again
//! whenever a message of one comes through the consumer's queue (librdkafka may route a
//! partition back there when it starts fetching it) — and the consumer's queue is still
//! polled first every batch, for the rebalances and for such messages, which are older than
//! any of theirs here: a batch that forwards a partition again takes nothing from here.

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::Duration;

/// How many messages one batch consume takes at most.
const BATCH: usize = 10_000;

/// One message taken from the queue.
pub(super) struct Fetch<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
}

/// The queue, and room for a batch of message handles.
pub(super) struct Fetched {
    queue: NonNull<rd::rd_kafka_queue_t>,
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: librdkafka's queues may be used from any thread; the message handles in
// `messages` are only ever held during `take`.
unsafe impl Send for Fetched {}

impl Fetched {
    /// A queue of `consumer`'s client. It must be dropped before the consumer (a field
    /// declared before it).
    pub(super) fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<Self> {
        // SAFETY: the client handle is live; the queue is destroyed in `drop`.
        let queue = unsafe { rd::rd_kafka_queue_new(consumer.client().native_ptr()) };
        Some(Fetched {
            queue: NonNull::new(queue)?,
            messages: vec![std::ptr::null_mut(); BATCH],
        })
    }

    /// Forwards partition `partition` of `topic`'s messages here; false if the client does
    /// not know that partition.
    pub(super) fn forward<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let Ok(topic) = std::ffi::CString::new(topic) else {
            return false;
        };
        // SAFETY: the client handle and this queue are live; the partition's queue handle
        // is released right after the forward is set.
        unsafe {
            let rk = consumer.client().native_ptr();
            let Some(q) = NonNull::new(rd::rd_kafka_queue_get_partition(
                rk,
                topic.as_ptr(),
                partition,
            )) else {
                return false;
            };
            rd::rd_kafka_queue_forward(q.as_ptr(), self.queue.as_ptr());
            rd::rd_kafka_queue_destroy(q.as_ptr());
        }
        true
    }

    /// Takes up to `max` messages, waiting up to `wait` for the first, and hands each to
    /// `f` in queue order (messages of one partition in offset order); an error the queue
    /// carries instead of a message goes to `f` as its text.
    pub(super) fn take(
        &mut self,
        max: usize,
        wait: Duration,
        mut f: impl FnMut(Result<Fetch<'_>, String>),
    ) {
        let max = max.min(self.messages.len());
        let wait = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // A batch consume with a timeout waits until the batch is full: what is ready is
        // taken without waiting, and only when nothing is, one message is waited for.
        let mut n = self.consume(0, 0, max);
        if n == 0 && wait > 0 && max > 0 {
            n = self.consume(wait, 0, 1);
            if n == 1 {
                n += self.consume(0, 1, max - 1);
            }
        }
        // SAFETY: the first `n` handles are the messages just taken, each valid until
        // destroyed, which happens right after `f` saw it (the borrows `f` got end there).
        unsafe {
            for &m in &self.messages[..n] {
                let msg = &*m;
                if msg.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    let topic = CStr::from_ptr(rd::rd_kafka_topic_name(msg.rkt));
                    let payload = match msg.payload.is_null() {
                        true => &[][..],
                        false => std::slice::from_raw_parts(msg.payload.cast::<u8>(), msg.len),
                    };
                    f(Ok(Fetch {
                        topic: topic.to_str().unwrap_or_default(),
                        partition: msg.partition,
                        offset: msg.offset,
                        payload,
                    }));
                } else {
                    let why = CStr::from_ptr(rd::rd_kafka_message_errstr(m));
                    f(Err(why.to_string_lossy().into_owned()));
                }
                rd::rd_kafka_message_destroy(m);
            }
        }
    }

    /// Takes up to `count` messages into `messages[at..]`, waiting up to `wait_ms` for the
    /// batch to fill; how many came.
    fn consume(&mut self, wait_ms: i32, at: usize, count: usize) -> usize {
        let room = &mut self.messages[at..at + count];
        // SAFETY: `room` holds `count` handles' worth of space; the queue is live.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), wait_ms, room.as_mut_ptr(), count)
        };
        usize::try_from(n).unwrap_or(0)
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        // SAFETY: the queue handle is live and released once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}
