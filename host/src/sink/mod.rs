//! Where alerts go: the Spark-style console table or JSON lines; and where rejected input
//! goes: dead-letter and late-event files.
//!
//! A pipeline hands a sink one trigger at a time: the rows its last batch produced.

pub mod jsonl;
pub mod records;
pub mod table;

use crate::config::OutputMode;
use std::io;
use std::sync::Arc;

/// What every alert row of a rule shares.
#[derive(Debug)]
pub struct RuleMeta {
    /// The rule's name.
    pub name: String,
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
pub struct AlertRow {
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
}

/// Receives the rows of each trigger.
pub trait Sink {
    /// Writes the rows of trigger number `batch` (numbered from 0, counting only triggers
    /// that produced rows).
    fn emit(&mut self, batch: u64, rows: &[AlertRow]) -> io::Result<()>;

    /// Flushes buffered output.
    fn flush(&mut self) -> io::Result<()>;
}
