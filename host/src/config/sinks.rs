//! `[[output.sinks]]` in `rulewatch.toml`: where alerts are delivered besides the console
//! and the alerts topic — a webhook, or Prometheus Alertmanager. Each entry names its kind,
//! its receiver(s), which rules it takes, and how hard delivery tries before an alert goes to
//! the sink's dead-letter file. Secrets come from files or the environment, never the TOML.

use super::{MAX_TEXT, at_most, capped};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The kind of receiver.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SinkKind {
    /// One POST of the alert's JSON row per alert, `Idempotency-Key: <alert_id>`.
    Webhook,
    /// Prometheus Alertmanager's v2 API (`POST /api/v2/alerts`); every URL (an HA pair) gets
    /// every alert.
    Alertmanager,
}

/// One `[[output.sinks]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinkConfig {
    /// `webhook` or `alertmanager`.
    pub kind: SinkKind,
    /// The receiver: the webhook's URL, or an Alertmanager's base URL
    /// (`http://alertmanager:9093`).
    #[serde(default)]
    pub url: Option<String>,
    /// Several receivers, each getting every alert (Alertmanagers of an HA pair).
    #[serde(default)]
    pub urls: Vec<String>,
    /// The rules whose alerts it takes; all of them when empty.
    #[serde(default)]
    pub rules: Vec<String>,
    /// One attempt's longest wait for an answer.
    #[serde(default = "default_timeout", deserialize_with = "super::duration")]
    pub timeout: Duration,
    /// Attempts per alert before it goes to the dead letter.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time up to `max_backoff`, with jitter.
    #[serde(default = "default_backoff", deserialize_with = "super::duration")]
    pub backoff: Duration,
    /// Longest wait between attempts.
    #[serde(default = "default_max_backoff", deserialize_with = "super::duration")]
    pub max_backoff: Duration,
    /// Alerts held for delivery; when full, reading waits (backpressure), nothing is dropped.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// JSON lines of alerts that exhausted their attempts, with the last error; without it,
    /// they are only logged and counted.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Instead of a file, a Kafka topic (`run` only): the same JSON, keyed by `alert_id`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// CA certificates (PEM) that https receivers' certificates must chain to, instead of the
    /// system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// A file holding a bearer token (`Authorization: Bearer …`).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic auth: the user name …
    #[serde(default)]
    pub username: Option<String>,
    /// … and a file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Headers sent as they are.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values come from environment variables: header → variable.
    #[serde(default)]
    pub headers_from_env: BTreeMap<String, String>,
    /// Webhook: the body, JSON with `{{field}}` placeholders (`{{rule}}`, `{{key}}`,
    /// `{{count}}`, `{{window_start}}`, …); the alert's JSON row when absent.
    #[serde(default)]
    pub template: Option<String>,
    /// Alertmanager: the `summary` annotation, text with the same placeholders.
    #[serde(default)]
    pub summary: Option<String>,
    /// Alertmanager: labels added to every alert.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Alertmanager: how long an alert stays firing after its window ends, unless renewed.
    #[serde(
        default = "default_resolve_after",
        deserialize_with = "super::duration"
    )]
    pub resolve_after: Duration,
    /// Alertmanager: how often alerts still firing are sent again (Alertmanager keeps them
    /// in memory only), as Prometheus' resend delay.
    #[serde(default = "default_resend", deserialize_with = "super::duration")]
    pub resend_interval: Duration,
    /// Alertmanager: the status page linked from every alert (`generatorURL`).
    #[serde(default)]
    pub link: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_attempts() -> u32 {
    6
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_queue() -> usize {
    10_000
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}
fn default_resolve_after() -> Duration {
    Duration::from_secs(300)
}

/// Most sinks in one configuration.
const MAX_SINKS: usize = 32;

impl SinkConfig {
    /// Every receiver URL, `url` first.
    pub(crate) fn receivers(&self) -> Vec<&str> {
        self.url
            .iter()
            .chain(&self.urls)
            .map(String::as_str)
            .collect()
    }

    /// Refuses what cannot work, naming the setting (`[[output.sinks]] #n`).
    pub(crate) fn validate(&self, n: usize) -> anyhow::Result<()> {
        let at = format!("[[output.sinks]] #{n} ({:?})", self.kind).to_lowercase();
        let receivers = self.receivers();
        if receivers.is_empty() {
            bail!("{at}: give its receiver as url = \"http://…\" (or urls = [\"…\", …])");
        }
        for url in receivers {
            capped(&format!("{at} url"), url, MAX_TEXT)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!(
                    "{at}: url `{}` is not an http:// or https:// URL",
                    crate::text::shown(url)
                );
            }
        }
        if self.resend_interval.is_zero() {
            bail!("{at}: resend_interval = 0 would send without pause: give 1s or more");
        }
        if self.max_attempts == 0 {
            bail!("{at}: max_attempts = 0 would never deliver: give 1 or more");
        }
        at_most(
            &format!("{at} max_attempts"),
            self.max_attempts.into(),
            1000,
            "retries",
        )?;
        if self.queue == 0 {
            bail!("{at}: queue = 0 holds nothing: give 1 or more");
        }
        at_most(
            &format!("{at} queue"),
            self.queue as u64,
            1_000_000,
            "alerts held in memory for delivery",
        )?;
        if let Some(t) = &self.template {
            crate::sink::template::Template::parse(t, true)
                .map_err(|e| anyhow::anyhow!("{at} template: {e}"))?;
        }
        if let Some(t) = &self.summary {
            crate::sink::template::Template::parse(t, false)
                .map_err(|e| anyhow::anyhow!("{at} summary: {e}"))?;
        }
        if self.dead_letter.is_some() && self.dead_letter_topic.is_some() {
            bail!("{at}: give dead_letter (a file) or dead_letter_topic, not both");
        }
        if let Some(topic) = &self.dead_letter_topic {
            capped(&format!("{at} dead_letter_topic"), topic, super::MAX_NAME)?;
        }
        if self.username.is_some() != self.password_file.is_some() {
            bail!("{at}: basic auth needs both username and password_file");
        }
        for variable in self.headers_from_env.values() {
            std::env::var(variable).with_context(|| {
                format!(
                    "{at}: headers_from_env names the environment variable {}, which is not set",
                    crate::text::shown(variable)
                )
            })?;
        }
        Ok(())
    }
}

/// Refuses a sink list that cannot work ([`SinkConfig::validate`] for each).
pub(crate) fn validate(sinks: &[SinkConfig]) -> anyhow::Result<()> {
    at_most(
        "[[output.sinks]]",
        sinks.len() as u64,
        MAX_SINKS as u64,
        "sinks in one configuration",
    )?;
    sinks
        .iter()
        .enumerate()
        .try_for_each(|(i, s)| s.validate(i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<SinkConfig> {
        let s: SinkConfig = toml::from_str(text)?;
        s.validate(1)?;
        Ok(s)
    }

    #[test]
    fn defaults_and_refusals_name_the_setting() {
        let s = parse("kind = \"webhook\"\nurl = \"http://h/x\"").unwrap();
        assert_eq!((s.max_attempts, s.queue), (6, 10_000));
        assert_eq!(s.receivers(), ["http://h/x"]);
        let am = "kind = \"alertmanager\"\nurls = [\"http://a:9093\", \"http://b:9093\"]";
        assert_eq!(parse(am).unwrap().receivers().len(), 2);
        for (text, says) in [
            ("kind = \"webhook\"", "give its receiver"),
            ("kind = \"webhook\"\nurl = \"ftp://h\"", "not an http"),
            (
                "kind = \"webhook\"\nurl = \"http://h\"\nmax_attempts = 0",
                "max_attempts",
            ),
            ("kind = \"webhook\"\nurl = \"http://h\"\nqueue = 0", "queue"),
            (
                "kind = \"webhook\"\nurl = \"http://h\"\nusername = \"u\"",
                "password_file",
            ),
            ("kind = \"pager\"\nurl = \"http://h\"", "unknown variant"),
            (
                "kind = \"webhook\"\nurl = \"http://h\"\nretries = 3",
                "unknown field",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{text}: {e:#}");
        }
    }
}
