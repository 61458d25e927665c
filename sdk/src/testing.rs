//! Run a rule natively in unit tests, through the same batch layout the host uses.
//!
//! ```
//! # use rulewatch_sdk::{Event, Field, Rule, WindowCount, testing};
//! # struct Any;
//! # impl Rule for Any {
//! #     type Params = ();
//! #     const FIELDS: &'static [Field] = &[Field::num("level")];
//! #     fn init(_: ()) -> Result<Self, String> { Ok(Any) }
//! #     fn filter(&self, e: &Event) -> bool { e.num("level") > 3.0 }
//! #     fn alert(&self, w: &WindowCount) -> bool { w.count > 1 }
//! # }
//! let rule = Any::init(()).unwrap();
//! let events = [
//!     testing::event(0, "a", &[("level", 5.0.into())]),
//!     testing::event(1, "b", &[("level", 1.0.into())]),
//! ];
//! assert_eq!(testing::filter(&rule, &events), [true, false]);
//! ```

use crate::abi::{self, Batch, BatchWriter, FieldType};
use crate::{Event, Rule, WindowCount};

/// A field value of a test event.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Num(n)
    }
}

/// An event as the host would decode it.
#[derive(Clone, Debug, PartialEq)]
pub struct TestEvent {
    /// Event time, ms since the Unix epoch.
    pub time_ms: i64,
    /// Key value.
    pub key: String,
    /// Field values by name.
    pub fields: Vec<(String, Value)>,
}

/// Makes a [`TestEvent`].
pub fn event(time_ms: i64, key: &str, fields: &[(&str, Value)]) -> TestEvent {
    TestEvent {
        time_ms,
        key: key.to_owned(),
        fields: fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.clone()))
            .collect(),
    }
}

/// Runs `rule.filter` over `events` as one batch.
///
/// # Panics
/// If an event lacks a field of [`Rule::FIELDS`] or has it with another type: the host would
/// have rejected that event as bad input.
pub fn filter<R: Rule>(rule: &R, events: &[TestEvent]) -> Vec<bool> {
    let mut kinds = vec![abi::KIND_I64, abi::KIND_STR];
    kinds.extend(R::FIELDS.iter().map(|f| f.ty.column_kind()));
    let mut w = BatchWriter::default();
    w.reset(&kinds);
    for e in events {
        w.push_i64(abi::EVENT_TIME, e.time_ms);
        w.push_str(abi::EVENT_KEY, e.key.as_bytes());
        for (i, f) in R::FIELDS.iter().enumerate() {
            let value = e.fields.iter().find(|(n, _)| n == f.name).map(|(_, v)| v);
            let column = abi::EVENT_FIXED_COLUMNS + i;
            match (f.ty, value) {
                (FieldType::Str, Some(Value::Str(s))) => w.push_str(column, s.as_bytes()),
                (FieldType::Num, Some(Value::Num(n))) => w.push_f64(column, *n),
                _ => panic!(
                    "test event lacks {} field `{}`, which the rule declares",
                    f.ty.as_str(),
                    f.name
                ),
            }
        }
        w.end_row();
    }
    let mut buf = Vec::new();
    w.finish(&mut buf);
    let batch = Batch::parse(&buf).expect("a batch this module wrote");
    (0..batch.rows())
        .map(|row| {
            rule.filter(&Event {
                batch: &batch,
                fields: R::FIELDS,
                row,
            })
        })
        .collect()
}

/// Runs `rule.filter` natively over an encoded event batch (as the host writes it) into a
/// selection bitmap, exactly as the module does inside WebAssembly: for benchmarks and for
/// comparing a module with its native build.
pub fn filter_encoded<R: Rule>(rule: &R, batch: &[u8], bitmap: &mut Vec<u8>) {
    let batch = Batch::parse(batch).expect("an event batch in the ABI layout");
    abi::bitmap(&batch, bitmap, |batch, row| {
        rule.filter(&Event {
            batch,
            fields: R::FIELDS,
            row,
        })
    });
}

/// Runs `rule.alert` over window counts.
pub fn alert<R: Rule>(rule: &R, windows: &[WindowCount<'_>]) -> Vec<bool> {
    windows.iter().map(|w| rule.alert(w)).collect()
}
