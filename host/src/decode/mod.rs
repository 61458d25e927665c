//! Decoding: a line of bytes becomes a [`Record`] (the top-level fields any rule reads), and a
//! record becomes a row of a rule's event batch through that rule's [`Projection`].
//!
//! A line is parsed once however many rules read it. What is wrong with a line is a
//! [`Reason`]; every reason is counted and can be routed to a dead-letter sink.

pub mod json;
pub mod time;

use json::{ScanError, SyntaxError, Value};
use rulewatch_sdk::FieldType;
use rulewatch_sdk::abi::{self, BatchWriter};
use std::fmt;

pub use time::TimeFormat;

/// Why a line or an event was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Not JSON.
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// Longer than the configured maximum.
    TooLarge,
    /// A field the rule needs (time, key or declared) is absent.
    MissingField,
    /// A field the rule needs has another JSON type.
    WrongType,
    /// The time field is not a timestamp in the configured format.
    BadTimestamp,
}

impl Reason {
    /// Every reason, in report order.
    pub const ALL: [Reason; 7] = [
        Reason::NotUtf8,
        Reason::NotJson,
        Reason::NotObject,
        Reason::TooLarge,
        Reason::MissingField,
        Reason::WrongType,
        Reason::BadTimestamp,
    ];

    /// The label used in metrics, summaries and dead letters.
    pub fn label(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::TooLarge => "too_large",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::BadTimestamp => "bad_timestamp",
        }
    }

    /// What the user can do about it, for log messages.
    pub fn hint(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "input must be UTF-8 text",
            Reason::NotJson | Reason::NotObject => "each line must hold one JSON object",
            Reason::TooLarge => {
                "raise --max-line-bytes (kafka.max_message_bytes), or [sandbox] max_key_bytes \
                 for keys, if such lines are expected"
            }
            Reason::MissingField => {
                "every event needs the rule's time field, key field and declared fields"
            }
            Reason::WrongType => "check the producer, or the rule's declared field types",
            Reason::BadTimestamp => {
                "expected RFC 3339 (2026-01-27T22:35:51.123Z), \"2026-01-27 22:35:51\" (UTC) or \
                 epoch milliseconds; set [time] format in the rule's TOML"
            }
        }
    }

    /// Position in [`Reason::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What is wrong with a line, with enough detail for a message; allocation-free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineError {
    /// The reason, for counting.
    pub reason: Reason,
    /// Byte offset within the line where the problem was noticed, if known.
    pub at: Option<usize>,
    /// What exactly was wrong.
    pub detail: &'static str,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.detail)?;
        if let Some(at) = self.at {
            write!(f, " (at byte {at})")?;
        }
        Ok(())
    }
}

/// Parses lines, projecting the top-level fields registered with [`Decoder::slot`].
#[derive(Default)]
pub struct Decoder {
    names: Vec<Box<str>>,
    slots: Vec<Value>,
    scratch: Vec<u8>,
}

impl Decoder {
    /// The slot of top-level field `name`, registering it if new.
    pub fn slot(&mut self, name: &str) -> usize {
        match self.names.iter().position(|n| &**n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.into());
                self.slots.push(Value::Missing);
                self.names.len() - 1
            }
        }
    }

    /// Parses one line (without its newline).
    pub fn decode<'a>(&'a mut self, line: &'a [u8]) -> Result<Record<'a>, LineError> {
        let scanned = json::scan_object(line, &self.names, &mut self.slots, &mut self.scratch);
        if scanned.is_err() {
            // Non-UTF-8 bytes are a syntax error to the scanner; name them for what they are.
            if let Err(e) = std::str::from_utf8(line) {
                return Err(LineError {
                    reason: Reason::NotUtf8,
                    at: Some(e.valid_up_to()),
                    detail: "invalid UTF-8",
                });
            }
        }
        match scanned {
            Ok(()) => Ok(Record {
                line,
                scratch: &self.scratch,
                slots: &self.slots,
            }),
            Err(ScanError::Syntax(SyntaxError { reason, at })) => Err(LineError {
                reason: Reason::NotJson,
                at: Some(at).filter(|_| !line.is_empty()),
                detail: reason,
            }),
            Err(ScanError::NotObject(kind)) => Err(LineError {
                reason: Reason::NotObject,
                at: None,
                detail: match kind {
                    "an array" => "expected a JSON object, found an array",
                    "a string" => "expected a JSON object, found a string",
                    "a number" => "expected a JSON object, found a number",
                    "a boolean" => "expected a JSON object, found a boolean",
                    _ => "expected a JSON object, found null",
                },
            }),
        }
    }
}

/// The projected fields of one decoded line.
pub struct Record<'a> {
    line: &'a [u8],
    scratch: &'a [u8],
    slots: &'a [Value],
}

impl<'a> Record<'a> {
    fn value(&self, slot: usize) -> &'a Value {
        &self.slots[slot]
    }

    /// The bytes of a string (decoded) or number (as written) value.
    fn bytes(&self, v: &Value) -> &'a [u8] {
        v.bytes(self.line, self.scratch)
    }
}

/// A field of a rule's event that could not be used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldError {
    /// Missing, wrong type or bad timestamp.
    pub reason: Reason,
    /// Index into [`Projection::field_names`].
    pub field: usize,
    /// What was found or wrong.
    pub detail: &'static str,
}

/// How one rule's events are built from records: time, key and declared fields.
pub struct Projection {
    time: usize,
    parser: time::TimeParser,
    key: usize,
    fields: Vec<(usize, FieldType)>,
    names: Vec<String>,
    kinds: Vec<u32>,
    max_key: usize,
}

impl Projection {
    /// Registers the rule's fields with the decoder.
    pub fn new(
        decoder: &mut Decoder,
        time_field: &str,
        format: TimeFormat,
        key_field: &str,
        fields: &[(String, FieldType)],
    ) -> Self {
        let mut names = vec![time_field.to_owned(), key_field.to_owned()];
        names.extend(fields.iter().map(|(n, _)| n.clone()));
        let mut kinds = vec![abi::KIND_I64, abi::KIND_STR];
        kinds.extend(fields.iter().map(|(_, t)| t.column_kind()));
        Projection {
            time: decoder.slot(time_field),
            parser: time::TimeParser::new(format),
            key: decoder.slot(key_field),
            fields: fields.iter().map(|(n, t)| (decoder.slot(n), *t)).collect(),
            names,
            kinds,
            max_key: usize::MAX,
        }
    }

    /// Rejects events whose key is longer than `bytes` as `too_large`: a key is kept in
    /// every window it counts in, and handed to the rule with each window's count.
    pub fn with_max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key = bytes;
        self
    }

    /// Names of the time field, the key field, then the declared fields.
    pub fn field_names(&self) -> &[String] {
        &self.names
    }

    /// The column kinds of this rule's event batches.
    pub fn kinds(&self) -> &[u32] {
        &self.kinds
    }

    /// Appends the record as a row of `out` and returns its event time, or says which field
    /// is unusable (leaving `out` unchanged).
    pub fn project(&mut self, rec: &Record<'_>, out: &mut BatchWriter) -> Result<i64, FieldError> {
        let fail = |reason, field, detail| FieldError {
            reason,
            field,
            detail,
        };
        let t = rec.value(self.time);
        let raw = match t {
            Value::Str { .. } => time::Raw::Str(rec.bytes(t)),
            Value::Num(_) => time::Raw::Num(rec.bytes(t)),
            Value::Missing => return Err(fail(Reason::MissingField, 0, "field is missing")),
            _ => return Err(fail(Reason::WrongType, 0, type_detail(t))),
        };
        let ms = self
            .parser
            .parse(raw)
            .map_err(|e| fail(Reason::BadTimestamp, 0, e))?;
        let key = rec.value(self.key);
        match key {
            Value::Str { .. } | Value::Num(_) => {}
            Value::Missing => return Err(fail(Reason::MissingField, 1, "field is missing")),
            _ => return Err(fail(Reason::WrongType, 1, type_detail(key))),
        }
        if rec.bytes(key).len() > self.max_key {
            return Err(fail(
                Reason::TooLarge,
                1,
                "key longer than the limit ([sandbox] max_key_bytes)",
            ));
        }
        for (i, &(slot, ty)) in self.fields.iter().enumerate() {
            match (rec.value(slot), ty) {
                (Value::Str { .. }, FieldType::Str) => {}
                (v @ Value::Num(_), FieldType::Num) => {
                    if parse_f64(rec.bytes(v)).is_none() {
                        return Err(fail(Reason::WrongType, 2 + i, "number out of range"));
                    }
                }
                (Value::Missing, _) => {
                    return Err(fail(Reason::MissingField, 2 + i, "field is missing"));
                }
                (v, FieldType::Str) => {
                    return Err(fail(Reason::WrongType, 2 + i, expected("a string", v)));
                }
                (v, FieldType::Num) => {
                    return Err(fail(Reason::WrongType, 2 + i, expected("a number", v)));
                }
            }
        }
        out.push_i64(0, ms);
        out.push_str(1, rec.bytes(key));
        for (i, &(slot, _)) in self.fields.iter().enumerate() {
            let v = rec.value(slot);
            match v {
                Value::Num(_) => out.push_f64(2 + i, parse_f64(rec.bytes(v)).unwrap_or(0.0)),
                _ => out.push_str(2 + i, rec.bytes(v)),
            }
        }
        out.end_row();
        Ok(ms)
    }
}

fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

fn type_detail(v: &Value) -> &'static str {
    match v {
        Value::Bool => "expected a string or number, found a boolean",
        Value::Null => "expected a string or number, found null",
        Value::Object => "expected a string or number, found an object",
        _ => "expected a string or number, found an array",
    }
}

fn expected(what: &'static str, v: &Value) -> &'static str {
    match (what, v) {
        ("a string", Value::Num(_)) => "expected a string, found a number",
        ("a string", Value::Bool) => "expected a string, found a boolean",
        ("a string", Value::Null) => "expected a string, found null",
        ("a string", Value::Object) => "expected a string, found an object",
        ("a string", _) => "expected a string, found an array",
        (_, Value::Str { .. }) => "expected a number, found a string",
        (_, Value::Bool) => "expected a number, found a boolean",
        (_, Value::Null) => "expected a number, found null",
        (_, Value::Object) => "expected a number, found an object",
        _ => "expected a number, found an array",
    }
}

/// The four crash-rule fields of a line as the baselines parse them: borrowed strings,
/// copied only when escaped.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // only parsed
struct BaselineEvent<'a> {
    #[serde(borrow)]
    timestamp: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    severity: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    user_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    content: std::borrow::Cow<'a, str>,
}

/// The bare native parse the stage micro-benchmarks (`cargo bench`) set beside the scanner:
/// serde_json deserialising a line into [`BaselineEvent`]. Whether the line parsed. (The
/// baselines of whole replays are built at their best apart: `bench/parsers.sh`.)
pub fn serde_baseline(line: &[u8]) -> bool {
    serde_json::from_slice::<BaselineEvent<'_>>(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulewatch_sdk::abi::Batch;

    fn crash_projection(d: &mut Decoder) -> Projection {
        Projection::new(
            d,
            "timestamp",
            TimeFormat::Auto,
            "user_id",
            &[
                ("severity".into(), FieldType::Str),
                ("level".into(), FieldType::Num),
            ],
        )
    }

    fn project(line: &str) -> Result<(i64, Vec<u8>), (Reason, String)> {
        let mut d = Decoder::default();
        let mut p = crash_projection(&mut d);
        let mut w = BatchWriter::default();
        w.reset(p.kinds());
        let rec = d
            .decode(line.as_bytes())
            .map_err(|e| (e.reason, e.to_string()))?;
        let t = p.project(&rec, &mut w).map_err(|e| {
            (
                e.reason,
                format!("{}: {}", p.field_names()[e.field], e.detail),
            )
        })?;
        let mut buf = Vec::new();
        w.finish(&mut buf);
        Ok((t, buf))
    }

    #[test]
    fn projects_a_good_line() {
        let (t, buf) = project(
            r#"{"timestamp":"1970-01-01T00:00:01Z","user_id":17,"severity":"Hi\u0067h","level":2.5,"x":[1]}"#,
        )
        .unwrap();
        assert_eq!(t, 1000);
        let b = Batch::parse(&buf).unwrap();
        assert_eq!(
            (b.i64(0, 0), b.str(1, 0), b.str(2, 0), b.f64(3, 0)),
            (1000, "17", "High", 2.5)
        );
    }

    #[test]
    fn names_each_reason() {
        let cases = [
            (
                "{not json",
                Reason::NotJson,
                "expected a key in double quotes (at byte 1)",
            ),
            ("", Reason::NotJson, "empty line"),
            (
                "[]",
                Reason::NotObject,
                "expected a JSON object, found an array",
            ),
            (
                "null",
                Reason::NotObject,
                "expected a JSON object, found null",
            ),
            (
                r#"{"user_id":"u","severity":"High","level":1}"#,
                Reason::MissingField,
                "timestamp: field is missing",
            ),
            (
                r#"{"timestamp":"yesterday","user_id":"u","severity":"High","level":1}"#,
                Reason::BadTimestamp,
                "timestamp: does not start with a 4-digit year",
            ),
            (
                r#"{"timestamp":12.5,"user_id":"u","severity":"High","level":1}"#,
                Reason::BadTimestamp,
                "timestamp: epoch milliseconds must be an integer",
            ),
            (
                r#"{"timestamp":0,"user_id":null,"severity":"High","level":1}"#,
                Reason::WrongType,
                "user_id: expected a string or number, found null",
            ),
            (
                r#"{"timestamp":0,"user_id":"u","severity":5,"level":1}"#,
                Reason::WrongType,
                "severity: expected a string, found a number",
            ),
            (
                r#"{"timestamp":0,"user_id":"u","severity":"x","level":"1"}"#,
                Reason::WrongType,
                "level: expected a number, found a string",
            ),
            (
                r#"{"timestamp":0,"user_id":"u","severity":"x"}"#,
                Reason::MissingField,
                "level: field is missing",
            ),
        ];
        for (line, reason, message) in cases {
            assert_eq!(project(line), Err((reason, message.to_string())), "{line}");
        }
        let mut d = Decoder::default();
        let e = d.decode(b"{\"a\":\"\xff\xfe\"}").err().unwrap();
        assert_eq!((e.reason, e.at), (Reason::NotUtf8, Some(6)));
    }
}
