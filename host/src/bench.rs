//! `rulewatch bench`: the pipeline measured on generated events — events/s, MB/s, time per
//! event by stage and peak memory. The baselines it is held to, bare native JSON parses of
//! the same lines, are a separate binary built at their best (`bench/parsers.sh`): compiled
//! into this crate, under its profile, they would be handicapped.

use crate::config::OutputMode;
use crate::driver::file::drive;
use crate::loadgen::{GenConfig, Generator};
use crate::pipeline::{Pipeline, Rejects};
use crate::sink::{AlertRow, Sink};
use crate::source::Sources;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

/// The flags of `rulewatch bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    generator: GenConfig,
    /// Output mode for the rules.
    #[arg(long, value_enum, default_value = "append")]
    mode: OutputMode,
    /// Folder of rules; the built-in crash rule if not given.
    #[arg(long)]
    rules: Option<PathBuf>,
    #[command(flatten)]
    workers: crate::config::run::Workers,
}

/// A sink that only counts, for benchmarks.
struct Count(u64);

impl Sink for Count {
    fn emit(&mut self, _batch: u64, rows: &[AlertRow]) -> io::Result<()> {
        self.0 += rows.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `rulewatch bench`: prints events/s, time per event by stage, peak memory and the
/// baseline.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (rules, _) = crate::registry::load_rules(args.rules.as_deref(), false)?;
    let events = args.generator.events;
    // Generate to a file first, so that neither generation time nor the input's size count.
    let dir = std::env::temp_dir().join(format!("rulewatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("events.jsonl");
    let started = Instant::now();
    {
        let mut file = BufWriter::new(std::fs::File::create(&path)?);
        io::copy(&mut Generator::new(args.generator), &mut file)?;
        file.flush()?;
    }
    let bytes = std::fs::metadata(&path)?.len();
    eprintln!(
        "generated {events} events ({} MiB) in {:.2} s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    let sources = Sources::file(&path.display().to_string());
    let mut pipeline = Pipeline::new(sources, &rules, Some(args.mode), Rejects::default())?;
    let workers = args.workers.count();
    pipeline.set_workers(workers)?;
    let mut sink = Count(0);
    let started = Instant::now();
    let result = drive(
        &mut pipeline,
        std::fs::File::open(&path)?,
        false,
        1 << 20,
        &mut sink,
        &None,
        None,
    );
    let secs = started.elapsed().as_secs_f64();
    let peak_rss = peak_rss_kib().unwrap_or(0) >> 10;
    std::fs::remove_dir_all(&dir).ok();
    result?;
    let per_event = |d: std::time::Duration| d.as_secs_f64() * 1e9 / events as f64;
    let t = pipeline.stage_times();
    let staged = t.decode + t.filter + t.window + t.trigger;
    println!(
        "events {events}  workers {workers}  seconds {secs:.3}  events/s {:.0}  MB/s {:.0}  ns/event {:.0}  alerts {}  peak RSS {} MiB",
        events as f64 / secs,
        bytes as f64 / secs / 1e6,
        secs * 1e9 / events as f64,
        sink.0,
        peak_rss,
    );
    // With several workers, decode and filter are CPU time summed over them, and reading
    // overlaps nothing: the remainder is not reading alone.
    let read = match workers {
        1 => format!(
            "{:.0}",
            (secs * 1e9 / events as f64 - per_event(staged)).max(0.0)
        ),
        _ => "-".into(),
    };
    println!(
        "ns/event by stage (CPU time over the workers): read+split {read}  decode+project {:.0}  filter (wasm) {:.0}  window {:.0}  trigger+sink {:.0}",
        per_event(t.decode),
        per_event(t.filter),
        per_event(t.window),
        per_event(t.trigger),
    );
    let rules = pipeline.filter_times();
    if rules.len() > 1 {
        let each: Vec<String> = rules
            .iter()
            .map(|(name, t)| format!("{name} {:.0}", per_event(*t)))
            .collect();
        println!("ns/event in each rule's filter: {}", each.join("  "));
    }
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
