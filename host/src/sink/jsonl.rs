//! Alerts as JSON lines, one object per alert:
//! `{"rule":"crash","window_start":"2026-01-27T22:35:50Z","window_end":"2026-01-27T22:36:00Z","key":"user_1503","count":5,"watermark":"…","module_sha256":"…","alert_id":"…"}`,
//! and with `[output] evidence` on, `"evidence":[{"topic":"logs","partition":3,"offset":1042},…]`
//! (Kafka) or `[{"line":17,"byte":2210},…]` (files) at the end.

use super::{AlertRow, Sink};
use crate::decode::time::format_rfc3339;
use std::io::{self, Write};

/// Writes one JSON object per alert.
pub(crate) struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    /// Writes to `out`.
    pub(crate) fn new(out: W) -> Self {
        JsonLines { out }
    }
}

/// A JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// One alert as a JSON object (without a newline); the format of `--format jsonl` and of
/// the alerts topic.
pub(crate) fn alert_json(r: &AlertRow) -> String {
    let watermark = r
        .watermark
        .map_or_else(|| "null".to_owned(), |w| quote(&format_rfc3339(w)));
    let evidence = if r.evidence.is_empty() {
        String::new()
    } else {
        let list = serde_json::to_string(&r.evidence).expect("positions serialise");
        format!(r#","evidence":{list}"#)
    };
    format!(
        r#"{{"rule":{},"window_start":"{}","window_end":"{}","key":{},"count":{},"watermark":{},"module_sha256":"{}","alert_id":"{}"{evidence}}}"#,
        quote(&r.rule.name),
        format_rfc3339(r.start),
        format_rfc3339(r.end),
        quote(&r.key),
        r.count,
        watermark,
        r.rule.sha256,
        r.id(),
    )
}

impl<W: Write> Sink for JsonLines<W> {
    fn emit(&mut self, _batch: u64, rows: &[AlertRow]) -> io::Result<()> {
        for r in rows {
            writeln!(self.out, "{}", alert_json(r))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
