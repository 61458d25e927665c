//! The command line: its flags, and `replay` (rules over JSON lines from a file or stdin)
//! and `check` (a rules folder validated); the other commands live in their own modules.

use crate::config::OutputMode;
use crate::config::run::{Console, RunConfig};
use crate::driver::{file::drive, history, serve_status};
use crate::pipeline::{Pipeline, Rejects};
use crate::registry;
use crate::sink::records::{RecordWriter, RejectSink};
use crate::source::kafka::history::{History, Span};
use crate::source::{self, Sources};
use crate::text::one_line;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{self, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// rulewatch: rules over streams of JSON events, in event-time windows.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr; levels come from RUST_LOG (e.g. `info`, `rulewatch=debug`).
    #[arg(
        long,
        global = true,
        env = "RULEWATCH_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    log_format: LogFormat,
}

/// How logs are written.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One readable line per event (coloured on a terminal).
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run rules over JSON lines from a file or stdin and print alerts.
    Replay(ReplayArgs),
    /// Consume Kafka and run rules continuously, with checkpoints (see rulewatch.toml).
    Run(RunArgs),
    /// Measure the pipeline on generated events: events/s and peak memory.
    Bench(crate::bench::BenchArgs),
    /// Generate log events to Kafka or a file, at a rate or as fast as possible.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Print the log lines an alert was counted from (its evidence: `[output] evidence = N`
    /// in the rule's TOML), from the file or the Kafka topics they are in.
    Evidence(crate::evidence::EvidenceArgs),
    /// Validate a rules folder as `run` would load it; exits non-zero on any error.
    Check {
        /// The rules folder.
        dir: PathBuf,
        /// A rulewatch.toml whose `[sandbox]` ceilings apply (the defaults otherwise).
        #[arg(long, env = "RULEWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Scaffold a rule: logic, TOML, unit tests, sample events and expectations.
    New {
        /// The rule's name, e.g. `failed-logins`.
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The language of its logic.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::author::lang::Lang,
        /// The SDK: a folder (Rust, Go, TypeScript) or a crates.io version (Rust) (default:
        /// the SDK of this source tree if present, else, for Rust, this version).
        #[arg(long)]
        sdk: Option<String>,
    },
    /// Compile a rule to WebAssembly and put the module beside its TOML; the language is
    /// recognised from the folder (Cargo.toml, go.mod, package.json or Makefile).
    Build {
        /// The rule's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a rule's real module over sample events and compare its alerts with expectations;
    /// exits 1 on a difference.
    Test(crate::author::test::TestArgs),
    /// Compile a module read on stdin to this engine's machine code on stdout, within the
    /// bounds the environment gives (the engine runs this in a child process of itself).
    #[command(name = "compile-module", hide = true)]
    CompileModule,
    /// Ask a running engine's /healthz; exits 0 when healthy (for container health checks).
    Health {
        /// The URL to ask.
        #[arg(
            long,
            env = "RULEWATCH_HEALTH_URL",
            default_value = "http://127.0.0.1:9898/healthz"
        )]
        url: String,
    },
}

/// Flags of `run`; each overrides the same key of the config file.
#[derive(clap::Args)]
struct RunArgs {
    /// The config file.
    #[arg(long, env = "RULEWATCH_CONFIG", default_value = "rulewatch.toml")]
    config: PathBuf,
    /// kafka.brokers: bootstrap servers.
    #[arg(long, env = "RULEWATCH_BROKERS")]
    brokers: Option<String>,
    /// kafka.group_id.
    #[arg(long, env = "RULEWATCH_GROUP_ID")]
    group_id: Option<String>,
    /// kafka.topics, comma-separated.
    #[arg(long, env = "RULEWATCH_TOPICS", value_delimiter = ',')]
    topics: Option<Vec<String>>,
    /// kafka.keyed_by: the event field messages are keyed by (`auto` to check, `none`).
    #[arg(long, env = "RULEWATCH_KEYED_BY")]
    keyed_by: Option<String>,
    /// kafka.guarantee: at_least_once (alerts again after a crash, same ids) or exactly_once
    /// (one Kafka transaction per checkpoint; needs --checkpoint-topic).
    #[arg(long, env = "RULEWATCH_GUARANTEE", value_enum)]
    guarantee: Option<crate::config::run::Guarantee>,
    /// kafka.options: a librdkafka setting, KEY=VALUE; repeatable (`;` separates them in
    /// the environment variable, as values may hold commas). TLS and SASL, e.g.
    /// security.protocol=SASL_SSL, sasl.mechanisms=SCRAM-SHA-512 (or PLAIN, SCRAM-SHA-256),
    /// sasl.username=U, sasl.password=P, ssl.ca.location=CA.pem (default: the system's
    /// CAs); compression.type=zstd (or gzip, snappy, lz4) for the topics rulewatch writes.
    #[arg(
        long = "kafka-option",
        env = "RULEWATCH_KAFKA_OPTIONS",
        value_delimiter = ';'
    )]
    kafka_options: Vec<String>,
    /// rules.dir: the rules folder (the built-in crash rule if none).
    #[arg(long, env = "RULEWATCH_RULES")]
    rules: Option<PathBuf>,
    /// output.console.
    #[arg(long, env = "RULEWATCH_CONSOLE", value_enum)]
    console: Option<crate::config::run::Console>,
    /// output.mode, for every rule.
    #[arg(long, env = "RULEWATCH_MODE", value_enum)]
    mode: Option<OutputMode>,
    /// output.alerts_topic.
    #[arg(long, env = "RULEWATCH_ALERTS_TOPIC")]
    alerts_topic: Option<String>,
    /// output.dead_letter_topic.
    #[arg(long, env = "RULEWATCH_DEAD_LETTER_TOPIC")]
    dead_letter_topic: Option<String>,
    /// output.late_topic.
    #[arg(long, env = "RULEWATCH_LATE_TOPIC")]
    late_topic: Option<String>,
    /// checkpoint.dir.
    #[arg(long, env = "RULEWATCH_CHECKPOINT_DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// checkpoint.topic: keep checkpoints in this compacted topic (for several instances).
    #[arg(long, env = "RULEWATCH_CHECKPOINT_TOPIC")]
    checkpoint_topic: Option<String>,
    /// checkpoint.interval, e.g. 5s.
    #[arg(long, env = "RULEWATCH_CHECKPOINT_INTERVAL", value_parser = crate::config::parse_duration)]
    checkpoint_interval: Option<std::time::Duration>,
    /// watermark.idle_timeout, e.g. 30s.
    #[arg(long, env = "RULEWATCH_IDLE_TIMEOUT", value_parser = crate::config::parse_duration)]
    idle_timeout: Option<std::time::Duration>,
    /// watermark.quiet_close, e.g. 1m.
    #[arg(long, env = "RULEWATCH_QUIET_CLOSE", value_parser = crate::config::parse_duration)]
    quiet_close: Option<std::time::Duration>,
    /// http.listen: where to serve the status page, /metrics, /healthz and /readyz
    /// (`host:port`, or `off`).
    #[arg(long, env = "RULEWATCH_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// engine.workers: threads that decode, project and filter (default: one per core).
    #[arg(long, env = "RULEWATCH_WORKERS", value_parser = crate::config::run::worker_count)]
    workers: Option<usize>,
    /// Start with empty windows even if a checkpoint exists (it is replaced at the next
    /// checkpoint). Needed to get past a damaged checkpoint.
    #[arg(long)]
    fresh_start: bool,
}

impl RunArgs {
    /// The config file with these flags applied over it.
    fn config(&self) -> anyhow::Result<RunConfig> {
        let explicit = std::env::args().any(|a| a.starts_with("--config"))
            || std::env::var_os("RULEWATCH_CONFIG").is_some();
        let mut c = RunConfig::load(&self.config, explicit)?;
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                slot.clone_from(v);
            }
        };
        if let Some(v) = &self.brokers {
            c.kafka.brokers.clone_from(v);
        }
        if let Some(v) = &self.group_id {
            c.kafka.group_id.clone_from(v);
        }
        if let Some(v) = &self.topics {
            c.kafka.topics.clone_from(v);
        }
        if let Some(v) = &self.keyed_by {
            c.kafka.keyed_by.clone_from(v);
        }
        if let Some(v) = self.guarantee {
            c.kafka.guarantee = v;
        }
        (c.kafka.options).extend(crate::config::run::kafka_options(&self.kafka_options)?);
        if self.rules.is_some() {
            c.rules.dir.clone_from(&self.rules);
        }
        if let Some(v) = self.console {
            c.output.console = v;
        }
        if self.mode.is_some() {
            c.output.mode = self.mode;
        }
        set(&mut c.output.alerts_topic, &self.alerts_topic);
        set(&mut c.output.dead_letter_topic, &self.dead_letter_topic);
        set(&mut c.output.late_topic, &self.late_topic);
        if let Some(v) = &self.checkpoint_dir {
            c.checkpoint.dir.clone_from(v);
        }
        set(&mut c.checkpoint.topic, &self.checkpoint_topic);
        if let Some(v) = self.checkpoint_interval {
            c.checkpoint.interval = Some(v);
        }
        if let Some(v) = self.idle_timeout {
            c.watermark.idle_timeout = v;
        }
        if self.quiet_close.is_some() {
            c.watermark.quiet_close = self.quiet_close;
        }
        if let Some(v) = self.workers {
            c.engine.workers = v;
        }
        c.http = c.http.with_env()?;
        if let Some(v) = &self.http_listen {
            c.http.listen.clone_from(v);
        }
        c.validate()?;
        Ok(c)
    }
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// JSON lines to read; `-` for stdin.
    #[arg(default_value = "-")]
    input: PathBuf,
    /// Backtest: read the history of Kafka topics (--topics) from these bootstrap servers
    /// instead of a file, each partition with its own watermark as `run` counts it, without
    /// joining a consumer group or committing anything.
    #[arg(long, requires = "topics")]
    brokers: Option<String>,
    /// The topics to backtest over, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "brokers")]
    topics: Vec<String>,
    /// Backtest from the first record stamped at or after this time: RFC 3339,
    /// "YYYY-MM-DD HH:MM:SS" (UTC), epoch milliseconds, or a duration ago (`7d-ago`).
    /// Default: each partition's start.
    #[arg(long, requires = "brokers", value_parser = parse_time)]
    from: Option<i64>,
    /// Backtest up to (not including) the first record stamped at or after this time (same
    /// forms as --from). Default: each partition's end offset as of the start.
    #[arg(long, requires = "brokers", value_parser = parse_time)]
    to: Option<i64>,
    /// A librdkafka setting for the backtest's consumer, KEY=VALUE (TLS, SASL: as `run`'s
    /// --kafka-option); repeatable.
    #[arg(long = "kafka-option", requires = "brokers")]
    kafka_options: Vec<String>,
    /// The event field the topics' messages are keyed by, as `run`'s kafka.keyed_by: `auto`
    /// samples them; rules grouping by another field count each key across partitions, as
    /// `run` does through its repartition topics.
    #[arg(long, requires = "brokers", default_value = "auto")]
    keyed_by: String,
    /// Folder of rules (`*.toml` with their `.wasm`); the built-in crash rule if not given.
    #[arg(long, env = "RULEWATCH_RULES")]
    rules: Option<PathBuf>,
    /// Output format [default: table on a terminal, jsonl otherwise].
    #[arg(long, value_enum)]
    format: Option<Console>,
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
    #[arg(long, default_value_t = 1 << 20, value_parser = crate::config::run::line_bytes)]
    max_line_bytes: usize,
    /// Serve the status page, /metrics and /healthz on this `host:port` while replaying.
    #[arg(long, env = "RULEWATCH_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// A rulewatch.toml whose `[sandbox]` ceilings apply (the defaults otherwise).
    #[arg(long, env = "RULEWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    workers: crate::config::run::Workers,
}

/// Runs the command line; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The compiler's child process logs nothing: its stderr is its answer's reason.
    if matches!(cli.command, Command::CompileModule) {
        return crate::rules::compile::child_main(crate::rules::sandbox::engine());
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Human => logs.with_ansi(io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            crate::metrics::JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            logs.json().flatten_event(true).init()
        }
    }
    let health = matches!(cli.command, Command::Health { .. });
    // A module is compiled in a child process, bounded in memory and time.
    if let Ok(exe) = std::env::current_exe() {
        crate::rules::compile::compile_in_children(exe);
    }
    let result = match cli.command {
        Command::Replay(args) => sandbox_from(args.config.as_deref()).and_then(|c| replay(args, c)),
        Command::Run(args) => args.config().and_then(|c| {
            crate::config::sandbox::set_ceilings(c.sandbox.clone())?;
            let (rules, changes) = registry::load_rules(c.rules.dir.as_deref(), true)?;
            crate::driver::kafka::run(&c, &rules, changes, args.fresh_start)
        }),
        Command::Check { dir, config } => sandbox_from(config.as_deref()).and_then(|_| check(&dir)),
        Command::Health { url } => crate::http::check(&url),
        Command::Evidence(args) => crate::evidence::run(args),
        Command::New {
            name,
            dir,
            lang,
            sdk,
        } => crate::author::new::run(&name, dir, lang, sdk),
        Command::Build { dir } => crate::author::build::run(&dir).map(drop),
        Command::Test(args) => match crate::author::test::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => {
                eprintln!("rulewatch: the rule's output differs from the expectations");
                return ExitCode::from(1);
            }
            Err(e) => Err(e),
        },
        Command::Bench(args) => crate::bench::run(args),
        Command::Loadgen(args) => crate::loadgen::run(args),
        Command::CompileModule => unreachable!("answered above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Container runtimes read 1 as unhealthy (2 is reserved).
        Err(e) if health => {
            eprintln!("rulewatch: unhealthy: {}", one_line(&format!("{e:#}")));
            ExitCode::from(1)
        }
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors may quote outside text (a file's, a key's): never raw on the terminal.
            eprintln!("rulewatch: error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// Sets the sandbox ceilings from the `[sandbox]` of a rulewatch.toml, if one is given;
/// the whole file (the defaults without one), read once.
fn sandbox_from(config: Option<&Path>) -> anyhow::Result<RunConfig> {
    let Some(path) = config else {
        return Ok(RunConfig::default());
    };
    let config = RunConfig::load(path, true)?;
    config.validate()?;
    crate::config::sandbox::set_ceilings(config.sandbox.clone())?;
    Ok(config)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `rulewatch check DIR`: loads every rule as `run` would, and reports.
fn check(dir: &Path) -> anyhow::Result<()> {
    let folder = registry::load_dir(dir)?;
    for (rule, (path, _)) in folder.rules.iter().zip(&folder.paths) {
        let fields: Vec<String> = rule
            .module
            .fields()
            .iter()
            .map(|(n, t)| format!("{n}: {}", t.as_str()))
            .collect();
        println!(
            "ok     {}: rule {} (module sha256 {}; reads {})",
            crate::text::shown_path(path),
            rule.name,
            rule.module.sha256(),
            fields.join(", ")
        );
    }
    for e in &folder.errors {
        println!("error  {}", one_line(&format!("{e:#}")));
    }
    match (folder.errors.len(), folder.rules.len()) {
        (0, 0) => bail!(
            "no rules in {}: it has no *.toml rule configs",
            crate::text::shown_path(dir)
        ),
        (0, _) => Ok(()),
        (n, _) => bail!(
            "{n} rule(s) in {} do not load",
            crate::text::shown_path(dir)
        ),
    }
}

fn create(path: &Path) -> anyhow::Result<Box<dyn RejectSink>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(RecordWriter::new(Box::new(BufWriter::new(file)))))
}

/// A time given on the command line: RFC 3339, "YYYY-MM-DD HH:MM:SS" (UTC), epoch
/// milliseconds, or a duration before now (`7d-ago`, `2h ago`); epoch milliseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Some(ago) = text
        .strip_suffix("-ago")
        .or_else(|| text.strip_suffix(" ago"))
    {
        let d = humantime::parse_duration(ago.trim()).map_err(|e| format!("`{ago}`: {e}"))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        return Ok(now.unwrap_or_default().saturating_sub(d).as_millis() as i64);
    }
    let raw = if text.bytes().all(|b| b.is_ascii_digit()) {
        crate::decode::time::Raw::Num(text.as_bytes())
    } else {
        crate::decode::time::Raw::Str(text.as_bytes())
    };
    crate::decode::time::TimeParser::new(crate::decode::TimeFormat::Auto)
        .parse(raw)
        .map_err(|e| {
            format!(
                "`{text}`: {e}; expected RFC 3339 (2026-01-27T22:35:51Z), \
                 \"2026-01-27 22:35:51\" (UTC), epoch milliseconds or a duration ago (7d-ago)"
            )
        })
}

/// `rulewatch replay` with `config`, the rulewatch.toml of `--config` (for `[http]`).
fn replay(args: ReplayArgs, config: RunConfig) -> anyhow::Result<()> {
    let (rules, changes) = registry::load_rules(args.rules.as_deref(), true)?;
    let rejects = Rejects {
        dead_letter: args.dead_letter.as_deref().map(create).transpose()?,
        late: args.late.as_deref().map(create).transpose()?,
    };
    if args.brokers.is_some() && args.input.as_os_str() != "-" {
        anyhow::bail!(
            "give either a file to replay or --brokers and --topics to backtest, not both"
        );
    }
    let sources = match args.brokers {
        Some(_) => Sources::partitions(),
        None => Sources::file(&args.input.display().to_string()),
    };
    let mut pipeline = Pipeline::new(sources, &rules, args.mode, rejects)?;
    pipeline.set_workers(args.workers.count())?;
    let console = args.format.unwrap_or(if io::stdout().is_terminal() {
        Console::Table
    } else {
        Console::Jsonl
    });
    let mut sink = crate::sink::build(console, None, None, &config.output.sinks)?;
    let kind = if args.brokers.is_some() {
        "kafka"
    } else {
        "file"
    };
    // `[http]` of --config (TLS, credentials, keys), served only with --http-listen.
    let mut http = config.http.with_env()?;
    http.listen = args.http_listen.clone().unwrap_or_else(|| "off".into());
    let mut status = serve_status(&http, kind)?;
    let started = Instant::now();
    let result = if let Some(brokers) = &args.brokers {
        let options = crate::config::run::kafka_options(&args.kafka_options)?;
        let span = Span {
            from: args.from,
            to: args.to,
        };
        let kafka = crate::config::run::KafkaConfig {
            brokers: brokers.clone(),
            group_id: "backtest".into(),
            topics: args.topics.clone(),
            keyed_by: args.keyed_by.clone(),
            options: options.clone(),
            ..Default::default()
        };
        kafka.validate()?;
        let mut history =
            History::connect(brokers, &args.topics, &options, span, args.max_line_bytes)?;
        let inputs = history.names().count();
        let loopback = history::repartition(&mut pipeline, &kafka, &rules, inputs)?;
        let status = status.as_mut();
        let loopback = loopback.as_deref();
        history::drive(
            &mut pipeline,
            &mut history,
            loopback,
            &mut sink,
            &changes,
            status,
        )
    } else {
        let input = source::open(&args.input)?;
        // stdin may be a pipe whose producer pauses; a named file is read from disk.
        let may_wait = args.input.as_os_str() == "-";
        drive(
            &mut pipeline,
            input,
            may_wait,
            args.max_line_bytes,
            &mut sink,
            &changes,
            status.as_mut(),
        )
    };
    crate::metrics::print_summary(&pipeline.summary(started.elapsed()));
    result
}
