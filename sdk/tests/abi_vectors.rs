//! The golden ABI vectors (`sdk/testdata/abi-v1.json`): batches as the host encodes them,
//! the values a rule must read from them, the answers of a reference decision, and
//! malformed batches every SDK must refuse. The Go and AssemblyScript SDKs test against the
//! same file; this test also checks that the host's encoder (`BatchWriter`, which the engine
//! uses) still writes exactly these bytes.
//!
//! The reference decision — the same in every SDK's test — reads every column: an event is
//! selected when its time is negative, its key equals its text, or its value is over 1; a
//! window count is an alert when the count is at least 3 or the key is empty.
//!
//! To write the file again after an intended change of the vectors (never of the ABI: that
//! is a new version), run with `RULEWATCH_BLESS=1`.

use rulewatch_sdk::abi::{self, Batch, BatchWriter, KIND_F64, KIND_I64, KIND_STR, WINDOW_KINDS};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/abi-v1.json");

/// An event batch's kinds: time, key, a `str` field `text`, a `num` field `value`.
const EVENT_KINDS: [u32; 4] = [KIND_I64, KIND_STR, KIND_STR, KIND_F64];

/// One row of an event batch.
type EventRow = (i64, &'static str, &'static str, f64);
/// One row of a window batch.
type WindowRow = (i64, i64, &'static str, i64);

fn event_batches() -> Vec<(&'static str, Vec<EventRow>)> {
    vec![
        ("two rows", vec![(5, "a", "x", 1.5), (7, "b", "b", 0.0)]),
        (
            "empty strings, multi-byte UTF-8, extreme times, negative values",
            vec![
                (-7, "", "", -0.25),
                (9_000_000_000_000, "héllo", "naïve 😀 text", 0.5),
                (i64::MIN, "k", "k", 1_048_576.5),
                (i64::MAX, "pick", "no", -3.0),
            ],
        ),
        (
            "an f64 column that starts at an odd byte, after a string column",
            vec![(1, "a", "abc", 2.0)],
        ),
        (
            "nine rows: the answer's second byte",
            (0..9)
                .map(|i| {
                    let text = if i % 3 == 0 { "same" } else { "other" };
                    (i, "same", text, f64::from(i as i32) / 4.0)
                })
                .collect(),
        ),
    ]
}

fn window_batches() -> Vec<(&'static str, Vec<WindowRow>)> {
    vec![
        (
            "three windows",
            vec![
                (0, 10_000, "u1", 3),
                (10_000, 20_000, "u2", 2),
                (20_000, 30_000, "", 1),
            ],
        ),
        (
            "a window before 1970 with a large count and a multi-byte key",
            vec![(-10_000, 0, "ü", 9_000_000_000)],
        ),
    ]
}

/// Malformed batches: (name, kinds expected, bytes). Each breaks one rule of the layout.
fn malformed() -> Vec<(&'static str, Vec<u32>, Vec<u8>)> {
    let good = encode_events(&[(1, "k", "abc", 2.0)]);
    let with = |at: usize, v: u32| {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    // Header: rows, columns; then per column kind, offset, length (column c at 8 + 12c).
    let text_offset = u32::from_le_bytes(good[8 + 24 + 4..8 + 24 + 8].try_into().unwrap());
    let kinds = EVENT_KINDS.to_vec();
    vec![
        ("truncated header", kinds.clone(), good[..6].to_vec()),
        (
            "column headers past the end",
            kinds.clone(),
            good[..20].to_vec(),
        ),
        (
            "a column outside the batch",
            kinds.clone(),
            with(8 + 4, 4000),
        ),
        (
            "a fixed column of the wrong length",
            kinds.clone(),
            with(0, 2),
        ),
        ("a column of another kind", kinds.clone(), with(8, KIND_F64)),
        ("an unknown column kind", kinds.clone(), with(8, 9)),
        (
            "string offsets that do not start at 0",
            kinds.clone(),
            with(text_offset as usize, 1),
        ),
        (
            "string offsets past the text",
            kinds.clone(),
            with(text_offset as usize + 4, 7),
        ),
        ("fewer columns than expected", kinds, with(4, 3)),
    ]
}

fn encode_events(rows: &[EventRow]) -> Vec<u8> {
    let mut w = BatchWriter::default();
    w.reset(&EVENT_KINDS);
    for &(time, key, text, value) in rows {
        w.push_i64(0, time);
        w.push_str(1, key.as_bytes());
        w.push_str(2, text.as_bytes());
        w.push_f64(3, value);
        w.end_row();
    }
    let mut out = Vec::new();
    w.finish(&mut out);
    out
}

fn encode_windows(rows: &[WindowRow]) -> Vec<u8> {
    let mut w = BatchWriter::default();
    w.reset(&WINDOW_KINDS);
    for &(start, end, key, count) in rows {
        w.push_i64(0, start);
        w.push_i64(1, end);
        w.push_str(2, key.as_bytes());
        w.push_i64(3, count);
        w.end_row();
    }
    let mut out = Vec::new();
    w.finish(&mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The reference decision's answers to an event batch, read back through the SDK.
fn select(batch: &Batch<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    abi::bitmap(batch, &mut out, |b, r| {
        b.i64(0, r) < 0 || b.str(1, r) == b.str(2, r) || b.f64(3, r) > 1.0
    });
    out
}

/// The reference decision's answers to a window batch, read back through the SDK.
fn alert(batch: &Batch<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    abi::bitmap(batch, &mut out, |b, r| {
        b.i64(3, r) >= 3 || b.str(2, r).is_empty()
    });
    out
}

/// The vectors as this SDK makes them.
fn vectors() -> Value {
    let events: Vec<Value> = event_batches()
        .into_iter()
        .map(|(name, rows)| {
            let bytes = encode_events(&rows);
            let batch = Batch::parse_as(&bytes, 4, |c| EVENT_KINDS[c]).unwrap();
            for (r, &(time, key, text, value)) in rows.iter().enumerate() {
                assert_eq!(batch.i64(0, r), time, "{name}");
                assert_eq!((batch.str(1, r), batch.str(2, r)), (key, text), "{name}");
                assert_eq!(batch.f64(3, r).to_bits(), value.to_bits(), "{name}");
            }
            let rows: Vec<Value> = (rows.iter())
                .map(|&(t, k, x, v)| json!([t.to_string(), k, x, v]))
                .collect();
            json!({"name": name, "rows": rows, "hex": hex(&bytes), "answer": hex(&select(&batch))})
        })
        .collect();
    let windows: Vec<Value> = window_batches()
        .into_iter()
        .map(|(name, rows)| {
            let bytes = encode_windows(&rows);
            let batch = Batch::parse_as(&bytes, 4, |c| WINDOW_KINDS[c]).unwrap();
            for (r, &(start, end, key, count)) in rows.iter().enumerate() {
                let read = (
                    batch.i64(0, r),
                    batch.i64(1, r),
                    batch.str(2, r),
                    batch.i64(3, r),
                );
                assert_eq!(read, (start, end, key, count), "{name}");
            }
            let rows: Vec<Value> = (rows.iter())
                .map(|&(s, e, k, c)| json!([s.to_string(), e.to_string(), k, c.to_string()]))
                .collect();
            json!({"name": name, "rows": rows, "hex": hex(&bytes), "answer": hex(&alert(&batch))})
        })
        .collect();
    let malformed: Vec<Value> = malformed()
        .into_iter()
        .map(|(name, kinds, bytes)| {
            let refused = Batch::parse_as(&bytes, kinds.len(), |c| kinds[c]);
            assert!(refused.is_err(), "{name} was read");
            json!({"name": name, "kinds": kinds, "hex": hex(&bytes)})
        })
        .collect();
    json!({
        "about": "Golden vectors of the rulewatch rule ABI, version 1 (sdk/ABI.md), written by \
                  sdk/tests/abi_vectors.rs and read by every SDK's tests. i64 values are \
                  decimal strings. Event batches: time (i64), key (str), a str field `text`, \
                  a num field `value`; answer: selected when time < 0, or key == text, or \
                  value > 1. Window batches: start, end, key, count; answer: an alert when \
                  count >= 3 or the key is empty. Answers and batches are hex. Every \
                  malformed batch must be refused when read as the kinds given.",
        "event_kinds": EVENT_KINDS,
        "window_kinds": WINDOW_KINDS,
        "events": events,
        "windows": windows,
        "malformed": malformed,
    })
}

#[test]
fn the_sdk_reads_and_writes_exactly_the_golden_vectors() {
    let made = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("RULEWATCH_BLESS").is_some() {
        std::fs::write(PATH, &made).unwrap();
    }
    let golden = std::fs::read_to_string(PATH).expect("sdk/testdata/abi-v1.json");
    assert!(
        made == golden,
        "the SDK no longer matches the golden ABI vectors in {PATH}: an encoder, a reader \
         or the vectors changed (RULEWATCH_BLESS=1 writes them again; a change of the ABI \
         itself is a new version)"
    );
}
