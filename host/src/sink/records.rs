//! Dead letters (input that could not be used) and late events, as JSON lines, each with
//! its reason and position so that it can be found and replayed.

use super::jsonl::quote;
use crate::decode::time::format_rfc3339;
use std::io::{self, Write};

/// Where a rejected record came from.
#[derive(Clone, Copy, Debug)]
pub struct Position<'a> {
    /// Input name (file path or `-`).
    pub input: &'a str,
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line.
    pub offset: u64,
}

/// Writes rejected records as JSON lines. A write error is kept and returned by
/// [`RecordWriter::flush`], which the pipeline calls after every batch, so that callers in
/// the middle of a batch need not handle it.
pub struct RecordWriter {
    out: Box<dyn Write + Send>,
    failed: Option<io::Error>,
}

impl RecordWriter {
    /// Writes to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        RecordWriter { out, failed: None }
    }

    fn keep(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            self.failed.get_or_insert(e);
        }
    }

    /// A line that could not be used: `reason` is the label, `error` the message, `rule`
    /// the rule that rejected it (none when no rule could use it).
    pub fn dead_letter(
        &mut self,
        pos: Position<'_>,
        reason: &str,
        error: &str,
        rule: Option<&str>,
        raw: &[u8],
    ) {
        let result = writeln!(
            self.out,
            r#"{{"reason":"{reason}","error":{},"rule":{},"input":{},"line":{},"offset":{},"raw":{}}}"#,
            quote(error),
            rule.map_or_else(|| "null".into(), quote),
            quote(pos.input),
            pos.line,
            pos.offset,
            quote(&String::from_utf8_lossy(raw)),
        );
        self.keep(result);
    }

    /// An event the rule selected after its window had closed.
    pub fn late(
        &mut self,
        pos: Position<'_>,
        rule: &str,
        event_time: i64,
        watermark: i64,
        raw: &[u8],
    ) {
        let result = writeln!(
            self.out,
            r#"{{"rule":{},"event_time":"{}","watermark":"{}","lateness_ms":{},"input":{},"line":{},"offset":{},"raw":{}}}"#,
            quote(rule),
            format_rfc3339(event_time),
            format_rfc3339(watermark),
            watermark - event_time,
            quote(pos.input),
            pos.line,
            pos.offset,
            quote(&String::from_utf8_lossy(raw)),
        );
        self.keep(result);
    }

    /// Flushes buffered records; returns the first write error since the last call.
    pub fn flush(&mut self) -> io::Result<()> {
        let result = self.out.flush();
        self.keep(result);
        self.failed.take().map_or(Ok(()), Err)
    }
}
