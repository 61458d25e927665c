//! Where rejected input goes: dead letters (input that could not be used) and late events,
//! each with its reason and position so that it can be found and replayed. [`RecordWriter`]
//! writes them as JSON lines to a file; the Kafka sink writes them to topics.

use super::jsonl::quote;
use crate::decode::time::format_rfc3339;
use crate::source::Position;
use std::io::{self, Write};

/// Receives rejected records. Writes may fail in the middle of a batch; the first error is
/// kept and returned by [`RejectSink::flush`], which the pipeline calls after every batch.
pub(crate) trait RejectSink: Send {
    /// A record that could not be used: `reason` is the label, `error` the message, `rule`
    /// the rule that rejected it (none when no rule could use it).
    fn dead_letter(
        &mut self,
        pos: Position<'_>,
        reason: &str,
        error: &str,
        rule: Option<&str>,
        raw: &[u8],
    );

    /// An event the rule selected after its window had closed.
    fn late(&mut self, pos: Position<'_>, rule: &str, event_time: i64, watermark: i64, raw: &[u8]);

    /// Flushes buffered records; returns the first write error since the last call.
    fn flush(&mut self) -> io::Result<()>;
}

/// Writes rejected records as JSON lines.
pub(crate) struct RecordWriter {
    out: Box<dyn Write + Send>,
    failed: Option<io::Error>,
}

impl RecordWriter {
    /// Writes to `out`.
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Self {
        RecordWriter { out, failed: None }
    }

    fn keep(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            self.failed.get_or_insert(e);
        }
    }
}

fn position_json(pos: &Position<'_>) -> String {
    match pos.byte {
        Some(byte) => format!(
            r#""input":{},"line":{},"offset":{byte}"#,
            quote(pos.input),
            pos.number
        ),
        None => format!(r#""input":{},"offset":{}"#, quote(pos.input), pos.number),
    }
}

impl RejectSink for RecordWriter {
    fn dead_letter(
        &mut self,
        pos: Position<'_>,
        reason: &str,
        error: &str,
        rule: Option<&str>,
        raw: &[u8],
    ) {
        let result = writeln!(
            self.out,
            r#"{{"reason":"{reason}","error":{},"rule":{},{},"raw":{}}}"#,
            quote(&crate::text::shown(error)),
            rule.map_or_else(|| "null".into(), quote),
            position_json(&pos),
            quote(&String::from_utf8_lossy(raw)),
        );
        self.keep(result);
    }

    fn late(&mut self, pos: Position<'_>, rule: &str, event_time: i64, watermark: i64, raw: &[u8]) {
        let result = writeln!(
            self.out,
            r#"{{"rule":{},"event_time":"{}","watermark":"{}","lateness_ms":{},{},"raw":{}}}"#,
            quote(rule),
            format_rfc3339(event_time),
            format_rfc3339(watermark),
            watermark - event_time,
            position_json(&pos),
            quote(&String::from_utf8_lossy(raw)),
        );
        self.keep(result);
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.out.flush();
        self.keep(result);
        self.failed.take().map_or(Ok(()), Err)
    }
}
