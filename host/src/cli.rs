//! The command line: `replay` runs rules over JSON lines, `bench` measures the pipeline on
//! generated events.

use crate::config::OutputMode;
use crate::loadgen::{GenConfig, Generator};
use crate::pipeline::{BATCH_LINES, LoadedRule, Pipeline, Rejects, Sources};
use crate::registry;
use crate::sink::records::{RecordWriter, RejectSink};
use crate::sink::{AlertRow, Sink, jsonl::JsonLines, table::Table};
use crate::source::{self, lines::LineReader};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tracing::error;

/// rulewatch: rules over streams of JSON events, in event-time windows.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run rules over JSON lines from a file or stdin and print alerts.
    Replay(ReplayArgs),
    /// Measure the pipeline on generated events: events/s and peak memory.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The Spark console layout.
    Table,
    /// One JSON object per alert.
    Jsonl,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// JSON lines to read; `-` for stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// Folder of rules (`*.toml` with their `.wasm`); the built-in crash rule if not given.
    #[arg(long, env = "RULEWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Output format [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Output mode for every rule, instead of each rule's own.
    #[arg(long, value_enum)]
    mode: Option<OutputMode>,
    /// Write lines that cannot be used here, as JSON lines with the reason and position.
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Write late events here, as JSON lines with the rule, lateness and watermark.
    #[arg(long, value_name = "FILE")]
    late: Option<PathBuf>,
    /// Lines longer than this are rejected as too_large.
    #[arg(long, default_value_t = 1 << 20)]
    max_line_bytes: usize,
}

#[derive(clap::Args)]
struct BenchArgs {
    #[command(flatten)]
    generator: GenConfig,
    /// Output mode for the rules.
    #[arg(long, value_enum, default_value = "append")]
    mode: OutputMode,
    /// Folder of rules; the built-in crash rule if not given.
    #[arg(long)]
    rules: Option<PathBuf>,
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Bench(args) => bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rulewatch: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The rules of `--rules DIR`, or the built-in crash rule. Broken rules are reported; it is an
/// error only if no rule is left.
fn load_rules(dir: Option<&Path>) -> anyhow::Result<Vec<LoadedRule>> {
    let Some(dir) = dir else {
        return Ok(vec![registry::builtin()?]);
    };
    let (rules, errors) = registry::load_dir(dir)?;
    for e in &errors {
        error!("rule rejected: {e:#}");
    }
    if rules.is_empty() {
        if errors.is_empty() {
            bail!(
                "no rules in {}: it has no *.toml rule configs",
                dir.display()
            );
        }
        bail!("no usable rule in {} (see the errors above)", dir.display());
    }
    Ok(rules)
}

fn create(path: &Path) -> anyhow::Result<Box<dyn RejectSink>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(RecordWriter::new(Box::new(BufWriter::new(file)))))
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let rules = load_rules(args.rules.as_deref())?;
    let rejects = Rejects {
        dead_letter: args.dead_letter.as_deref().map(create).transpose()?,
        late: args.late.as_deref().map(create).transpose()?,
    };
    let sources = Sources::file(&args.input.display().to_string());
    let input = source::open(&args.input)?;
    let mut pipeline = Pipeline::new(sources, &rules, args.mode, rejects)?;
    let stdout = io::stdout();
    let format = args.format.unwrap_or(if stdout.is_terminal() {
        Format::Table
    } else {
        Format::Jsonl
    });
    let out = BufWriter::new(stdout.lock());
    let mut sink: Box<dyn Sink> = match format {
        Format::Table => Box::new(Table::new(out)),
        Format::Jsonl => Box::new(JsonLines::new(out)),
    };
    let started = Instant::now();
    let result = run(&mut pipeline, input, args.max_line_bytes, sink.as_mut());
    eprintln!(
        "{}",
        crate::metrics::summary(
            pipeline.input_stats(),
            &pipeline.rule_stats(),
            started.elapsed()
        )
    );
    result
}

/// Feeds a whole stream through the pipeline, then ends it.
fn run(
    pipeline: &mut Pipeline,
    input: impl Read,
    max_line: usize,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let mut reader = LineReader::new(input, max_line);
    let mut lines = Vec::with_capacity(BATCH_LINES);
    while reader
        .next_batch(BATCH_LINES, &mut lines)
        .context("reading the input")?
    {
        pipeline.process(reader.buffer(), &lines, sink)?;
    }
    pipeline.finish(sink)
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

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let rules = load_rules(args.rules.as_deref())?;
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
    let mut sink = Count(0);
    let started = Instant::now();
    let result = run(
        &mut pipeline,
        std::fs::File::open(&path)?,
        1 << 20,
        &mut sink,
    );
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).ok();
    result?;
    println!(
        "events {events}  seconds {secs:.3}  events/s {:.0}  MB/s {:.0}  ns/event {:.0}  alerts {}  peak RSS {} MiB",
        events as f64 / secs,
        bytes as f64 / secs / 1e6,
        secs * 1e9 / events as f64,
        sink.0,
        peak_rss_kib().unwrap_or(0) >> 10,
    );
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
