//! Micro-benchmarks of the pipeline's stages on generated events (`cargo bench -p rulewatch`):
//!
//! * decode: the host's projecting JSON scanner (time, key and the rule's two fields of each
//!   line into a batch) against serde_json deserializing the same lines into a borrowed struct;
//! * rule: one filter call on a batch of 4096 events through wasmtime (copy in, call, bitmap
//!   out) against the same crash rule compiled natively over the same encoded batch;
//! * window: counting 4096 selected events into their windows;
//! * watermark: observing 4096 event times from 4 sources.
//!
//! Each reports time per batch of 4096 lines (criterion's throughput gives elements/s).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rulewatch::decode::TimeFormat;
use rulewatch::decode::{Decoder, Projection, serde_baseline};
use rulewatch::loadgen::{GenConfig, Generator};
use rulewatch::rules::{RuleModule, builtin::CRASH_WASM};
use rulewatch::window::Windows;
use rulewatch_sdk::abi::{Batch, BatchWriter, FieldType};
use rulewatch_sdk::{Rule, testing};
use std::hint::black_box;
use std::time::Duration;

const ROWS: usize = 4096;

/// One batch of generated lines.
fn lines() -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GenConfig::default());
    let mut lines = Vec::with_capacity(ROWS);
    for _ in 0..ROWS {
        let mut line = Vec::new();
        generator.next_line(&mut line);
        line.pop();
        lines.push(line);
    }
    lines
}

/// The crash rule's projection (time, key, severity, content), registered with `decoder`.
fn crash_projection(decoder: &mut Decoder) -> Projection {
    let fields = [
        ("severity".into(), FieldType::Str),
        ("content".into(), FieldType::Str),
    ];
    Projection::new(decoder, "timestamp", TimeFormat::Auto, "user_id", &fields)
}

/// The lines decoded and projected for the crash rule: the batch encoding the host sends.
fn encoded(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut decoder = Decoder::default();
    let mut projection = crash_projection(&mut decoder);
    let mut batch = BatchWriter::default();
    batch.reset(projection.kinds());
    for line in lines {
        let rec = decoder.decode(line).unwrap();
        projection.project(&rec, &mut batch).unwrap();
    }
    let mut out = Vec::new();
    batch.finish(&mut out);
    out
}

fn decode(c: &mut Criterion) {
    let lines = lines();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("rulewatch scanner + projection", |b| {
        let mut decoder = Decoder::default();
        let mut projection = crash_projection(&mut decoder);
        let mut batch = BatchWriter::default();
        b.iter(|| {
            batch.reset(projection.kinds());
            for line in &lines {
                let rec = decoder.decode(line).unwrap();
                black_box(projection.project(&rec, &mut batch).unwrap());
            }
        })
    });
    g.bench_function("serde_json typed parse", |b| {
        b.iter(|| {
            for line in &lines {
                assert!(black_box(serde_baseline(line)));
            }
        })
    });
    g.finish();
}

fn rule(c: &mut Criterion) {
    let batch = encoded(&lines());
    let params = br#"{"keyword":"crash","severities":["High","Critical"],"threshold":2}"#;
    let module = RuleModule::compile("crash", CRASH_WASM, &Default::default()).unwrap();
    let mut wasm = module
        .instantiate(params, 64 << 20, Duration::from_secs(1))
        .unwrap();
    let native = crash::Crash::init(serde_json::from_slice(params).unwrap()).unwrap();
    let mut bitmap = Vec::new();
    testing::filter_encoded(&native, &batch, &mut bitmap);
    assert_eq!(wasm.filter(&batch, ROWS).unwrap(), bitmap, "same answers");

    let mut g = c.benchmark_group("rule filter batch");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("wasm (wasmtime)", |b| {
        b.iter(|| black_box(wasm.filter(&batch, ROWS).unwrap().len()))
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            testing::filter_encoded(&native, &batch, &mut bitmap);
            black_box(bitmap.len())
        })
    });
    g.finish();
}

fn window(c: &mut Criterion) {
    let bytes = encoded(&lines());
    let batch = Batch::parse(&bytes).unwrap();
    let events: Vec<(i64, &str)> = (0..ROWS)
        .map(|r| (batch.i64(0, r), batch.str(1, r)))
        .collect();
    let mut g = c.benchmark_group("window");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("count 4096 events", |b| {
        b.iter_batched_ref(
            || Windows::new(Duration::from_secs(10), Duration::from_secs(10)),
            |w| {
                for &(t, key) in &events {
                    black_box(w.observe(0, t, key, true, rulewatch::window::Pos::default()));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("count 4096 events from 4 partitions", |b| {
        b.iter_batched_ref(
            || Windows::new(Duration::from_secs(10), Duration::from_secs(10)),
            |w| {
                for (i, &(t, key)) in events.iter().enumerate() {
                    black_box(w.observe(i % 4, t, key, true, rulewatch::window::Pos::default()));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, decode, rule, window);
criterion_main!(benches);
