//! A rule's TOML file: which module, how events are windowed and keyed, how output looks,
//! the sandbox limits and the params handed to the module's `init`.
//!
//! Unknown keys are errors, so a typo is reported (with its line) instead of ignored.

pub(crate) mod http;
pub(crate) mod run;
pub(crate) mod sandbox;
pub(crate) mod sinks;

use crate::decode::TimeFormat;
use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a shadow rule's name ends: it is the shadow of the rule named by the rest.
pub(crate) const SHADOW_SUFFIX: &str = " (shadow)";

/// Whether a rule's alerts are published or compared with another rule's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Its alerts are published.
    Primary,
    /// It runs beside rule `of` on the same events; its alerts are compared with that
    /// rule's and never published. Its name is `of` with [`SHADOW_SUFFIX`].
    Shadow {
        /// The rule it shadows.
        of: String,
    },
}

impl Role {
    /// Whether it is a shadow.
    pub fn is_shadow(&self) -> bool {
        matches!(self, Role::Shadow { .. })
    }
}

/// A rule's configuration, as written in its `.toml` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name in output and metrics; defaults to the file's stem.
    pub name: Option<String>,
    /// Run this as a shadow of the rule named `name`: on the same events, beside it, with its
    /// alerts compared to the rule's and the differences reported, never published.
    #[serde(default)]
    pub shadow: bool,
    /// The `.wasm` module, relative to the TOML file.
    pub module: PathBuf,
    /// Windowing.
    pub window: WindowConfig,
    /// Event time.
    #[serde(default)]
    pub time: TimeConfig,
    /// Output.
    #[serde(default)]
    pub output: OutputConfig,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Handed to the module's `init` as JSON.
    #[serde(default)]
    pub params: toml::Table,
}

/// `[window]`: event-time windows per key.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `tumbling` (the default) or `hopping`.
    #[serde(default)]
    pub kind: WindowKind,
    /// Top-level field whose value groups events.
    pub key: String,
    /// Window length, e.g. `"10s"`.
    #[serde(deserialize_with = "duration")]
    pub size: Duration,
    /// Hopping windows only: how far apart window starts are, e.g. `"1m"` for 5-minute
    /// windows every minute. At most `size`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub slide: Option<Duration>,
    /// Watermark delay: how far behind the largest event time seen an event may arrive and
    /// still be counted, e.g. `"10s"`.
    #[serde(default, deserialize_with = "duration")]
    pub delay: Duration,
}

/// Window kinds.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows aligned to the Unix epoch.
    #[default]
    Tumbling,
    /// Fixed-size windows starting every `slide`: an event counts in each that covers it.
    Hopping,
}

impl WindowConfig {
    /// Distance between window starts: `slide` for hopping windows, `size` for tumbling.
    pub fn slide(&self) -> Duration {
        self.slide.unwrap_or(self.size)
    }
}

/// `[time]`: where event time comes from.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Top-level field holding the event time.
    #[serde(default = "default_time_field")]
    pub field: String,
    /// Its format.
    #[serde(default)]
    pub format: TimeFormat,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            field: default_time_field(),
            format: TimeFormat::Auto,
        }
    }
}

fn default_time_field() -> String {
    "timestamp".into()
}

/// When rows are emitted.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// One row per alerting (window, key) when its window closes, with the final count.
    #[default]
    Append,
    /// A row as soon as a (window, key) alerts, and again on each later change.
    Update,
    /// On each trigger, every alerting row still held.
    Complete,
}

/// `[output]`: what rows look like.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// When rows are emitted.
    #[serde(default)]
    pub mode: OutputMode,
    /// Column title of the key in table output; defaults to the key field's name.
    pub key_column: Option<String>,
    /// Column title of the count in table output; defaults to `count`.
    pub count_column: Option<String>,
    /// After a key alerts, its alerts in other windows starting within this long after that
    /// window's end are suppressed (event time), e.g. `"5m"`. Rows of the same window still
    /// come (in `update` mode, as the count grows).
    #[serde(default, deserialize_with = "optional_duration")]
    pub cooldown: Option<Duration>,
    /// What happens to the open windows when the rule's file is deleted from a watched folder.
    #[serde(default)]
    pub on_delete: OnDelete,
    /// How many of the events counted for an alert it carries the input positions of (the
    /// smallest positions), at most [`MAX_EVIDENCE`]; 0, the default, keeps none.
    #[serde(default)]
    pub evidence: usize,
}

/// Most evidence positions an alert may carry.
pub(crate) const MAX_EVIDENCE: usize = 16;

/// What a deleted rule does with its open windows.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// Close them and emit their alerts, as at the end of input.
    #[default]
    Flush,
    /// Discard them.
    Drop,
}

/// `[limits]`: the sandbox around the module.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest linear memory the module may grow to, e.g. `"64MiB"`.
    #[serde(default = "default_memory", deserialize_with = "byte_size")]
    pub memory: u64,
    /// Longest a module may run for one batch before it is stopped, e.g. `"1s"`.
    #[serde(default = "default_time", deserialize_with = "duration")]
    pub time_per_batch: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory: default_memory(),
            time_per_batch: default_time(),
        }
    }
}

fn default_memory() -> u64 {
    64 << 20
}

fn default_time() -> Duration {
    Duration::from_secs(1)
}

/// Longest field, key or column name a config may give, in bytes (as long as a field name
/// a module may declare).
pub(crate) const MAX_NAME: usize = 256;
/// Longest other configured text (a path, a broker list, a librdkafka setting), in bytes.
pub(crate) const MAX_TEXT: usize = 4096;
/// Longest rule name, in bytes.
pub(crate) const MAX_RULE_NAME: usize = 128;

/// Refuses `value`, the setting `setting`, when it is longer than `max` bytes.
pub(crate) fn capped(setting: &str, value: &str, max: usize) -> anyhow::Result<()> {
    if value.len() > max {
        bail!(
            "{setting} is {} bytes long, over the limit of {max} bytes: give a shorter one",
            value.len()
        );
    }
    Ok(())
}

/// Refuses `value`, the number `setting`, when it is over `max`; `why` says what the
/// ceiling protects.
pub(crate) fn at_most(setting: &str, value: u64, max: u64, why: &str) -> anyhow::Result<()> {
    if value > max {
        bail!("{setting} = {value} is over the ceiling of {max} ({why})");
    }
    Ok(())
}

/// Parses `text`, the number given for the command-line setting `setting`, refusing it over
/// `max` ([`at_most`]).
pub(crate) fn parse_at_most(
    text: &str,
    setting: &str,
    max: u64,
    why: &str,
) -> Result<usize, String> {
    let n: u64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a whole number"))?;
    at_most(setting, n, max, why).map_err(|e| e.to_string())?;
    usize::try_from(n).map_err(|e| e.to_string())
}

/// Whether `name` can name a rule: 1 to [`MAX_RULE_NAME`] bytes of letters, digits, spaces
/// (not first or last) and `_ - . : + @`. A rule's name appears in logs, metrics labels,
/// alert ids and file names, so it holds nothing that could break one of them.
pub(crate) fn check_rule_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || " _-.:+@".contains(c);
    if name.is_empty()
        || name.len() > MAX_RULE_NAME
        || name.starts_with(' ')
        || name.ends_with(' ')
        || !name.chars().all(allowed)
    {
        return Err(format!(
            "`{}` is not a rule name: a rule name is 1 to {MAX_RULE_NAME} bytes of letters, \
             digits, spaces (not first or last) and `_ - . : + @`",
            crate::text::shown(name)
        ));
    }
    Ok(())
}

/// The longest duration any setting takes: 100 years. Every window, delay and timeout
/// stays far from the ends of the event-time range, so no sum of them can overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses a duration as written in configs and flags: `10s`, `500ms`, `1m 30s`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration `{s}`: {e} (write it like \"10s\", \"500ms\" or \"1m 30s\")")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration `{s}` is too long: at most 100 years (36500d)"
        ));
    }
    Ok(d)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let text = match Size::deserialize(d)? {
        Size::Bytes(n) => return Ok(n),
        Size::Text(t) => t,
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => 0,
    };
    n.parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size `{text}` (write it like \"64MiB\", \"512KiB\" or a number of \
                 bytes, below 16 EiB)"
            ))
        })
}

impl RuleConfig {
    /// Parses a rule's TOML text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let config: RuleConfig =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        config.validate().with_context(|| origin.to_owned())?;
        Ok(config)
    }

    /// Reads and parses a rule's TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read rule config {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    fn validate(&self) -> anyhow::Result<()> {
        let w = &self.window;
        if w.size.as_millis() == 0 || !w.size.subsec_nanos().is_multiple_of(1_000_000) {
            bail!("window.size must be a positive whole number of milliseconds");
        }
        if !w.delay.subsec_nanos().is_multiple_of(1_000_000) {
            bail!("window.delay must be a whole number of milliseconds");
        }
        match (w.kind, w.slide) {
            (WindowKind::Tumbling, Some(_)) => bail!(
                "window.slide is only for kind = \"hopping\" (tumbling windows follow each \
                 other without overlap)"
            ),
            (WindowKind::Hopping, None) => {
                bail!("window.kind = \"hopping\" needs window.slide, e.g. slide = \"1m\"")
            }
            (WindowKind::Hopping, Some(s))
                if s.is_zero() || s > w.size || !s.subsec_nanos().is_multiple_of(1_000_000) =>
            {
                bail!(
                    "window.slide must be a positive whole number of milliseconds, at most \
                     window.size"
                )
            }
            _ => {}
        }
        if w.key.is_empty() || self.time.field.is_empty() {
            bail!("window.key and time.field must name a top-level field");
        }
        let windows = w.size.as_millis().div_ceil(w.slide().as_millis().max(1));
        let ceilings = sandbox::ceilings();
        if windows > u128::from(ceilings.max_windows_per_event) {
            bail!(
                "window.size / window.slide = {windows} windows per event, over the engine's \
                 ceiling of {} ([sandbox] max_windows_per_event in rulewatch.toml): use a \
                 longer slide",
                ceilings.max_windows_per_event
            );
        }
        if self.output.evidence > MAX_EVIDENCE {
            bail!(
                "output.evidence = {} is over {MAX_EVIDENCE}: an alert carries the positions of \
                 at most {MAX_EVIDENCE} of its events",
                self.output.evidence
            );
        }
        if let Some(c) = self.output.cooldown
            && !c.subsec_nanos().is_multiple_of(1_000_000)
        {
            bail!("output.cooldown must be a whole number of milliseconds");
        }
        if self.limits.memory < 1 << 16 {
            bail!("limits.memory must be at least 64KiB (one WebAssembly page)");
        }
        if self.limits.memory > ceilings.max_memory {
            bail!(
                "limits.memory = {} MiB is over the engine's ceiling of {} MiB ([sandbox] \
                 max_memory in rulewatch.toml): ask for less, or have the operator raise it",
                self.limits.memory >> 20,
                ceilings.max_memory >> 20
            );
        }
        if self.limits.time_per_batch.is_zero() {
            bail!("limits.time_per_batch must be positive");
        }
        if self.limits.time_per_batch > ceilings.max_time_per_batch {
            bail!(
                "limits.time_per_batch = {} is over the engine's ceiling of {} ([sandbox] \
                 max_time_per_batch in rulewatch.toml): ask for less, or have the operator \
                 raise it",
                humantime::format_duration(self.limits.time_per_batch),
                humantime::format_duration(ceilings.max_time_per_batch)
            );
        }
        if let Some(name) = &self.name {
            check_rule_name(name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
        }
        capped("window.key", &w.key, MAX_NAME)?;
        capped("time.field", &self.time.field, MAX_NAME)?;
        let columns = [
            ("output.key_column", &self.output.key_column),
            ("output.count_column", &self.output.count_column),
        ];
        for (setting, column) in columns {
            capped(setting, column.as_deref().unwrap_or(""), MAX_NAME)?;
        }
        capped(
            "module",
            &self.module.as_os_str().to_string_lossy(),
            MAX_TEXT,
        )?;
        Ok(())
    }

    /// The rule's name (`name`, or the file stem of `path`; a shadow's with
    /// [`SHADOW_SUFFIX`]) and its role.
    pub fn name_or(&self, path: &Path) -> (String, Role) {
        let name = self.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "rule".into())
        });
        if self.shadow {
            (format!("{name}{SHADOW_SUFFIX}"), Role::Shadow { of: name })
        } else {
            (name, Role::Primary)
        }
    }

    /// The params as the JSON the module's `init` receives.
    pub fn params_json(&self) -> Vec<u8> {
        self.params_value().to_string().into_bytes()
    }

    /// `[params]` as a JSON value: each TOML value as the JSON value of the same kind, and
    /// datetimes as their RFC 3339 text.
    pub fn params_value(&self) -> serde_json::Value {
        fn json(v: &toml::Value) -> serde_json::Value {
            use serde_json::Value as J;
            match v {
                toml::Value::String(s) => J::String(s.clone()),
                toml::Value::Integer(i) => J::from(*i),
                toml::Value::Float(f) => J::from(*f),
                toml::Value::Boolean(b) => J::Bool(*b),
                toml::Value::Datetime(d) => J::String(d.to_string()),
                toml::Value::Array(a) => J::Array(a.iter().map(json).collect()),
                toml::Value::Table(t) => {
                    J::Object(t.iter().map(|(k, v)| (k.clone(), json(v))).collect())
                }
            }
        }
        json(&toml::Value::Table(self.params.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRASH: &str = include_str!("../../../rules/crash/crash.toml");

    #[test]
    fn params_become_json_of_the_same_kinds() {
        let toml = "module = \"m.wasm\"\n[window]\nkey = \"k\"\nsize = \"1s\"\n[params]\n\
                    s = \"x\"\ni = 2\nf = 0.5\nb = true\na = [1, \"y\"]\nt = { u = 1 }\n\
                    d = 1979-05-27T07:32:00Z\n";
        let c = RuleConfig::parse(toml, "test.toml").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&c.params_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"s": "x", "i": 2, "f": 0.5, "b": true, "a": [1, "y"],
                               "t": {"u": 1}, "d": "1979-05-27T07:32:00Z"})
        );
    }

    #[test]
    fn the_crash_rule_config_parses() {
        let c = RuleConfig::parse(CRASH, "crash.toml").unwrap();
        assert_eq!(c.window.size, Duration::from_secs(10));
        assert_eq!(c.window.delay, Duration::from_secs(10));
        assert_eq!(c.window.key, "user_id");
        assert_eq!(c.output.mode, OutputMode::Append);
        assert_eq!(c.output.count_column.as_deref(), Some("crash_count"));
        assert_eq!(c.limits, LimitsConfig::default());
        let params: serde_json::Value = serde_json::from_slice(&c.params_json()).unwrap();
        assert_eq!(params["threshold"], 2);
        assert_eq!(params["severities"][1], "Critical");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let typo = CRASH.replace("delay =", "dealy =");
        let e = RuleConfig::parse(&typo, "rules/crash.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("rules/crash.toml: TOML parse error at line"),
            "{e}"
        );
        assert!(e.contains("unknown field `dealy`"), "{e}");

        let bad = CRASH.replace("size = \"10s\"", "size = \"10 parsecs\"");
        let e = RuleConfig::parse(&bad, "c.toml").unwrap_err().to_string();
        assert!(e.contains("invalid duration `10 parsecs`"), "{e}");

        let bad = format!("{CRASH}\n[limits]\nmemory = \"lots\"\n");
        let e = RuleConfig::parse(&bad, "c.toml").unwrap_err().to_string();
        assert!(e.contains("invalid size `lots`"), "{e}");

        let bad = CRASH.replace("size = \"10s\"", "size = \"0s\"");
        let e = format!("{:#}", RuleConfig::parse(&bad, "c.toml").unwrap_err());
        assert!(e.contains("window.size must be a positive"), "{e}");
    }

    #[test]
    fn sizes_parse() {
        let with = |m: &str| {
            let t = format!("{CRASH}\n[limits]\nmemory = {m}\n");
            RuleConfig::parse(&t, "c").map(|c| c.limits.memory)
        };
        assert_eq!(with("\"16MiB\"").unwrap(), 16 << 20);
        assert_eq!(with("\"512 KiB\"").unwrap(), 512 << 10);
        assert_eq!(with("1048576").unwrap(), 1 << 20);
        assert!(with("\"1KiB\"").is_err());
    }
}
