//! Where alerts go: the Spark-style console table, JSON lines, or a Kafka topic ([`build`]
//! makes them from the output settings); and where rejected input goes: dead-letter and
//! late-event files or topics.
//!
//! A pipeline hands a sink one trigger at a time: the rows its last batch produced.

pub(crate) mod deliver;
mod firing;
pub(crate) mod http;
pub(crate) mod jsonl;
pub(crate) mod kafka;
pub(crate) mod producer;
mod receiver;
pub(crate) mod records;
pub(crate) mod table;
pub(crate) mod template;

use crate::config::OutputMode;
use crate::config::run::Console;
use std::io::{self, BufWriter};
use std::sync::Arc;

/// What every alert row of a rule shares.
#[derive(Debug)]
pub(crate) struct RuleMeta {
    /// The rule's name.
    pub name: String,
    /// Published, or the shadow of another rule.
    pub role: crate::config::Role,
    /// sha256 of the module that decided the rows.
    pub sha256: String,
    /// Column title of the key in tables.
    pub key_column: String,
    /// Column title of the count in tables.
    pub count_column: String,
    /// When rows are emitted.
    pub mode: OutputMode,
}

/// One alert: a (window, key) whose count the rule said is an alert.
#[derive(Clone, Debug)]
pub(crate) struct AlertRow {
    /// The rule that decided it.
    pub rule: Arc<RuleMeta>,
    /// Window start, epoch ms.
    pub start: i64,
    /// Window end (exclusive), epoch ms.
    pub end: i64,
    /// The key.
    pub key: String,
    /// The count.
    pub count: u64,
    /// The rule's watermark when the row was decided, epoch ms.
    pub watermark: Option<i64>,
    /// Where some of the events counted for it are (`[output] evidence`; empty when off).
    pub evidence: Vec<crate::source::Origin>,
}

impl AlertRow {
    /// A deterministic id of (rule, window, key): every row about the same window and key has
    /// it, in every run, so that consumers can deduplicate (or compact) by it.
    pub(crate) fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.rule.name.as_bytes(),
            &self.start.to_le_bytes(),
            &self.end.to_le_bytes(),
            self.key.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The alert sinks the output settings ask for: the console on stdout, the alerts topic
/// through `output` (the shared producer, under `run`) when one is named, and each of
/// `[[output.sinks]]`. A new kind of sink is a file in this folder, a setting, and a line
/// here.
pub(crate) fn build(
    console: Console,
    output: Option<&producer::Output>,
    alerts_topic: Option<&str>,
    http: &[crate::config::sinks::SinkConfig],
) -> anyhow::Result<Fanout> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let stdout = BufWriter::new(io::stdout());
    match console {
        Console::Table => sinks.push(Box::new(table::Table::new(stdout))),
        Console::Jsonl => sinks.push(Box::new(jsonl::JsonLines::new(stdout))),
        Console::None => {}
    }
    if let (Some(output), Some(topic)) = (output, alerts_topic) {
        sinks.push(Box::new(kafka::AlertTopic::new(output.clone(), topic)));
    }
    for config in http {
        sinks.push(Box::new(http::HttpSink::build(config, output)?));
    }
    Ok(Fanout(sinks))
}

/// Sends every trigger to several sinks.
pub(crate) struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn emit(&mut self, batch: u64, rows: &[AlertRow]) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.emit(batch, rows))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.flush())
    }

    fn marks(&self) -> Vec<deliver::Mark> {
        self.0.iter().flat_map(|s| s.marks()).collect()
    }

    fn drain(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.drain())
    }
}

/// Receives the rows of each trigger.
pub(crate) trait Sink {
    /// Writes the rows of trigger number `batch` (numbered from 0, counting only triggers
    /// that produced rows).
    fn emit(&mut self, batch: u64, rows: &[AlertRow]) -> io::Result<()>;

    /// Flushes buffered output.
    fn flush(&mut self) -> io::Result<()>;

    /// How far its delivery queues have come (sinks that deliver off the applying thread):
    /// a checkpoint waits for these.
    fn marks(&self) -> Vec<deliver::Mark> {
        Vec::new()
    }

    /// Waits until everything emitted so far is delivered or dead-lettered (the end of a
    /// replay, a shutdown).
    fn drain(&mut self) -> io::Result<()> {
        self.flush()
    }
}
