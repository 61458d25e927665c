//! The floor under `rulewatch run`'s cost per event: a bare librdkafka consumer, with the
//! engine's fetch settings, that reads every partition of a topic from its start until it
//! has EVENTS messages and only touches each payload's length. Prints the process's CPU
//! time per message (user + system, from `getrusage`), so that `bench/run-cost.sh` can set
//! it beside `run`'s and `replay`'s.
//!
//! With `BATCH` set (environment), every partition's messages are forwarded to one queue
//! read with librdkafka's batch consume (`rd_kafka_consume_batch_queue`, up to 10 000 per
//! call) instead of rust-rdkafka's one-message poll: the floor of a batching reader.
//!
//! Usage: bare_consumer BROKERS TOPIC EVENTS

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, events] = &args[..] else {
        eprintln!("usage: bare_consumer BROKERS TOPIC EVENTS");
        std::process::exit(2);
    };
    let events: u64 = events.parse().expect("EVENTS is a number");
    // The engine's consumer settings that shape fetching (host/src/kafka.rs).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bare-consumer")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "1000000")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("a consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("the topic's metadata");
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let (mut read, mut bytes) = (0u64, 0usize);
    if std::env::var("BATCH").is_ok() {
        (read, bytes) = batched(&consumer, topic, &meta, events);
    }
    while read < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                bytes += m.payload().map_or(0, <[u8]>::len);
                read += 1;
            }
            Some(Err(e)) => eprintln!("bare_consumer: {e}"),
            None => {}
        }
    }
    let cpu = cpu_seconds();
    println!(
        "bare consumer: {read} messages ({} MB) in {:.2} s, CPU {:.0} ns/message",
        bytes >> 20,
        started.elapsed().as_secs_f64(),
        cpu * 1e9 / read as f64
    );
}

/// Reads through one queue that every partition's fetched messages are forwarded to, a
/// batch at a time (`rd_kafka_consume_batch_queue`); the consumer is still polled for its
/// events. Messages already on the consumer's queue when the forwards are set are not
/// counted (the run is long enough for that not to matter).
fn batched(
    consumer: &BaseConsumer,
    topic: &str,
    meta: &rdkafka::metadata::Metadata,
    events: u64,
) -> (u64, usize) {
    use rdkafka::bindings as rd;
    let rk = consumer.client().native_ptr();
    let (mut read, mut bytes) = (0u64, 0usize);
    // SAFETY: the client handle is live for the whole call; the queue handles are released
    // once each; `msgs` has room for the batch asked for, and each message handle returned
    // is read, then destroyed once.
    unsafe {
        let ours = rd::rd_kafka_queue_new(rk);
        let t = std::ffi::CString::new(topic).unwrap();
        for p in meta.topics().iter().flat_map(|t| t.partitions()) {
            let q = rd::rd_kafka_queue_get_partition(rk, t.as_ptr(), p.id());
            rd::rd_kafka_queue_forward(q, ours);
            rd::rd_kafka_queue_destroy(q);
        }
        let mut msgs: Vec<*mut rd::rd_kafka_message_t> = vec![std::ptr::null_mut(); 10_000];
        while read < events {
            let _ = consumer.poll(Duration::ZERO);
            let n = rd::rd_kafka_consume_batch_queue(ours, 100, msgs.as_mut_ptr(), msgs.len());
            for &m in &msgs[..n.max(0) as usize] {
                if (*m).err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    bytes += (*m).len;
                    read += 1;
                }
                rd::rd_kafka_message_destroy(m);
            }
        }
        rd::rd_kafka_queue_destroy(ours);
    }
    (read, bytes)
}

/// User and system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only fills in the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
