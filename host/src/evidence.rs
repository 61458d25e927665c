//! `rulewatch evidence`: from an alert to the log lines that made it. An alert of a rule with
//! `[output] evidence = N` carries the positions of N of its events; this reads them back —
//! from the file the alerts came from, or from Kafka — and prints them, one per line, as
//! they are in the input.

use crate::source::kafka::{read_from_start, reader};
use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How far before a wanted offset to fetch from when a broker answers a fetch from the
/// middle of a record batch with the next batch.
const LOOKBACK: i64 = 20_000;
/// How long to look for one partition's records.
const WAIT: Duration = Duration::from_secs(30);

/// Flags of `rulewatch evidence`.
#[derive(clap::Args)]
pub struct EvidenceArgs {
    /// Alerts as JSON lines (`--format jsonl` output or alerts-topic messages); `-` for
    /// stdin.
    #[arg(default_value = "-")]
    alerts: PathBuf,
    /// The file the alerts came from (for evidence given as line and byte).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Kafka bootstrap servers (for evidence given as topic, partition and offset).
    #[arg(long, env = "RULEWATCH_BROKERS")]
    brokers: Option<String>,
    /// A librdkafka setting, KEY=VALUE (TLS, SASL); repeatable.
    #[arg(long = "kafka-option")]
    kafka_options: Vec<String>,
    /// Take the alert with this `alert_id` from the alerts topic (--alerts-topic) instead
    /// of reading alerts.
    #[arg(long, requires_all = ["alerts_topic", "brokers"])]
    alert_id: Option<String>,
    /// The alerts topic to find --alert-id in.
    #[arg(long, requires = "alert_id")]
    alerts_topic: Option<String>,
}

/// The parts of an alert this command reads.
#[derive(Deserialize)]
struct Alert {
    rule: String,
    key: String,
    count: u64,
    window_start: String,
    window_end: String,
    alert_id: String,
    #[serde(default)]
    evidence: Vec<Position>,
}

/// One evidence position, as alerts write it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Position {
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    File {
        line: u64,
        byte: u64,
    },
}

/// Runs `rulewatch evidence`.
pub fn run(args: EvidenceArgs) -> anyhow::Result<()> {
    let mut options = BTreeMap::new();
    for kv in &args.kafka_options {
        let (k, v) = crate::config::run::kafka_option(kv)?;
        options.insert(k, v);
    }
    let alerts = match (&args.alert_id, &args.alerts_topic, &args.brokers) {
        (Some(id), Some(topic), Some(brokers)) => vec![find_alert(brokers, &options, topic, id)?],
        _ => read_alerts(&args.alerts)?,
    };
    let mut out = std::io::stdout().lock();
    for (n, alert) in alerts.iter().enumerate() {
        eprintln!(
            "alert {} (rule {}): {} had {} in {} .. {}; {} of its events:",
            alert.alert_id,
            alert.rule,
            alert.key,
            alert.count,
            alert.window_start,
            alert.window_end,
            alert.evidence.len()
        );
        if alert.evidence.is_empty() {
            eprintln!("  (none: set [output] evidence = N in the rule's TOML to have some)");
        }
        for line in lines_of(alert, &args, &options).with_context(|| format!("alert {}", n + 1))? {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Reads alert JSON lines from `path` (`-`: stdin).
fn read_alerts(path: &PathBuf) -> anyhow::Result<Vec<Alert>> {
    let mut text = String::new();
    crate::source::open(path)?
        .read_to_string(&mut text)
        .context("reading the alerts")?;
    (text.lines().enumerate())
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "line {}: not an alert as rulewatch writes them (jsonl)",
                    i + 1
                )
            })
        })
        .collect()
}

/// The alert with `id` in the alerts topic: its latest message keyed by it.
fn find_alert(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topic: &str,
    id: &str,
) -> anyhow::Result<Alert> {
    let consumer = reader(brokers, options, &[])?;
    let mut found = None;
    read_from_start(&consumer, topic, None, Duration::from_secs(120), |m| {
        if m.key() == Some(id.as_bytes()) {
            found = m.payload().map(<[u8]>::to_vec);
        }
    })?;
    let Some(json) = found else {
        bail!("no alert with alert_id {id} in topic {topic}");
    };
    serde_json::from_slice(&json)
        .context("the alert message is not an alert as rulewatch writes them")
}

/// The evidence lines of `alert`, in its order.
fn lines_of(
    alert: &Alert,
    args: &EvidenceArgs,
    options: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut file = None;
    let mut wanted: BTreeMap<(&str, i32), Vec<i64>> = BTreeMap::new();
    for p in &alert.evidence {
        if let Position::Kafka {
            topic,
            partition,
            offset,
        } = p
        {
            wanted.entry((topic, *partition)).or_default().push(*offset);
        }
    }
    let mut records = BTreeMap::new();
    if !wanted.is_empty() {
        let Some(brokers) = &args.brokers else {
            bail!("its evidence is in Kafka: give --brokers");
        };
        let consumer = reader(brokers, options, &[])?;
        for ((topic, partition), offsets) in wanted {
            records.extend(fetch(&consumer, topic, partition, &offsets)?);
        }
    }
    let mut lines = Vec::new();
    for p in &alert.evidence {
        lines.push(match p {
            Position::Kafka {
                topic,
                partition,
                offset,
            } => records
                .remove(&(topic.clone(), *partition, *offset))
                .unwrap_or_default(),
            Position::File { line, byte } => {
                let Some(input) = &args.input else {
                    bail!("its evidence is in a file: give the file with --input");
                };
                if file.is_none() {
                    let f = std::fs::File::open(input)
                        .with_context(|| format!("cannot open {}", input.display()))?;
                    file = Some(std::io::BufReader::new(f));
                }
                read_line(file.as_mut().expect("opened"), *byte)
                    .with_context(|| format!("{}: line {line} (byte {byte})", input.display()))?
            }
        });
    }
    Ok(lines)
}

/// The line starting at byte `byte`.
fn read_line(file: &mut std::io::BufReader<std::fs::File>, byte: u64) -> anyhow::Result<Vec<u8>> {
    file.seek(std::io::SeekFrom::Start(byte))?;
    let mut line = Vec::new();
    file.read_until(b'\n', &mut line)?;
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(line)
}

/// The records at `offsets` of a partition: ((topic, partition, offset), value).
fn fetch(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offsets: &[i64],
) -> anyhow::Result<BTreeMap<(String, i32, i64), Vec<u8>>> {
    let (first, last) = (offsets.iter().min(), offsets.iter().max());
    let (Some(&first), Some(&last)) = (first, last) else {
        return Ok(BTreeMap::new());
    };
    let mut found = BTreeMap::new();
    let mut from = first;
    let started = Instant::now();
    'again: loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        while started.elapsed() < WAIT {
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.with_context(|| format!("reading {topic}/{partition}"))?;
            if msg.offset() > first && found.is_empty() && from == first && first > 0 {
                // Some brokers answer from the next record batch: start earlier.
                from = (first - LOOKBACK).max(0);
                continue 'again;
            }
            if offsets.contains(&msg.offset()) {
                let value = msg.payload().unwrap_or_default().to_vec();
                found.insert((topic.to_owned(), partition, msg.offset()), value);
            }
            if msg.offset() >= last {
                return Ok(found);
            }
        }
        bail!(
            "{topic}/{partition}: offsets {first} to {last} not read within {}s (deleted by \
             retention, or the cluster is unreachable?)",
            WAIT.as_secs()
        );
    }
}
