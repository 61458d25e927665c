//! A deterministic generator of log events in the shape the crash rule consumes: event time
//! advances at a fixed rate, some events arrive out of order, a few very late, some lines are
//! malformed (including bytes that are not UTF-8). Used by `bench`, the demo and the tests;
//! the same seed gives the same bytes.

use crate::decode::time::Rfc3339Millis;
use std::io::{self, Read};

/// Generator settings.
#[derive(Clone, Debug, clap::Args)]
pub struct GenConfig {
    /// Events (lines) to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Distinct user ids.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// Users who crash far more often than the rest (at most 1 000 000: they are held in
    /// memory).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub hot_users: u32,
    /// Events per second of event time.
    #[arg(long, default_value_t = 1000.0)]
    pub event_rate: f64,
    /// Share of events whose content mentions a crash.
    #[arg(long, default_value_t = 0.08)]
    pub crash_share: f64,
    /// Relative weights of the severities Low,Medium,High,Critical (crash events lean to
    /// High and Critical on top of this).
    #[arg(long, value_parser = parse_mix, default_value = "50,30,15,5")]
    pub severity_mix: [u32; 4],
    /// Largest disorder, in seconds, of an on-time event.
    #[arg(long, default_value_t = 3.0)]
    pub disorder: f64,
    /// Share of events that are very late.
    #[arg(long, default_value_t = 0.002)]
    pub late_share: f64,
    /// How late, in seconds, the very late events are (at least).
    #[arg(long, default_value_t = 30.0)]
    pub late_by: f64,
    /// Share of malformed lines.
    #[arg(long, default_value_t = 0.0)]
    pub bad: f64,
    /// Extra payload bytes per event (field `trace`), at most 16 MiB.
    #[arg(long, default_value_t = 0, value_parser = pad_bytes)]
    pub pad: usize,
    /// Event time of the first event, epoch ms (default 2026-01-27T22:00:00Z).
    #[arg(long, default_value_t = 1_769_551_200_000)]
    pub start_ms: i64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Parses `--pad`: 0 to 16 MiB.
fn pad_bytes(text: &str) -> Result<usize, String> {
    crate::config::parse_at_most(text, "pad", 16 << 20, "an event is built in memory whole")
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            events: 1_000_000,
            users: 1000,
            hot_users: 20,
            event_rate: 1000.0,
            crash_share: 0.08,
            severity_mix: [50, 30, 15, 5],
            disorder: 3.0,
            late_share: 0.002,
            late_by: 30.0,
            bad: 0.0,
            pad: 0,
            start_ms: 1_769_551_200_000,
            seed: 42,
        }
    }
}

const SEVERITIES: [&str; 4] = ["Low", "Medium", "High", "Critical"];

fn parse_mix(s: &str) -> Result<[u32; 4], String> {
    let parts: Vec<u32> = s
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{s}`: {e}"))?;
    match <[u32; 4]>::try_from(parts) {
        Ok(mix) if mix.iter().sum::<u32>() > 0 => Ok(mix),
        _ => Err(format!(
            "`{s}`: give four weights for Low,Medium,High,Critical, e.g. 50,30,15,5"
        )),
    }
}
const PLAIN: [&str; 9] = [
    "User logged in",
    "Page rendered in 120 ms",
    "Cache miss for profile",
    "Payment authorised",
    "Search returned 14 results",
    "Settings saved",
    "Background sync finished",
    "Image upload completed",
    "Session refreshed",
];
const CRASHES: [&str; 6] = [
    "App crash on startup",
    "CRASH in renderer thread",
    "Unexpected crash: null pointer",
    "crashed while saving draft",
    "Native crash (SIGSEGV) in libmedia",
    "Crash report uploaded",
];
/// Malformed lines, one of each kind of bad input a reader must survive.
const BAD_LINES: [&[u8]; 9] = [
    b"{not json",
    b"",
    b"[]",
    b"null",
    br#"{"timestamp": 12, "severity": "High"}"#,
    br#"{"timestamp": "yesterday", "severity": "High", "user_id": "u", "content": "crash"}"#,
    br#"{"severity": "Critical", "user_id": "user_1", "content": "crash"}"#,
    br#"{"timestamp": "2026-01-27T22:35:51Z", "severity": 5, "user_id": "user_1", "content": "crash"}"#,
    b"\xff\xfe not UTF-8",
];
const APPS: [&str; 3] = ["web", "ios", "android"];

/// Generates events as JSON lines; implements [`Read`] so it can feed any pipeline.
pub struct Generator {
    config: GenConfig,
    rng: fastrand::Rng,
    hot: Vec<u32>,
    next: u64,
    line: Vec<u8>,
    pending: std::ops::Range<usize>,
    last_user: Option<u32>,
}

impl Generator {
    /// A generator for `config`.
    pub fn new(config: GenConfig) -> Self {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let hot = (0..config.hot_users)
            .map(|_| rng.u32(0..config.users.max(1)))
            .collect();
        Generator {
            config,
            rng,
            hot,
            next: 0,
            line: Vec::with_capacity(256),
            pending: 0..0,
            last_user: None,
        }
    }

    /// Writes the next line (with its newline) into `out`; false when all were written.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        use std::io::Write;
        let c = &self.config;
        if self.next >= c.events {
            return false;
        }
        let i = self.next;
        self.next += 1;
        let r = &mut self.rng;
        if c.bad > 0.0 && r.f64() < c.bad {
            out.extend_from_slice(BAD_LINES[r.usize(0..BAD_LINES.len())]);
            out.push(b'\n');
            self.last_user = None;
            return true;
        }
        let mut t = i as f64 / c.event_rate;
        if r.f64() < c.late_share {
            t -= c.late_by + r.f64() * c.late_by;
        } else {
            t -= r.f64() * c.disorder;
        }
        let ms = c.start_ms + (t.max(0.0) * 1000.0) as i64;
        let crash = r.f64() < c.crash_share;
        let user = if crash && !self.hot.is_empty() && r.bool() {
            self.hot[r.usize(0..self.hot.len())]
        } else {
            r.u32(0..c.users.max(1))
        };
        let mix = &c.severity_mix;
        let mut pick = r.u32(0..mix.iter().sum::<u32>());
        let mut level = 0;
        while pick >= mix[level] {
            pick -= mix[level];
            level += 1;
        }
        let mut severity = SEVERITIES[level];
        if crash && r.f64() < 0.6 {
            severity = SEVERITIES[2 + r.usize(0..2)];
        }
        let content = if crash {
            CRASHES[r.usize(0..CRASHES.len())]
        } else {
            PLAIN[r.usize(0..PLAIN.len())]
        };
        let app = APPS[r.usize(0..APPS.len())];
        self.last_user = Some(1000 + user);
        write!(
            out,
            r#"{{"timestamp":"{}","severity":"{severity}","user_id":"user_{}","content":"{content}","app":"{app}","seq":{i}"#,
            Rfc3339Millis(ms),
            1000 + user,
        )
        .expect("writing to a Vec");
        if c.pad > 0 {
            out.extend_from_slice(br#","trace":""#);
            out.resize(out.len() + c.pad, b'x');
            out.push(b'"');
        }
        out.extend_from_slice(b"}\n");
        true
    }
}

impl Generator {
    /// The user id number of the last line, if it was an event.
    pub fn last_user(&self) -> Option<u32> {
        self.last_user
    }
}

/// Where `rulewatch loadgen` sends events.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadgenArgs {
    #[command(flatten)]
    pub generator: GenConfig,
    /// Events per second of wall-clock time; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Event times follow the wall clock (start now, advance at --rate), for latency tests.
    #[arg(long)]
    pub live: bool,
    /// Kafka bootstrap servers; without them, events go to --output.
    #[arg(long, env = "RULEWATCH_BROKERS")]
    pub brokers: Option<String>,
    /// Topic to produce to (created with --partitions if missing).
    #[arg(long, default_value = "logs")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Send without keys (round-robin), instead of keyed by user id.
    #[arg(long)]
    pub unkeyed: bool,
    /// A librdkafka setting, KEY=VALUE (TLS, SASL, compression.type); repeatable, as for
    /// `run` (`;` separates them in the environment variable).
    #[arg(
        long = "kafka-option",
        env = "RULEWATCH_KAFKA_OPTIONS",
        value_delimiter = ';'
    )]
    pub kafka_options: Vec<String>,
    /// File to write when no brokers are given; `-` for stdout.
    #[arg(long, default_value = "-")]
    pub output: std::path::PathBuf,
}

/// The producer to `--brokers`, with the topic created, if a broker is given.
fn connect(args: &LoadgenArgs) -> anyhow::Result<Option<crate::sink::producer::Output>> {
    let Some(brokers) = &args.brokers else {
        return Ok(None);
    };
    let mut options = crate::config::run::kafka_options(&args.kafka_options)?;
    let topics = [(args.topic.as_str(), args.partitions)];
    // Replicated as the brokers' default.replication.factor says.
    crate::sink::kafka::create_topics(brokers, &options, &topics, -1, &[])?;
    // Without keys, a random partition per message: librdkafka's default sticks to one
    // partition per batch, which leaves short runs on one or two partitions.
    if args.unkeyed {
        options.insert("sticky.partitioning.linger.ms".into(), "0".into());
    }
    Ok(Some(crate::sink::producer::Output::connect(
        brokers, &options, None,
    )?))
}

/// Runs the load generator; prints progress on a terminal and a summary to stderr.
pub fn run(mut args: LoadgenArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::{IsTerminal, Write};
    use std::time::{Duration, Instant};
    let total = args.generator.events;
    let producer = connect(&args)?;
    let mut file: Box<dyn Write> = match (&producer, args.output.to_str()) {
        (Some(_), _) | (None, Some("-")) => Box::new(std::io::BufWriter::new(std::io::stdout())),
        (None, _) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(&args.output)
                .with_context(|| format!("cannot create {}", args.output.display()))?,
        )),
    };
    let progress = std::io::stderr().is_terminal();
    // Live event times start now, once connected: setting up must not age the events.
    if args.live {
        args.generator.start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        if args.rate > 0.0 {
            args.generator.event_rate = args.rate;
        }
    }
    let mut generator = Generator::new(args.generator.clone());
    let started = Instant::now();
    let mut last_report = started;
    let mut line = Vec::with_capacity(256);
    let mut key = Vec::with_capacity(16);
    let mut sent = 0u64;
    loop {
        line.clear();
        if !generator.next_line(&mut line) {
            break;
        }
        match &producer {
            Some(p) => {
                key.clear();
                if let (false, Some(u)) = (args.unkeyed, generator.last_user()) {
                    write!(key, "user_{u}")?;
                }
                p.send(&args.topic, &key, &line[..line.len() - 1], None);
            }
            None => file.write_all(&line)?,
        }
        sent += 1;
        if args.rate > 0.0 && sent.is_multiple_of(100) {
            // An absolute schedule: pauses and oversleeping do not add up.
            let due = Duration::from_secs_f64(sent as f64 / args.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                file.flush()?;
                std::thread::sleep(wait);
            }
        }
        if progress && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprint!(
                "\rsent {sent} of {total} ({:.0} events/s)   ",
                sent as f64 / secs
            );
        }
    }
    file.flush()?;
    if let Some(p) = &producer {
        p.flush(Duration::from_secs(120))?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}sent {sent} events in {secs:.2} s ({:.0} events/s)",
        if progress { "\n" } else { "" },
        sent as f64 / secs
    );
    Ok(())
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.len() - written);
                buf[written..written + n]
                    .copy_from_slice(&self.line[self.pending.start..self.pending.start + n]);
                self.pending.start += n;
                written += n;
            }
            if written == buf.len() {
                return Ok(written);
            }
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            let more = self.next_line(&mut line);
            self.pending = 0..line.len();
            self.line = line;
            if !more {
                return Ok(written);
            }
        }
    }
}
