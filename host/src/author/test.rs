//! `rulewatch test RULE.toml --events FILE --expect FILE`: runs the real module over sample
//! events, in event time as `replay` does (the end of the file closes every window), and
//! compares its alerts — and optionally its late and bad records — with expectations.
//!
//! Expectation files are JSON lines. Only these fields are compared, in any order, so that
//! output of `replay --format jsonl` (or `--late`, `--dead-letter`) can be used as it is:
//! alerts `window_start`, `window_end`, `key`, `count`; late events `line`; bad input `line`,
//! `reason`.

use crate::driver::file::drive;
use crate::pipeline::{Pipeline, Rejects};
use crate::registry;
use crate::sink::jsonl::JsonLines;
use crate::sink::jsonl::quote;
use crate::sink::records::RecordWriter;
use crate::source::Sources;
use anyhow::Context;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The compared fields of each kind of record.
const ALERT_FIELDS: &[&str] = &["window_start", "window_end", "key", "count"];
const LATE_FIELDS: &[&str] = &["line"];
const BAD_FIELDS: &[&str] = &["line", "reason"];

/// What to test (the flags of `rulewatch test`).
#[derive(clap::Args)]
pub(crate) struct TestArgs {
    /// The rule's TOML; its module is found as in a rules folder.
    pub rule: PathBuf,
    /// Sample events, JSON lines (event time comes from them; the end closes every window).
    #[arg(long)]
    pub events: PathBuf,
    /// Expected alerts, JSON lines (`window_start`, `window_end`, `key`, `count` compared).
    #[arg(long)]
    pub expect: PathBuf,
    /// Expected late events, JSON lines (`line` compared).
    #[arg(long)]
    pub late: Option<PathBuf>,
    /// Expected bad input, JSON lines (`line` and `reason` compared).
    #[arg(long)]
    pub bad: Option<PathBuf>,
    /// Write what the rule produces to the expectation files instead of comparing.
    #[arg(long)]
    pub write: bool,
    /// Also compare (or write) each alert's `evidence`: the positions of its events that
    /// `[output] evidence = N` in the rule's TOML asks for.
    #[arg(long)]
    pub evidence: bool,
}

/// A `Write` into a buffer shared with the caller.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    /// The records written, as JSON values.
    fn values(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("not poisoned");
        let text = String::from_utf8_lossy(&bytes);
        (text.lines())
            .map(|l| serde_json::from_str(l).expect("rulewatch writes JSON"))
            .collect()
    }

    fn records(&self, fields: &[&str]) -> Vec<String> {
        in_order(self.values().iter(), fields)
    }
}

/// `records` with only `fields`, as compact JSON, in the order of their values (numbers as
/// numbers: line 2 before line 10), field by field.
fn in_order<'a>(records: impl Iterator<Item = &'a Value>, fields: &[&str]) -> Vec<String> {
    let mut keyed: Vec<(Vec<&Value>, String)> = records
        .map(|r| {
            let values = fields.iter().map(|f| r.get(*f).unwrap_or(&Value::Null));
            (values.collect(), project(r, fields))
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        a.iter()
            .zip(b)
            .map(|(x, y)| order(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    keyed.into_iter().map(|(_, text)| text).collect()
}

/// Numbers by value, everything else by its JSON text (strings, then, alphabetically).
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The record with only `fields`, in that order, as compact JSON.
fn project(record: &Value, fields: &[&str]) -> String {
    let pairs: Vec<String> = fields
        .iter()
        .map(|f| format!("{}:{}", quote(f), record.get(*f).unwrap_or(&Value::Null)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn read_expected(path: &Path, fields: &[&str]) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (or create it with --write)", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        records.push(record);
    }
    Ok(in_order(records.iter(), fields))
}

/// Prints a comparison; whether the two agree.
fn compare(what: &str, path: &Path, expected: &[String], got: &[String]) -> bool {
    let missing: Vec<&String> = expected.iter().filter(|e| !got.contains(e)).collect();
    let extra: Vec<&String> = got.iter().filter(|g| !expected.contains(g)).collect();
    if missing.is_empty() && extra.is_empty() && expected.len() == got.len() {
        println!(
            "ok      {what}: {} as expected ({})",
            got.len(),
            path.display()
        );
        return true;
    }
    println!(
        "FAILED  {what}: {} expected ({}), {} produced",
        expected.len(),
        path.display(),
        got.len()
    );
    for m in missing {
        println!("  - {m}    (expected, not produced)");
    }
    for x in extra {
        println!("  + {x}    (produced, not expected)");
    }
    false
}

/// When no sample event reached the rule — each of the `lines` lines read (blank ones too:
/// they are rejected as `not_json`) was rejected, some for the rule's fields (the samples do
/// not follow the fields it declares) — what to do about it.
fn all_rejected(bad: &Buffer, lines: u64) -> Option<String> {
    let bad = bad.values();
    let field = |r: &&Value| r["reason"] == "missing_field" || r["reason"] == "wrong_type";
    let first = bad.iter().find(field)?;
    let rejected: std::collections::BTreeSet<u64> =
        bad.iter().filter_map(|r| r["line"].as_u64()).collect();
    (rejected.len() as u64 >= lines).then(|| {
        format!(
            "no sample event reached the rule: all {lines} lines were rejected, for example \
             line {} ({}: {}); make the sample events hold the fields the rule declares, with \
             their types, then run again",
            first["line"],
            first["reason"].as_str().unwrap_or("?"),
            first["error"].as_str().unwrap_or("?"),
        )
    })
}

/// Runs the test and prints the comparison; `Ok(false)` when the output differs.
pub(crate) fn run(args: &TestArgs) -> anyhow::Result<bool> {
    let rule = registry::load(&args.rule)?;
    let (alerts, late, bad) = (Buffer::default(), Buffer::default(), Buffer::default());
    let rejects = Rejects {
        dead_letter: Some(Box::new(RecordWriter::new(Box::new(bad.clone())))),
        late: Some(Box::new(RecordWriter::new(Box::new(late.clone())))),
    };
    let sources = Sources::file(&args.events.display().to_string());
    let mut pipeline = Pipeline::new(sources, std::slice::from_ref(&rule), None, rejects)?;
    let mut sink = JsonLines::new(alerts.clone());
    let input = std::fs::File::open(&args.events)
        .with_context(|| format!("cannot read events {}", args.events.display()))?;
    drive(&mut pipeline, input, false, 1 << 20, &mut sink, &None, None)?;

    let with_evidence = [ALERT_FIELDS, &["evidence"]].concat();
    let alert_fields = if args.evidence {
        &with_evidence[..]
    } else {
        ALERT_FIELDS
    };
    let checks = [
        ("alerts", Some(&args.expect), &alerts, alert_fields),
        ("late events", args.late.as_ref(), &late, LATE_FIELDS),
        ("bad input", args.bad.as_ref(), &bad, BAD_FIELDS),
    ];
    println!(
        "rule {} (module sha256 {}) over {}",
        rule.name,
        rule.module.sha256(),
        args.events.display()
    );
    if let Some(why) = all_rejected(&bad, pipeline.input_lines()) {
        println!("FAILED  {why}");
        if args.write {
            anyhow::bail!(
                "nothing written: expectations from events the rule never saw would be empty"
            );
        }
        return Ok(false);
    }
    let mut ok = true;
    for (what, path, produced, fields) in checks {
        let Some(path) = path else { continue };
        let got = produced.records(fields);
        if args.write {
            let text: String = got.iter().map(|r| format!("{r}\n")).collect();
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote   {what}: {} to {}", got.len(), path.display());
        } else {
            ok &= compare(what, path, &read_expected(path, fields)?, &got);
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_listed_by_value_not_as_text() {
        let records: Vec<Value> = [12, 2, 10, 1]
            .iter()
            .map(|n| serde_json::json!({"line": n, "reason": "not_json"}))
            .collect();
        let lines: Vec<String> = in_order(records.iter(), &["line"]);
        assert_eq!(
            lines,
            [
                r#"{"line":1}"#,
                r#"{"line":2}"#,
                r#"{"line":10}"#,
                r#"{"line":12}"#
            ]
        );
        let windows: Vec<Value> = [("b", 3), ("a", 3), ("a", 20)]
            .iter()
            .map(|(k, c)| serde_json::json!({"key": k, "count": c}))
            .collect();
        let rows = in_order(windows.iter(), &["count", "key"]);
        assert_eq!(rows[0], r#"{"count":3,"key":"a"}"#);
        assert_eq!(rows[2], r#"{"count":20,"key":"a"}"#);
    }

    #[test]
    fn samples_that_lack_the_declared_fields_are_named_as_the_problem() {
        let bad = Buffer::default();
        let write = |line: u64, reason: &str| {
            let record = serde_json::json!({"line": line, "reason": reason, "error": "field `latency`: field is missing"});
            std::io::Write::write_all(&mut bad.clone(), format!("{record}\n").as_bytes()).unwrap();
        };
        write(1, "missing_field");
        write(2, "not_json");
        write(3, "missing_field");
        let why = all_rejected(&bad, 3).expect("no event reached the rule");
        assert!(
            why.contains("line 1 (missing_field: field `latency`"),
            "{why}"
        );
        assert_eq!(all_rejected(&bad, 4), None, "line 4 reached the rule");
        let only_json = Buffer::default();
        std::io::Write::write_all(
            &mut only_json.clone(),
            b"{\"line\":1,\"reason\":\"not_json\"}\n",
        )
        .unwrap();
        assert_eq!(all_rejected(&only_json, 1), None, "not a matter of fields");
    }
}
