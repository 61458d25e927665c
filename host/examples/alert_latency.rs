//! Measures event-to-alert latency: reads the alerts topic and, for each alert, compares its
//! arrival with the time of the newest event the engine had seen when it decided the row
//! (the row's watermark plus the rule's delay). With `rulewatch loadgen --live`, event time
//! is the wall-clock time the event was produced, so the difference is the time from the
//! producer sending the event to this consumer receiving the alert. Rows without a watermark
//! (a peer's, see bench/peers/kstreams-latency.sh) are measured from their record timestamp.
//!
//! ISOLATION (default `read_uncommitted`): `read_committed` measures until the alert is
//! visible to a consumer that reads only committed transactions (`guarantee = "exactly_once"`).
//!
//! WARMUP (environment, seconds, default 0): alerts that arrive within that long of the first
//! one are not counted — the first second or two of a run on a fresh broker (its JIT, a
//! topic's first writes and transactions) would otherwise make the tail of a short run.
//!
//! Usage: alert_latency BROKERS TOPIC DELAY_MS SECONDS [ISOLATION]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (isolation, args) = match &args[..] {
        [rest @ .., isolation] if args.len() == 6 => (isolation.as_str(), rest),
        all => ("read_uncommitted", all),
    };
    let [_, brokers, topic, delay, seconds] = args else {
        eprintln!("usage: alert_latency BROKERS TOPIC DELAY_MS SECONDS [ISOLATION]");
        std::process::exit(2);
    };
    let delay: i64 = delay.parse().expect("DELAY_MS is a number");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("alert-latency-{}", std::process::id()))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "5")
        .set("isolation.level", isolation)
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let warmup = Duration::from_secs(
        std::env::var("WARMUP").map_or(0, |w| w.parse().expect("WARMUP is a number of seconds")),
    );
    let started = Instant::now();
    let mut first = None;
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
        // rulewatch's rows: the watermark plus the delay. Rows without one (Kafka Streams'
        // window counts): the record's timestamp, which Kafka Streams sets to the newest
        // event time of the window when it updates the count.
        let newest = match v["watermark"].as_str() {
            Some(wm) => {
                let wm = chrono::DateTime::parse_from_rfc3339(wm).unwrap();
                wm.timestamp_millis() + delay
            }
            None => match m.timestamp().to_millis() {
                Some(t) => t,
                None => continue,
            },
        };
        if first.get_or_insert_with(Instant::now).elapsed() >= warmup {
            latencies.push(now - newest);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    if latencies.is_empty() {
        println!("no alerts arrived");
    } else {
        println!(
            "alerts {}  latency ms: p50 {}  p99 {}  p99.9 {}  max {}",
            latencies.len(),
            pct(0.5),
            pct(0.99),
            pct(0.999),
            latencies[latencies.len() - 1]
        );
    }
}
