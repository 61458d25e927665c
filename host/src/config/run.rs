//! `rulewatch.toml`: the settings of `rulewatch run`. Every key can be overridden by a
//! command-line flag and a `RULEWATCH_*` environment variable (see `rulewatch run --help`);
//! precedence is flag, then environment, then file, then default.

use super::OutputMode;
pub(crate) use super::http::HttpConfig;
use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunConfig {
    /// Where events come from.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Which rules run.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Where alerts and rejected records go.
    #[serde(default)]
    pub output: RunOutputConfig,
    /// Where state is kept.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Watermark policy across partitions.
    #[serde(default)]
    pub watermark: WatermarkConfig,
    /// The status page, metrics and health endpoint.
    #[serde(default)]
    pub http: HttpConfig,
    /// The engine-wide ceilings every rule lives within.
    #[serde(default)]
    pub sandbox: super::sandbox::SandboxConfig,
    /// How the engine uses the machine.
    #[serde(default)]
    pub engine: EngineConfig,
}

/// `[engine]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngineConfig {
    /// Threads that decode, project and filter each batch (0 or absent: one per core).
    /// Windows, watermarks and outputs stay on one thread, so results do not depend on it.
    #[serde(default)]
    pub workers: usize,
}

/// Most workers: more threads than a large machine's cores only contend, and each holds an
/// instance of every rule.
pub(crate) const MAX_WORKERS: usize = 256;

/// Longest line or message `--max-line-bytes` and `[kafka] max_message_bytes` may allow.
pub(crate) const MAX_LINE_BYTES: usize = 256 << 20;

/// Largest rulewatch.toml read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `--workers` of `replay` and `bench`.
#[derive(clap::Args)]
pub(crate) struct Workers {
    /// Threads that decode, project and filter (default: one per core); the output is the
    /// same for any number.
    #[arg(
        long,
        env = "RULEWATCH_WORKERS",
        default_value_t = 0,
        hide_default_value = true,
        value_parser = worker_count
    )]
    workers: usize,
}

/// Parses a worker count (`--workers`): 0 (one per core) to [`MAX_WORKERS`].
pub(crate) fn worker_count(text: &str) -> Result<usize, String> {
    let why = "threads beyond the cores only contend; 0 means one per core";
    crate::config::parse_at_most(text, "workers", MAX_WORKERS as u64, why)
}

/// Parses a line length (`--max-line-bytes`): 1 to [`MAX_LINE_BYTES`].
pub(crate) fn line_bytes(text: &str) -> Result<usize, String> {
    let why = "a line is held in memory whole";
    match crate::config::parse_at_most(text, "max-line-bytes", MAX_LINE_BYTES as u64, why)? {
        0 => Err("a line of at most 0 bytes holds nothing: give a positive size".into()),
        n => Ok(n),
    }
}

/// Refuses `name` (the setting `setting`) unless it can name a Kafka topic: 1 to 249 of
/// `a-z A-Z 0-9 . _ -`, as Kafka requires.
pub(crate) fn check_topic(setting: &str, name: &str) -> anyhow::Result<()> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if name.is_empty() || name.len() > 249 || !name.chars().all(ok) || name == "." || name == ".." {
        anyhow::bail!(
            "{setting} `{}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_` \
             and `-`)",
            crate::text::shown(name)
        );
    }
    Ok(())
}

impl Workers {
    /// How many: as given, or one per core.
    pub(crate) fn count(&self) -> usize {
        workers(self.workers)
    }
}

/// The worker count `workers` asks for: itself, or one per core for 0.
pub(crate) fn workers(workers: usize) -> usize {
    match workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// `[kafka]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct KafkaConfig {
    /// `bootstrap.servers`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group id; instances with the same id share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Topics to consume.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Messages larger than this are rejected as too_large.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// The event field the producers key messages by (so all events of a key are in one
    /// partition): rules grouping by it count per input partition, the others repartition
    /// through an internal topic. `auto` checks the latest messages at start (and
    /// repartitions when it cannot tell); `none`: not keyed by any field.
    #[serde(default = "default_keyed_by")]
    pub keyed_by: String,
    /// What a consumer of the topics rulewatch writes sees after a crash or a hand-over.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Passed to librdkafka as they are: `"security.protocol" = "SASL_SSL"`, ...
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The longest checkpoint interval under `exactly_once`: half the transaction timeout.
const MAX_TRANSACTION: Duration = Duration::from_secs(5);

/// `[kafka] guarantee`: what is redone after a crash, a hand-over or a zombie, and who sees it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub(crate) enum Guarantee {
    /// Records are written as they are made; after a crash the work since the last
    /// checkpoint is redone and its records written again, alerts with the same ids
    /// (exactly once deduplicated by `alert_id`). The default: alerts are visible at once,
    /// any checkpoint store and any broker serve it.
    #[default]
    AtLeastOnce,
    /// Alerts, rejects, repartitioned events, checkpoint records and the consumed offsets
    /// are committed in one Kafka transaction per checkpoint: a `read_committed` consumer
    /// sees each record once. Needs `[checkpoint] topic` and a broker with transactions.
    ExactlyOnce,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            group_id: default_group(),
            topics: default_topics(),
            max_message_bytes: default_max_message(),
            keyed_by: default_keyed_by(),
            guarantee: Guarantee::default(),
            options: BTreeMap::new(),
        }
    }
}

fn default_brokers() -> String {
    "localhost:9092".into()
}
fn default_group() -> String {
    "rulewatch".into()
}
fn default_topics() -> Vec<String> {
    vec!["logs".into()]
}
fn default_keyed_by() -> String {
    "auto".into()
}
fn default_max_message() -> usize {
    1 << 20
}

/// `[rules]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesConfig {
    /// The rules folder; the built-in crash rule if absent.
    pub dir: Option<PathBuf>,
}

/// How alerts are printed on stdout.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Console {
    /// The Spark console layout.
    #[default]
    Table,
    /// One JSON object per alert.
    Jsonl,
    /// Nothing on stdout.
    None,
}

/// `[output]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunOutputConfig {
    /// Alerts on stdout.
    #[serde(default)]
    pub console: Console,
    /// Output mode for every rule, instead of each rule's own.
    pub mode: Option<OutputMode>,
    /// Topic for alerts (keyed by alert id).
    pub alerts_topic: Option<String>,
    /// Topic for records that cannot be used.
    pub dead_letter_topic: Option<String>,
    /// Topic for late events.
    pub late_topic: Option<String>,
    /// Partitions of the topics rulewatch creates.
    #[serde(default = "one")]
    pub topic_partitions: i32,
    /// Replication factor of the topics rulewatch creates; -1 (the default): the brokers'
    /// `default.replication.factor`, as Kafka Streams does since 3.0, so that on a cluster
    /// the alerts, checkpoints and repartitioned events are as durable as its other topics.
    #[serde(default = "broker_default")]
    pub topic_replication: i32,
    /// Webhooks and Alertmanagers alerts are delivered to (`[[output.sinks]]`).
    #[serde(default)]
    pub sinks: Vec<super::sinks::SinkConfig>,
}

/// -1: whatever the brokers' defaults say (Kafka 2.4 and later).
fn broker_default() -> i32 {
    -1
}

fn one() -> i32 {
    1
}

impl Default for RunOutputConfig {
    fn default() -> Self {
        RunOutputConfig {
            console: Console::default(),
            mode: None,
            alerts_topic: None,
            dead_letter_topic: None,
            late_topic: None,
            topic_partitions: one(),
            topic_replication: broker_default(),
            sinks: Vec::new(),
        }
    }
}

/// `[checkpoint]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointConfig {
    /// Folder of the checkpoint file.
    #[serde(default = "default_checkpoint_dir")]
    pub dir: PathBuf,
    /// How often state and offsets are checkpointed (under `exactly_once`: how often the
    /// transaction commits); the default depends on the guarantee (see
    /// [`RunConfig::checkpoint_interval`]).
    #[serde(default, deserialize_with = "super::optional_duration")]
    pub interval: Option<Duration>,
    /// A compacted topic to keep partition checkpoints in instead of the folder, so that
    /// a partition's state follows it to whichever instance of the group reads it (needed
    /// to run more than one instance). Created if missing.
    pub topic: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: default_checkpoint_dir(),
            interval: None,
            topic: None,
        }
    }
}

fn default_checkpoint_dir() -> PathBuf {
    "rulewatch-state".into()
}

/// `[watermark]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatermarkConfig {
    /// A partition without data for this long is idle: its watermark follows the slowest
    /// active partition's, so that its last windows close (and, for repartitioned rules, it
    /// stops holding back the internal partitions).
    #[serde(default = "default_idle", deserialize_with = "super::duration")]
    pub idle_timeout: Duration,
    /// When no partition has had data for this long, the watermark moves past every open
    /// window so that their alerts come out; events for them arriving later are late.
    #[serde(default, deserialize_with = "super::optional_duration")]
    pub quiet_close: Option<Duration>,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig {
            idle_timeout: default_idle(),
            quiet_close: None,
        }
    }
}

fn default_idle() -> Duration {
    Duration::from_secs(30)
}

/// The librdkafka settings of `--kafka-option KEY=VALUE` flags, by key.
pub(crate) fn kafka_options(flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    flags.iter().map(|kv| kafka_option(kv)).collect()
}

/// Splits a `--kafka-option KEY=VALUE`.
fn kafka_option(kv: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("--kafka-option {kv}: expected KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

impl KafkaConfig {
    /// Refuses settings past their ceilings, naming each (see [`RunConfig::validate`]).
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        use crate::config::{MAX_NAME, MAX_TEXT, at_most, capped};
        at_most(
            "[kafka] max_message_bytes",
            self.max_message_bytes as u64,
            MAX_LINE_BYTES as u64,
            "a message is held in memory whole",
        )?;
        capped("[kafka] brokers", &self.brokers, MAX_TEXT)?;
        capped("[kafka] group_id", &self.group_id, 255)?;
        capped("[kafka] keyed_by", &self.keyed_by, MAX_NAME)?;
        let topics = self.topics.len() as u64;
        at_most("the number of [kafka] topics", topics, 1000, "one consumer")?;
        for topic in &self.topics {
            check_topic("[kafka] topics:", topic)?;
        }
        for (key, value) in &self.options {
            capped("a [kafka] options key", key, MAX_NAME)?;
            capped(&format!("[kafka] options.{key}"), value, MAX_TEXT)?;
        }
        Ok(())
    }
}

impl RunConfig {
    /// Refuses settings past their ceilings, naming each: counts, sizes and strings (a
    /// typo of a few zeros, or a generated value, must not become a thread per element or a
    /// megabyte per record).
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        use crate::config::{MAX_TEXT, at_most, capped};
        at_most(
            "[engine] workers",
            self.engine.workers as u64,
            MAX_WORKERS as u64,
            "threads beyond the cores only contend; 0 means one per core",
        )?;
        self.kafka.validate()?;
        let o = &self.output;
        let topics = [
            ("[output] alerts_topic", &o.alerts_topic),
            ("[output] dead_letter_topic", &o.dead_letter_topic),
            ("[output] late_topic", &o.late_topic),
            ("[checkpoint] topic", &self.checkpoint.topic),
        ];
        for (setting, topic) in topics {
            if let Some(t) = topic {
                check_topic(setting, t)?;
            }
        }
        at_most(
            "[output] topic_partitions",
            o.topic_partitions.max(0) as u64,
            10_000,
            "partitions of a topic rulewatch creates",
        )?;
        at_most(
            "[output] topic_replication",
            o.topic_replication.max(0) as u64,
            100,
            "replicas of a topic rulewatch creates",
        )?;
        if o.topic_replication == 0 || o.topic_replication < -1 {
            anyhow::bail!(
                "[output] topic_replication = {}: give a replication factor of 1 or more, or \
                 -1 for the brokers' default.replication.factor",
                o.topic_replication
            );
        }
        super::sinks::validate(&o.sinks)?;
        self.http.validate()?;
        if self.kafka.guarantee == Guarantee::ExactlyOnce && self.checkpoint.topic.is_none() {
            anyhow::bail!(
                "[kafka] guarantee = \"exactly_once\" needs [checkpoint] topic: a checkpoint \
                 file cannot join the Kafka transaction that commits the alerts and offsets it \
                 covers; set [checkpoint] topic (--checkpoint-topic), or guarantee = \
                 \"at_least_once\" to keep checkpoints in {}",
                crate::text::shown_path(&self.checkpoint.dir)
            );
        }
        if self.kafka.guarantee == Guarantee::ExactlyOnce {
            let interval = self.checkpoint_interval();
            if interval > MAX_TRANSACTION {
                anyhow::bail!(
                    "[checkpoint] interval = {}: under guarantee = \"exactly_once\" each \
                     checkpoint commits the open transaction, which the broker aborts after \
                     10 s; give {} or less (the default, 100ms, keeps alerts prompt)",
                    humantime::format_duration(interval),
                    humantime::format_duration(MAX_TRANSACTION)
                );
            }
        }
        let dirs = [("[checkpoint] dir", &self.checkpoint.dir)];
        for (setting, dir) in dirs
            .into_iter()
            .chain(self.rules.dir.iter().map(|d| ("[rules] dir", d)))
        {
            capped(setting, &dir.to_string_lossy(), MAX_TEXT)?;
        }
        Ok(())
    }

    /// How often checkpoints are taken: `[checkpoint] interval`, else 5 s, or 100 ms under
    /// `exactly_once` (each is a transaction commit, and alerts are visible to
    /// `read_committed` consumers only then — Kafka Streams' default under EOS too).
    pub(crate) fn checkpoint_interval(&self) -> Duration {
        self.checkpoint
            .interval
            .unwrap_or(match self.kafka.guarantee {
                Guarantee::AtLeastOnce => Duration::from_secs(5),
                Guarantee::ExactlyOnce => Duration::from_millis(100),
            })
    }

    /// Reads `path`; a missing file is an error only if `required`.
    pub(crate) fn load(path: &Path, required: bool) -> anyhow::Result<Self> {
        // A config is small; anything larger is not one (and is not read whole).
        let read = std::fs::File::open(path).and_then(|f| {
            use std::io::Read;
            let mut text = String::new();
            f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
            Ok(text)
        });
        let text = match read {
            Ok(t) if t.len() as u64 > MAX_CONFIG_BYTES => anyhow::bail!(
                "{}: larger than {} KiB, which no rulewatch.toml is",
                crate::text::shown_path(path),
                MAX_CONFIG_BYTES >> 10
            ),
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(RunConfig::default());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {}", crate::text::shown_path(path)));
            }
        };
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", crate::text::shown_path(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_rejects_typos() {
        let c: RunConfig = toml::from_str(
            r#"
            [kafka]
            brokers = "k:9092"
            options = { "security.protocol" = "SASL_SSL" }
            [checkpoint]
            interval = "500ms"
            [watermark]
            quiet_close = "30s"
            [sandbox]
            max_memory = "128MiB"
            "#,
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "k:9092");
        assert_eq!(c.kafka.topics, ["logs"]);
        assert_eq!(c.kafka.options["security.protocol"], "SASL_SSL");
        assert_eq!(c.checkpoint_interval(), Duration::from_millis(500));
        assert_eq!(c.watermark.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.watermark.quiet_close, Some(Duration::from_secs(30)));
        assert_eq!(c.sandbox.max_memory, 128 << 20);
        assert_eq!(c.sandbox.max_fields, 256);
        // Sections left out and a missing file mean the same defaults.
        assert_eq!(c.output, RunOutputConfig::default());
        assert_eq!(
            toml::from_str::<RunConfig>("").unwrap(),
            RunConfig::default()
        );
        assert_eq!(RunConfig::default().output.topic_partitions, 1);
        let e = toml::from_str::<RunConfig>("[kafka]\nbroker = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `broker`"), "{e}");
    }

    #[test]
    fn exactly_once_commits_often_and_needs_the_checkpoint_topic() {
        let c = RunConfig::default();
        assert_eq!(c.kafka.guarantee, Guarantee::AtLeastOnce);
        assert_eq!(c.checkpoint_interval(), Duration::from_secs(5));
        let text = "[kafka]\nguarantee = \"exactly_once\"";
        let mut c: RunConfig = toml::from_str(text).unwrap();
        assert_eq!(c.checkpoint_interval(), Duration::from_millis(100));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("[checkpoint] topic"), "{e}");
        c.checkpoint.topic = Some("cp".into());
        c.validate().unwrap();
        c.checkpoint.interval = Some(Duration::from_secs(30));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("[checkpoint] interval = 30s"), "{e}");
        let e = toml::from_str::<RunConfig>("[kafka]\nguarantee = \"exactly-once\"");
        assert!(e.unwrap_err().to_string().contains("exactly_once"));
    }

    #[test]
    fn topics_are_replicated_as_the_brokers_say_unless_told() {
        assert_eq!(RunConfig::default().output.topic_replication, -1);
        RunConfig::default().validate().unwrap();
        for (replication, ok) in [(3, true), (1, true), (0, false), (-2, false), (101, false)] {
            let text = format!("[output]\ntopic_replication = {replication}");
            let c: RunConfig = toml::from_str(&text).unwrap();
            assert_eq!(c.validate().is_ok(), ok, "{replication}");
            if let Err(e) = c.validate() {
                assert!(e.to_string().contains("[output] topic_replication"), "{e}");
            }
        }
    }
}
