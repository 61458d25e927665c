//! The `[[output.sinks]]` sinks: a webhook (one POST of the alert's JSON row per alert, with
//! `Idempotency-Key: <alert_id>`) and Prometheus Alertmanager (its v2 API: every alert of an
//! attempt in one `POST /api/v2/alerts`, to every Alertmanager listed). Both deliver through
//! [`super::deliver`]: off the applying thread, retried, dead-lettered, and settled before a
//! checkpoint covers them.

use super::deliver::{Attempt, DeadLetter, Delivery, Item, Mark, Post, Retry};
use super::firing::Firing;
use super::producer::Output;
use super::receiver::Receiver;
use super::template::Template;
use super::{AlertRow, Sink};
use crate::config::sinks::{SinkConfig, SinkKind};
use crate::decode::time::format_rfc3339;
use std::io;
use std::time::Duration;

/// A configured sink: which rules it takes, how it formats an alert, and one delivery per
/// receiver.
pub(crate) struct HttpSink {
    kind: SinkKind,
    /// The webhook's body, or the Alertmanager summary; the defaults when absent.
    template: Option<Template>,
    rules: Vec<String>,
    labels: Vec<(String, String)>,
    resolve_after: Duration,
    link: Option<String>,
    deliveries: Vec<Delivery>,
    /// Alertmanager: what is firing, to send again.
    firing: Option<Firing>,
}

/// Longest wait, at shutdown and at the end of a replay, for queued alerts to be settled.
const DRAIN: Duration = Duration::from_secs(300);

impl HttpSink {
    /// The sink `config` describes, its delivery threads started; `output`, the shared
    /// producer (`run`), carries its dead letters when they go to a topic.
    pub(crate) fn build(config: &SinkConfig, output: Option<&Output>) -> anyhow::Result<HttpSink> {
        let retry = Retry {
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            max_backoff: config.max_backoff,
        };
        let mut deliveries = Vec::new();
        for url in config.receivers() {
            let dead_letter = dead_letter(config, output)?;
            let name = format!("{} {}", kind_name(config.kind), crate::text::shown(url));
            let delivery = match config.kind {
                SinkKind::Webhook => {
                    let post = Webhook(Receiver::new(config, url)?);
                    Delivery::start(name, post, config.queue, retry.clone(), dead_letter)
                }
                SinkKind::Alertmanager => {
                    let api = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
                    let post = Alertmanager(Receiver::new(config, &api)?);
                    Delivery::start(name, post, config.queue, retry.clone(), dead_letter)
                }
            };
            deliveries.push(delivery);
        }
        let template = match config.kind {
            SinkKind::Webhook => config.template.as_deref().map(|t| Template::parse(t, true)),
            SinkKind::Alertmanager => config.summary.as_deref().map(|t| Template::parse(t, false)),
        };
        Ok(HttpSink {
            kind: config.kind,
            template: template.transpose().map_err(anyhow::Error::msg)?,
            rules: config.rules.clone(),
            labels: config.labels.clone().into_iter().collect(),
            resolve_after: config.resolve_after,
            link: config.link.clone(),
            deliveries,
            firing: (config.kind == SinkKind::Alertmanager)
                .then(|| Firing::new(config.resend_interval)),
        })
    }

    /// The body its receivers get for `row`, whose id is `id`.
    fn body(&self, row: &AlertRow, id: &str) -> Vec<u8> {
        match self.kind {
            SinkKind::Webhook => match &self.template {
                Some(t) => t.fill(row).into_bytes(),
                None => super::jsonl::alert_json(row).into_bytes(),
            },
            SinkKind::Alertmanager => self.alertmanager_alert(row, id).to_string().into_bytes(),
        }
    }

    /// An alert of Alertmanager's v2 API: labels identify it as `alert_id` does (rule, key,
    /// window start; plus the sink's labels), so that each window's alert is one alert there
    /// and a later row of the same window (update mode) renews it; annotations describe it.
    /// It fires from the window's start until `resolve_after` past its end, unless renewed.
    fn alertmanager_alert(&self, r: &AlertRow, id: &str) -> serde_json::Value {
        let mut labels = serde_json::Map::new();
        labels.insert("alertname".into(), r.rule.name.clone().into());
        labels.insert(label_name(&r.rule.key_column), r.key.clone().into());
        labels.insert("window_start".into(), format_rfc3339(r.start).into());
        for (k, v) in &self.labels {
            labels.insert(label_name(k), v.clone().into());
        }
        let window = format!("{} – {}", format_rfc3339(r.start), format_rfc3339(r.end));
        let mut annotations = serde_json::Map::new();
        let summary = match &self.template {
            Some(t) => t.fill(r),
            None => format!(
                "{}: {} {} counted {} in {window}",
                r.rule.name, r.rule.key_column, r.key, r.count
            ),
        };
        annotations.insert("summary".into(), summary.into());
        annotations.insert("count".into(), r.count.to_string().into());
        annotations.insert("window_start".into(), format_rfc3339(r.start).into());
        annotations.insert("window_end".into(), format_rfc3339(r.end).into());
        annotations.insert("alert_id".into(), id.into());
        if !r.evidence.is_empty() {
            let evidence = serde_json::to_string(&r.evidence).expect("positions serialise");
            annotations.insert("evidence".into(), evidence.into());
        }
        let ends = self.ends(r);
        let mut alert = serde_json::json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": format_rfc3339(r.start),
            "endsAt": format_rfc3339(ends),
        });
        if let Some(link) = &self.link {
            alert["generatorURL"] = link.clone().into();
        }
        alert
    }

    /// When an alert stops firing at Alertmanager unless renewed: `resolve_after` past its
    /// window's end (epoch ms).
    fn ends(&self, r: &AlertRow) -> i64 {
        r.end.saturating_add(self.resolve_after.as_millis() as i64)
    }

    /// Queues `item` for every receiver.
    fn push(&mut self, item: &Item) {
        for d in &mut self.deliveries {
            d.push(item.clone());
        }
    }
}

impl Sink for HttpSink {
    fn emit(&mut self, _batch: u64, rows: &[AlertRow]) -> io::Result<()> {
        for row in rows {
            if !self.rules.is_empty() && !self.rules.contains(&row.rule.name) {
                continue;
            }
            let id = row.id();
            let item = Item {
                body: self.body(row, &id),
                id,
            };
            let ends = self.ends(row);
            if let Some(f) = &mut self.firing {
                f.fired(item.id.clone(), ends, item.body.clone());
            }
            self.push(&item);
        }
        Ok(())
    }

    /// Sends what is still firing again when that is due. Delivery itself is confirmed at
    /// checkpoints and at the end ([`Sink::drain`]).
    fn flush(&mut self) -> io::Result<()> {
        if let Some(f) = &mut self.firing {
            let now = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
                .map_or(0, |d| d.as_millis() as i64);
            for item in f.due(now) {
                self.push(&item);
            }
        }
        Ok(())
    }

    /// Where each receiver's queue stands, for a checkpoint.
    fn marks(&self) -> Vec<Mark> {
        self.deliveries.iter().map(Delivery::mark).collect()
    }

    fn drain(&mut self) -> io::Result<()> {
        for d in &self.deliveries {
            d.drain(DRAIN).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// Where `config`'s dead letters go: its file, or its topic through `output`.
fn dead_letter(config: &SinkConfig, output: Option<&Output>) -> anyhow::Result<Option<DeadLetter>> {
    if let Some(topic) = &config.dead_letter_topic {
        let output = output.ok_or_else(|| {
            anyhow::anyhow!(
                "dead_letter_topic = {} needs Kafka (`rulewatch run`); a replay writes dead \
                 letters to a file: give dead_letter = \"PATH\" instead",
                crate::text::shown(topic)
            )
        })?;
        return Ok(Some(DeadLetter::Topic(output.clone(), topic.clone())));
    }
    let Some(path) = &config.dead_letter else {
        return Ok(None);
    };
    let file = (std::fs::OpenOptions::new().create(true).append(true))
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the sink's dead-letter file {}: {e}",
                crate::text::shown_path(path)
            )
        })?;
    Ok(Some(DeadLetter::File(file)))
}

fn kind_name(kind: SinkKind) -> &'static str {
    match kind {
        SinkKind::Webhook => "webhook",
        SinkKind::Alertmanager => "alertmanager",
    }
}

/// `name` as a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, other characters as `_`.
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A webhook: one POST per alert, in order.
struct Webhook(Receiver);

impl Post for Webhook {
    fn post(&mut self, items: &[Item]) -> Attempt {
        let mut delivered = 0;
        for item in items {
            if let Err(failure) = self
                .0
                .post_json(&item.body, &[("Idempotency-Key", &item.id)])
            {
                return Attempt {
                    delivered,
                    error: Some(failure),
                };
            }
            delivered += 1;
        }
        Attempt {
            delivered,
            error: None,
        }
    }
}

/// Alertmanager: every item of the attempt in one POST (all or none).
struct Alertmanager(Receiver);

impl Post for Alertmanager {
    fn post(&mut self, items: &[Item]) -> Attempt {
        let mut body = Vec::with_capacity(items.iter().map(|i| i.body.len() + 1).sum());
        body.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&item.body);
        }
        body.push(b']');
        match self.0.post_json(&body, &[]) {
            Ok(()) => Attempt {
                delivered: items.len(),
                error: None,
            },
            Err(failure) => Attempt {
                delivered: 0,
                error: Some(failure),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_prometheus_label_names() {
        assert_eq!(label_name("user_id"), "user_id");
        assert_eq!(label_name("user.id"), "user_id");
        assert_eq!(label_name("1st"), "_1st");
        assert_eq!(label_name(""), "_");
    }
}
