//! `rulewatch evidence`: from an alert to the log lines that made it. An alert of a rule with
//! `[output] evidence = N` carries the positions of N of its events; this reads them back —
//! from the file the alerts came from, or from Kafka — and prints them, one per line, as
//! they are in the input.

use crate::source::kafka::history::{History, Span};
use crate::source::kafka::{Reader, passes, reader, retrying};
use crate::source::{Origin, SourceBatch};
use crate::text::{printable_line, shown};
use anyhow::{Context, bail};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How far before the first wanted offset of a partition to start reading.
const LOOKBACK: i64 = 20_000;
/// Most alerts read at once (each is held until its evidence is printed).
const MAX_ALERTS: usize = 100_000;
/// How long to look for one partition's records.
const WAIT: Duration = Duration::from_secs(30);

/// Flags of `rulewatch evidence`.
#[derive(clap::Args)]
pub(crate) struct EvidenceArgs {
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
    /// Longest evidence line read (as `replay --max-line-bytes`: a counted line is never
    /// longer); a longer one is reported, not printed.
    #[arg(long, default_value_t = 1 << 20, value_parser = crate::config::run::line_bytes)]
    max_line_bytes: usize,
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
    evidence: Vec<Origin>,
}

/// Runs `rulewatch evidence`.
pub(crate) fn run(args: EvidenceArgs) -> anyhow::Result<()> {
    let options = crate::config::run::kafka_options(&args.kafka_options)?;
    let alerts = match (&args.alert_id, &args.alerts_topic, &args.brokers) {
        (Some(id), Some(topic), Some(brokers)) => vec![find_alert(brokers, &options, topic, id)?],
        _ => read_alerts(&args.alerts, args.max_line_bytes)?,
    };
    let mut out = std::io::stdout().lock();
    for (n, alert) in alerts.iter().enumerate() {
        // Every part of an alert is outside text: shown escaped.
        eprintln!(
            "alert {} (rule {}): {} had {} in {} .. {}; {} of its events:",
            shown(&alert.alert_id),
            shown(&alert.rule),
            shown(&alert.key),
            alert.count,
            shown(&alert.window_start),
            shown(&alert.window_end),
            alert.evidence.len()
        );
        if alert.evidence.is_empty() {
            eprintln!("  (none: set [output] evidence = N in the rule's TOML to have some)");
        }
        for line in lines_of(alert, &args, &options).with_context(|| format!("alert {}", n + 1))? {
            out.write_all(&printable_line(&line))?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Reads alert JSON lines from `path` (`-`: stdin), each of at most `max` bytes.
fn read_alerts(path: &Path, max: usize) -> anyhow::Result<Vec<Alert>> {
    // The engine's line reader: a line over `max` is skipped unread and reported.
    let mut reader = crate::source::lines::LineReader::new(crate::source::open(path)?, max);
    let (mut alerts, mut lines) = (Vec::new(), Vec::new());
    while reader
        .next_batch(1024, &mut lines)
        .context("reading the alerts")?
    {
        for line in &lines {
            let n = line.number;
            if line.too_large {
                bail!("line {n}: longer than --max-line-bytes ({max}): not an alert");
            }
            let text = &reader.buffer()[line.range.clone()];
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            alerts.push(serde_json::from_slice(text).with_context(|| {
                format!("line {n}: not an alert as rulewatch writes them (jsonl)")
            })?);
            if alerts.len() > MAX_ALERTS {
                bail!("more than {MAX_ALERTS} alerts: give them a part at a time");
            }
        }
    }
    Ok(alerts)
}

/// The alert with `id` in the alerts topic (its latest message), read to its end.
fn find_alert(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topic: &str,
    id: &str,
) -> anyhow::Result<Alert> {
    let everything = Span {
        from: None,
        to: None,
    };
    let topics = [topic.to_owned()];
    let mut history = History::connect(brokers, &topics, options, everything, 1 << 20)?;
    let (mut batch, mut found, mut read) = (SourceBatch::default(), None, 0);
    while !history.done() {
        history.next_batch(4096, Duration::from_millis(100), &mut batch)?;
        read += batch.lines.len();
        for line in batch.lines.iter() {
            let raw = &batch.buf[line.range.clone()];
            if let Ok(alert) = serde_json::from_slice::<Alert>(raw)
                && alert.alert_id == id
            {
                found = Some(alert);
            }
        }
    }
    found.with_context(|| {
        format!("no alert with alert_id {id} among the {read} messages of topic {topic}")
    })
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
        if let Origin::Kafka {
            topic,
            partition,
            offset,
        } = p
        {
            if let Err(e) = crate::config::run::check_topic("evidence topic", topic) {
                bail!("{e}: not an alert's evidence");
            }
            wanted
                .entry((topic, *partition))
                .or_default()
                .push(*offset as i64);
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
        if let Some(((topic, partition, offset), _)) =
            records.iter().find(|(_, r)| r.len() > args.max_line_bytes)
        {
            bail!(
                "{}/{partition} offset {offset}: the record is longer than --max-line-bytes \
                 ({}): not a record rulewatch counts (another topic than the alert's input?)",
                shown(topic),
                args.max_line_bytes
            );
        }
    }
    let mut lines = Vec::new();
    for p in &alert.evidence {
        lines.push(match p {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => records
                .remove(&(topic.clone(), *partition, *offset as i64))
                .unwrap_or_default(),
            Origin::File { line, byte } => {
                let Some(input) = &args.input else {
                    bail!("its evidence is in a file: give the file with --input");
                };
                if file.is_none() {
                    let f = std::fs::File::open(input).with_context(|| {
                        format!("cannot open {}", crate::text::shown_path(input))
                    })?;
                    file = Some(std::io::BufReader::new(f));
                }
                read_line(file.as_mut().expect("opened"), *byte, args.max_line_bytes).with_context(
                    || {
                        format!(
                            "{}: line {line} (byte {byte})",
                            crate::text::shown_path(input)
                        )
                    },
                )?
            }
        });
    }
    Ok(lines)
}

/// The line starting at byte `byte`, of at most `max` bytes.
fn read_line(
    file: &mut std::io::BufReader<std::fs::File>,
    byte: u64,
    max: usize,
) -> anyhow::Result<Vec<u8>> {
    file.seek(std::io::SeekFrom::Start(byte))?;
    let mut line = Vec::new();
    // The longest line with its line ending ("\r\n"): a longer one is refused, unread.
    file.by_ref()
        .take(max as u64 + 2)
        .read_until(b'\n', &mut line)?;
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    if line.len() > max {
        bail!(
            "the line there is longer than --max-line-bytes ({max}): not a line rulewatch \
             counts (was the file changed since, or is it another file?)"
        );
    }
    Ok(line)
}

/// Records read, by (topic, partition, offset).
type Records = BTreeMap<(String, i32, i64), Vec<u8>>;

/// The records at `offsets` of a partition. Reading starts a little before the first; if
/// the broker answers from past it (some answer a fetch from the middle of a record batch
/// with the next batch, or with nothing), from the partition's start.
fn fetch(
    consumer: &Reader,
    topic: &str,
    partition: i32,
    offsets: &[i64],
) -> anyhow::Result<Records> {
    let (Some(&first), Some(&last)) = (offsets.iter().min(), offsets.iter().max()) else {
        return Ok(BTreeMap::new());
    };
    let deadline = std::time::Instant::now() + WAIT;
    let low = retrying(deadline, || {
        consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))
    })?
    .0;
    let near = (first - LOOKBACK).max(low);
    for from in [near, low] {
        if let Some(found) = read_span(consumer, topic, partition, from, offsets)? {
            return Ok(found);
        }
        if from == low {
            break;
        }
    }
    bail!(
        "{topic}/{partition} ends before offset {last}: the alert's events are not there \
         (another topic or cluster than the alert's input?)"
    )
}

/// Reads a partition from `from` up to the last of `offsets`; `None` if it ends first or
/// its first record comes after the first of `offsets`.
fn read_span(
    consumer: &Reader,
    topic: &str,
    partition: i32,
    from: i64,
    offsets: &[i64],
) -> anyhow::Result<Option<Records>> {
    let last = offsets.iter().copied().max().unwrap_or(from);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let (mut found, mut first_record) = (BTreeMap::new(), true);
    let started = Instant::now();
    while started.elapsed() < WAIT {
        let msg = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(None),
            Some(Err(e)) if passes(&e) => continue,
            Some(msg) => msg.with_context(|| format!("reading {topic}/{partition}"))?,
        };
        if std::mem::take(&mut first_record) && offsets.iter().any(|&o| o < msg.offset()) {
            return Ok(None);
        }
        if offsets.contains(&msg.offset()) {
            let value = msg.payload().unwrap_or_default().to_vec();
            found.insert((topic.to_owned(), partition, msg.offset()), value);
        }
        if msg.offset() >= last {
            let key = |o: &i64| (topic.to_owned(), partition, *o);
            if let Some(gone) = offsets.iter().find(|o| !found.contains_key(&key(o))) {
                bail!(
                    "{topic}/{partition}: offset {gone} is not there any more (deleted by \
                     retention or compaction)"
                );
            }
            return Ok(Some(found));
        }
    }
    bail!(
        "{topic}/{partition}: offsets from {from} to {last} not read within {}s (is the \
         cluster reachable?)",
        WAIT.as_secs()
    )
}
