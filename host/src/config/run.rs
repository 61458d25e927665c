//! `rulewatch.toml`: the settings of `rulewatch run`. Every key can be overridden by a
//! command-line flag and a `RULEWATCH_*` environment variable (see `rulewatch run --help`);
//! precedence is flag, then environment, then file, then default.

use super::OutputMode;
use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
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
pub struct EngineConfig {
    /// Threads that decode, project and filter each batch (0 or absent: one per core).
    /// Windows, watermarks and outputs stay on one thread, so results do not depend on it.
    #[serde(default)]
    pub workers: usize,
}

/// `--workers` of `replay` and `bench`.
#[derive(clap::Args)]
pub struct Workers {
    /// Threads that decode, project and filter (default: one per core); the output is the
    /// same for any number.
    #[arg(
        long,
        env = "RULEWATCH_WORKERS",
        default_value_t = 0,
        hide_default_value = true
    )]
    workers: usize,
}

impl Workers {
    /// How many: as given, or one per core.
    pub fn count(&self) -> usize {
        workers(self.workers)
    }
}

/// The worker count `workers` asks for: itself, or one per core for 0.
pub fn workers(workers: usize) -> usize {
    match workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// `[http]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` to serve the status page, `/metrics`, `/healthz` and `/readyz` on;
    /// `off` to serve nothing. Loopback by default: set `0.0.0.0:9898` in a container.
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9898".into()
}

impl HttpConfig {
    /// The address to listen on, unless switched off.
    pub fn address(&self) -> Option<&str> {
        (self.listen != "off").then_some(self.listen.as_str())
    }
}

/// `[kafka]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
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
    /// Passed to librdkafka as they are: `"security.protocol" = "SASL_SSL"`, ...
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            group_id: default_group(),
            topics: default_topics(),
            max_message_bytes: default_max_message(),
            keyed_by: default_keyed_by(),
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
pub struct RulesConfig {
    /// The rules folder; the built-in crash rule if absent.
    pub dir: Option<PathBuf>,
}

/// How alerts are printed on stdout.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Console {
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
pub struct RunOutputConfig {
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
    /// Replication factor of the topics rulewatch creates.
    #[serde(default = "one")]
    pub topic_replication: i32,
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
            topic_replication: one(),
        }
    }
}

/// `[checkpoint]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Folder of the checkpoint file.
    #[serde(default = "default_checkpoint_dir")]
    pub dir: PathBuf,
    /// How often state and offsets are checkpointed.
    #[serde(default = "default_interval", deserialize_with = "super::duration")]
    pub interval: Duration,
    /// A compacted topic to keep partition checkpoints in instead of the folder, so that
    /// a partition's state follows it to whichever instance of the group reads it (needed
    /// to run more than one instance). Created if missing.
    pub topic: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: default_checkpoint_dir(),
            interval: default_interval(),
            topic: None,
        }
    }
}

fn default_checkpoint_dir() -> PathBuf {
    "rulewatch-state".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}

/// `[watermark]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
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
pub fn kafka_options(flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    flags.iter().map(|kv| kafka_option(kv)).collect()
}

/// Splits a `--kafka-option KEY=VALUE`.
fn kafka_option(kv: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("--kafka-option {kv}: expected KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

impl RunConfig {
    /// Reads `path`; a missing file is an error only if `required`.
    pub fn load(path: &Path, required: bool) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(RunConfig::default());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
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
        assert_eq!(c.checkpoint.interval, Duration::from_millis(500));
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
}
