//! The floor under `rulewatch run`'s cost per event: a bare librdkafka consumer, with the
//! engine's fetch settings, that reads every partition of a topic from its start until it
//! has EVENTS messages and only touches each payload's length. Prints the process's CPU
//! time per message (user + system, from `getrusage`), so that `bench/run-cost.sh` can set
//! it beside `run`'s and `replay`'s.
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
