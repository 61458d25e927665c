//! `/metrics`: the status snapshot in the Prometheus (OpenMetrics) text format.

use crate::metrics::Histogram;
use crate::status::Status;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType::{self, Counter, Gauge, Histogram as Hist};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::fmt::{Error, Write};

/// Renders `status` as the body of `/metrics`.
pub(super) fn render(status: Status) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(status)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct Snapshot(Status);

/// One metric family: writes its descriptor, then a sample per label set.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl FnOnce(MetricEncoder<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    samples(encoder.encode_descriptor(name, help, None, kind)?)
}

/// A label value as the exposition format requires it: `\\`, `"` and line feed escaped.
/// prometheus-client writes values as it is given them (prometheus/client_rust#151), and one
/// unescaped quote in a topic or reason would make the whole scrape fail.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, out: &mut LabelValueEncoder<'_>) -> Result<(), Error> {
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            out.write_str(&rest[..at])?;
            out.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        out.write_str(rest)
    }
}

/// `labels` with every value [`Escaped`].
fn escaped<'a>(labels: &[(&'a str, &'a str)]) -> Vec<(&'a str, Escaped<'a>)> {
    labels.iter().map(|&(k, v)| (k, Escaped(v))).collect()
}

fn counter(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: u64) -> Result<(), Error> {
    ConstCounter::new(v).encode(m.encode_family(&escaped(labels))?)
}

fn gauge(m: &mut MetricEncoder<'_>, labels: &[(&str, &str)], v: f64) -> Result<(), Error> {
    ConstGauge::new(v).encode(m.encode_family(&escaped(labels))?)
}

fn histogram(
    m: &mut MetricEncoder<'_>,
    labels: &[(&str, &str)],
    h: &Histogram,
) -> Result<(), Error> {
    m.encode_family(&escaped(labels))?
        .encode_histogram::<NoLabelSet>(h.sum(), h.count(), &h.buckets(), None)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// Each webhook and Alertmanager receiver: alerts delivered, dead-lettered, waiting, and
/// whether it is failing now.
fn sinks(e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
    let receivers = crate::sink::deliver::receivers();
    if receivers.is_empty() {
        return Ok(());
    }
    let each = |m: &mut MetricEncoder<'_>, f: &dyn Fn(&crate::sink::deliver::Progress) -> u64| {
        (receivers.iter()).try_for_each(|(name, p)| counter(m, &[("sink", name)], f(p)))
    };
    family(
        e,
        "rulewatch_sink_delivered",
        "Alerts a receiver accepted",
        Counter,
        |mut m| each(&mut m, &|p| p.delivered()),
    )?;
    family(
        e,
        "rulewatch_sink_dead_letters",
        "Alerts that exhausted their attempts (or were refused) and went to the dead letter",
        Counter,
        |mut m| each(&mut m, &|p| p.dead()),
    )?;
    let gauges = |m: &mut MetricEncoder<'_>, f: &dyn Fn(&crate::sink::deliver::Progress) -> f64| {
        (receivers.iter()).try_for_each(|(name, p)| gauge(m, &[("sink", name)], f(p)))
    };
    family(
        e,
        "rulewatch_sink_waiting",
        "Alerts queued for a receiver and not yet delivered or dead-lettered",
        Gauge,
        |mut m| gauges(&mut m, &|p| p.waiting() as f64),
    )?;
    family(
        e,
        "rulewatch_sink_failing",
        "1 while a receiver's last attempt failed (retrying with backoff)",
        Gauge,
        |mut m| gauges(&mut m, &|p| f64::from(u8::from(p.failure().is_some()))),
    )
}

impl Snapshot {
    /// The whole run: readiness, events read and rejected.
    fn totals(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let s = &self.0;
        family(
            e,
            "rulewatch_ready",
            "1 when rules are loaded and the source is assigned",
            Gauge,
            |m| ConstGauge::new(i64::from(s.ready)).encode(m),
        )?;
        family(
            e,
            "rulewatch_events",
            "Lines (messages) read",
            Counter,
            |m| ConstCounter::new(s.totals.events).encode(m),
        )?;
        family(
            e,
            "rulewatch_events_bad",
            "Events rejected as bad input, by reason (line-level and per rule)",
            Counter,
            |mut m| {
                s.bad
                    .iter()
                    .try_for_each(|(reason, &n)| counter(&mut m, &[("reason", reason)], n))
            },
        )?;
        Ok(())
    }

    /// Per rule: what it matched, rejected and emitted, and its batch times.
    fn rule_counts(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let s = &self.0;
        family(
            e,
            "rulewatch_rule_matched",
            "Events a rule's filter selected",
            Counter,
            |mut m| {
                s.rules
                    .iter()
                    .try_for_each(|r| counter(&mut m, &[("rule", &r.name)], r.matched))
            },
        )?;
        family(
            e,
            "rulewatch_rule_late",
            "Selected events that came after their window closed",
            Counter,
            |mut m| {
                s.rules
                    .iter()
                    .try_for_each(|r| counter(&mut m, &[("rule", &r.name)], r.late))
            },
        )?;
        family(
            e,
            "rulewatch_rule_bad",
            "Events rejected for a rule (its fields missing or mistyped, bad timestamps)",
            Counter,
            |mut m| {
                s.rules.iter().try_for_each(|r| {
                    r.bad_by_reason.iter().try_for_each(|(reason, n)| {
                        counter(&mut m, &[("rule", &r.name), ("reason", reason)], *n)
                    })
                })
            },
        )?;
        family(
            e,
            "rulewatch_alerts",
            "Alert rows emitted",
            Counter,
            |mut m| {
                s.rules
                    .iter()
                    .try_for_each(|r| counter(&mut m, &[("rule", &r.name)], r.alerts))
            },
        )?;
        family(
            e,
            "rulewatch_rule_batch_seconds",
            "Time a rule spends on a batch: its filter call and the window updates",
            Hist,
            |mut m| {
                s.rules
                    .iter()
                    .try_for_each(|r| histogram(&mut m, &[("rule", &r.name)], &r.batch_seconds))
            },
        )?;
        Ok(())
    }

    /// Per rule: its state, open pairs and watermark; the rule changes.
    fn rule_state(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let s = &self.0;
        family(
            e,
            "rulewatch_rule_quarantined",
            "1 when a rule was stopped for misbehaving",
            Gauge,
            |mut m| {
                s.rules.iter().try_for_each(|r| {
                    gauge(
                        &mut m,
                        &[("rule", &r.name)],
                        f64::from(u8::from(r.state == crate::status::RuleState::Quarantined)),
                    )
                })
            },
        )?;
        family(
            e,
            "rulewatch_rule_held_seconds",
            "How long a repartitioned rule's windows have been held back by a silent input \
         partition (its reader gone or being replaced)",
            Gauge,
            |mut m| {
                s.rules.iter().try_for_each(|r| match &r.held_by {
                    Some((partition, secs)) => gauge(
                        &mut m,
                        &[("rule", &r.name), ("partition", partition)],
                        *secs,
                    ),
                    None => Ok(()),
                })
            },
        )?;
        family(
            e,
            "rulewatch_rule_log_lines",
            "Lines a rule's module wrote to stdout or stderr (logged at most 20 a second per \
             instance)",
            Counter,
            |mut m| {
                s.rules
                    .iter()
                    .try_for_each(|r| counter(&mut m, &[("rule", &r.name)], r.log_lines))
            },
        )?;
        family(
            e,
            "rulewatch_rule_open_pairs",
            "Open (window, key) pairs a rule holds",
            Gauge,
            |mut m| {
                s.rules
                    .iter()
                    .try_for_each(|r| gauge(&mut m, &[("rule", &r.name)], r.open_pairs as f64))
            },
        )?;
        family(
            e,
            "rulewatch_rule_watermark_seconds",
            "A rule's watermark, Unix time",
            Gauge,
            |mut m| {
                s.rules.iter().try_for_each(|r| match r.watermark_ms {
                    Some(w) => gauge(&mut m, &[("rule", &r.name)], seconds(w)),
                    None => Ok(()),
                })
            },
        )?;
        let c = &s.rule_changes;
        family(
            e,
            "rulewatch_rule_changes",
            "Changes to the running rules: loaded, swapped, restarted, removed, rejected",
            Counter,
            |mut m| {
                [
                    ("loaded", c.added),
                    ("swapped", c.swapped),
                    ("restarted", c.restarted),
                    ("removed", c.removed),
                    ("rejected", c.rejected),
                ]
                .iter()
                .try_for_each(|(change, n)| counter(&mut m, &[("change", change)], *n))
            },
        )?;
        Ok(())
    }

    /// Per partition: watermarks, idleness and lag.
    fn partitions(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let s = &self.0;
        family(
            e,
            "rulewatch_partition_watermark_seconds",
            "A rule's watermark from one input partition (largest event time minus the delay), Unix time",
            Gauge,
            |mut m| {
                s.partitions.iter().try_for_each(|p| {
                    let partition = p.partition.to_string();
                    p.rule_watermarks.iter().try_for_each(|(rule, w)| {
                        gauge(
                            &mut m,
                            &[
                                ("rule", rule),
                                ("topic", &p.topic),
                                ("partition", &partition),
                            ],
                            seconds(*w),
                        )
                    })
                })
            },
        )?;
        family(
            e,
            "rulewatch_partition_idle",
            "1 while its reader declares a partition idle (read to the end, nothing new for idle_timeout)",
            Gauge,
            |mut m| {
                s.partitions.iter().try_for_each(|p| {
                    let partition = p.partition.to_string();
                    gauge(
                        &mut m,
                        &[("topic", &p.topic), ("partition", &partition)],
                        f64::from(u8::from(p.idle)),
                    )
                })
            },
        )?;
        family(
            e,
            "rulewatch_consumer_lag",
            "Messages of a partition not yet read (from the broker's last fetch answer)",
            Gauge,
            |mut m| {
                s.partitions.iter().try_for_each(|p| match p.lag {
                    Some(lag) => {
                        let partition = p.partition.to_string();
                        gauge(
                            &mut m,
                            &[("topic", &p.topic), ("partition", &partition)],
                            lag as f64,
                        )
                    }
                    None => Ok(()),
                })
            },
        )?;
        Ok(())
    }

    /// The Kafka client and the checkpoints.
    fn source(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), Error> {
        let s = &self.0;
        let (auth, handshakes) = super::refusals();
        family(
            e,
            "rulewatch_http_auth_failures",
            "Requests to this endpoint refused for a missing or wrong credential (401)",
            Counter,
            |m| ConstCounter::new(auth).encode(m),
        )?;
        family(
            e,
            "rulewatch_http_tls_handshake_failures",
            "TLS handshakes with this endpoint that failed (untrusted or missing client certificates, clients that refuse ours)",
            Counter,
            |m| ConstCounter::new(handshakes).encode(m),
        )?;
        sinks(e)?;
        if s.source == "kafka" {
            family(
                e,
                "rulewatch_kafka_problems",
                "Kafka client problems logged (unreachable brokers, TLS, credentials, topics)",
                Counter,
                |m| ConstCounter::new(s.kafka_problems).encode(m),
            )?;
        }
        if let Some(cp) = &s.checkpoint {
            family(
                e,
                "rulewatch_checkpoint_age_seconds",
                "Seconds since the last checkpoint",
                Gauge,
                |m| ConstGauge::new(cp.age_seconds).encode(m),
            )?;
            family(
                e,
                "rulewatch_checkpoint_failing",
                "1 while checkpoints cannot be written (offsets are not committed meanwhile)",
                Gauge,
                |m| ConstGauge::new(i64::from(cp.failing.is_some())).encode(m),
            )?;
            family(
                e,
                "rulewatch_checkpoint_duration_seconds",
                "Time to write a checkpoint, outputs flushed first",
                Hist,
                |mut m| {
                    let h = &cp.duration_seconds;
                    m.encode_histogram::<NoLabelSet>(h.sum(), h.count(), &h.buckets(), None)
                },
            )?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), Error> {
        let e = &mut e;
        self.totals(e)?;
        self.rule_counts(e)?;
        self.rule_state(e)?;
        self.partitions(e)?;
        self.source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One counter whose label value is given.
    #[derive(Debug)]
    struct Labelled(&'static str);

    impl Collector for Labelled {
        fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), Error> {
            family(&mut e, "x", "help", Counter, |mut m| {
                counter(&mut m, &[("rule", self.0)], 7)
            })
        }
    }

    fn exposed(value: &'static str) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Labelled(value)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn label_values_are_escaped_as_the_exposition_format_requires() {
        let out = exposed("a\"} 12345\nrulewatch_injected_total 1\n\\");
        let sample = out.lines().find(|l| l.starts_with("x_total")).unwrap();
        assert_eq!(
            sample, r#"x_total{rule="a\"} 12345\nrulewatch_injected_total 1\n\\"} 7"#,
            "{out}"
        );
        assert!(!out.lines().any(|l| l.starts_with("rulewatch_injected")));
        assert!(exposed("plain").contains("x_total{rule=\"plain\"} 7\n"));
    }
}
