//! Repartitioning: counting by a key the input topic is not partitioned by.
//!
//! Windows are counted per partition, which is right only when all events of a key are in
//! one partition. When the input is not keyed by a rule's group-by field, the instance that
//! reads an input partition decodes, filters and judges lateness there (by that partition's
//! own watermark, as in direct mode), then forwards the selected, on-time events to an
//! internal topic keyed by the group key; the instance that reads a partition of the
//! internal topic counts them. Only matching events travel.
//!
//! Each input partition also sends its watermark to every internal partition (a marker,
//! at least once a second and whenever it moves, and when the partition goes idle). An
//! internal partition's watermark is the minimum over the input partitions, so a window
//! closes only once every input partition has passed its end, and every event forwarded on
//! time was counted before: counts do not depend on how the input partitions interleave.
//! Idleness is declared, never inferred: only an input partition's reader says it is idle
//! (it has read to the end and seen nothing new for `idle_timeout`), and each marker in
//! which it vouches for that anew (the broker confirms, about once a second) lets the
//! partition stand where the others stood a second before that marker (`progress.rs`). A
//! partition whose reader is
//! gone says nothing more, so it holds the windows back where its reader last vouched for
//! it until its new reader catches up. Replays after a failover forward events again; each
//! internal partition keeps, per input partition, the next offset it expects and drops what
//! is below it, and checkpoints that with its windows.

pub(crate) mod keying;
mod progress;

pub(crate) use progress::{Marker, Progress, Upstream};

use crate::config::run::KafkaConfig;
use crate::source::Reading;
use crate::window::WindowSettings;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// How often an input partition's watermark is sent even when it has not moved.
pub(crate) const MARKER_EVERY: Duration = Duration::from_secs(1);

/// The name of rule `rule`'s internal topic in consumer group `group`.
pub(crate) fn topic_name(group: &str, rule: &str) -> String {
    format!("{group}-{rule}-repartition")
}

/// Which rules repartition, decided at start.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The field the input is keyed by, if any.
    pub keyed_by: Option<String>,
    /// The internal topic per rule that repartitions.
    pub topics: BTreeMap<String, String>,
    /// Every input partition (`topic/partition`); empty when no rule repartitions.
    pub inputs: Vec<String>,
}

/// Decides, for each rule (name, group-by field), whether it counts per input partition
/// or repartitions, and says so. `kafka.keyed_by = "auto"` samples the input topic.
pub(crate) fn plan(kafka: &KafkaConfig, rules: &[(&str, &str)]) -> anyhow::Result<Plan> {
    let fields: Vec<&str> = rules.iter().map(|(_, key)| *key).collect();
    let mut plan = Plan::default();
    let inspect = || keying::inspect(&kafka.brokers, &kafka.options, &kafka.topics, &fields);
    let mut samples = BTreeMap::new();
    match kafka.keyed_by.as_str() {
        "auto" => {
            let (inputs, found) = inspect()?;
            plan.inputs = inputs;
            plan.keyed_by = found
                .iter()
                .find(|(_, s)| s.keyed())
                .map(|(f, _)| f.clone());
            samples = found;
        }
        "none" => {}
        field => plan.keyed_by = Some(field.to_owned()),
    }
    let topics = kafka.topics.join(", ");
    for (rule, key) in rules {
        if plan.keyed_by.as_deref() == Some(*key) {
            let how = match samples.get(*key) {
                Some(s) => format!("checked on {} sampled messages", s.with_field),
                None => "kafka.keyed_by".to_owned(),
            };
            info!(
                "rule {rule}: input {topics} is keyed by `{key}` ({how}): counting per input \
                 partition"
            );
            continue;
        }
        let internal = topic_name(&kafka.group_id, rule);
        let why = match samples.get(*key) {
            Some(s) if s.with_field == 0 => format!(
                "cannot tell whether input {topics} is keyed by `{key}` (no message to check); \
                 set kafka.keyed_by to say so"
            ),
            Some(s) => format!(
                "input {topics} is not keyed by `{key}` ({} of {} sampled messages are)",
                s.keyed, s.with_field
            ),
            None => format!("input {topics} is not keyed by `{key}` (kafka.keyed_by)"),
        };
        let log = if samples.get(*key).is_some_and(|s| s.with_field == 0) {
            |m: String| warn!("{m}")
        } else {
            |m: String| info!("{m}")
        };
        log(format!(
            "rule {rule}: {why}: repartitioning its matching events through topic {internal}"
        ));
        plan.topics.insert(rule.to_string(), internal);
    }
    if !plan.topics.is_empty() && plan.inputs.is_empty() {
        plan.inputs = inspect()?.0;
    }
    Ok(plan)
}

impl Plan {
    /// Keeps repartitioning the rules whose checkpointed window settings (`checkpointed`:
    /// rule name and settings, from the checkpoints of input partitions) show they were
    /// repartitioned, whatever the input looks like now, and says so.
    pub(crate) fn keep_repartitioned<'a>(
        &mut self,
        group: &str,
        checkpointed: impl IntoIterator<Item = (&'a str, &'a WindowSettings)>,
    ) {
        let was: std::collections::BTreeSet<&str> = checkpointed
            .into_iter()
            .filter(|(_, window)| window.repartitioned)
            .map(|(rule, _)| rule)
            .collect();
        for rule in was {
            if !self.topics.contains_key(rule) {
                warn!(
                    "rule {rule}: repartitioned as in its checkpoints, although the input now \
                     looks keyed by its field; set kafka.keyed_by (and start with empty \
                     checkpoints) to change that"
                );
                self.topics.insert(rule.to_owned(), topic_name(group, rule));
            }
        }
    }
}

/// Where forwarded records go: the repartition topics.
pub(crate) trait ForwardOutput {
    /// Queues `record` to `topic`, to the partition `key` hashes to.
    fn send_keyed(&self, topic: &str, key: &[u8], record: &[u8]);
    /// Queues `record` to partition `partition` of `topic`.
    fn send_to_partition(&self, topic: &str, partition: i32, record: &[u8]);
}

/// A record of the internal topic.
#[derive(Debug, PartialEq)]
pub(crate) enum Forwarded<'a> {
    /// A selected, on-time event: its time and key, and where it came from.
    Event {
        /// Event time, epoch ms.
        time: i64,
        /// Input partition (`topic/partition`).
        from: &'a str,
        /// Offset in the input partition.
        offset: i64,
        /// The group key.
        key: &'a str,
    },
    /// An input partition's progress.
    Marker {
        /// Input partition (`topic/partition`).
        from: &'a str,
        /// What it says.
        marker: Marker,
    },
}

impl Forwarded<'_> {
    /// The record's bytes: tab-separated text, the key last (it may hold tabs).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        out.clear();
        let _ = match self {
            Forwarded::Event {
                time,
                from,
                offset,
                key,
            } => write!(out, "E\t{time}\t{from}\t{offset}\t{key}"),
            Forwarded::Marker {
                from,
                marker:
                    Marker {
                        watermark,
                        next,
                        idle,
                        vouched,
                        quiet,
                    },
            } => {
                let wm = watermark.map_or(String::new(), |w| w.to_string());
                // 3: quiet (vouched for now); 1: idle and vouched for now; 2: idle, standing
                // where it was; 0: active. An older reader takes 3 as active.
                let state = match (quiet, idle, vouched) {
                    (true, _, _) => 3,
                    (false, true, true) => 1,
                    (false, true, false) => 2,
                    (false, false, _) => 0,
                };
                write!(out, "M\t{wm}\t{from}\t{next}\t{state}")
            }
        };
    }

    /// Reads a record; `None` if it is not one.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Forwarded<'_>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut f = text.splitn(5, '\t');
        let kind = f.next()?;
        let a = f.next()?;
        let from = f.next()?;
        let n: i64 = f.next()?.parse().ok()?;
        let last = f.next()?;
        match kind {
            "E" => Some(Forwarded::Event {
                time: a.parse().ok()?,
                from,
                offset: n,
                key: last,
            }),
            "M" => Some(Forwarded::Marker {
                from,
                marker: Marker {
                    watermark: if a.is_empty() {
                        None
                    } else {
                        Some(a.parse().ok()?)
                    },
                    next: n,
                    idle: last == "1" || last == "2",
                    vouched: last == "1",
                    quiet: last == "3",
                },
            }),
            _ => None,
        }
    }
}

/// When an input partition's marker was last sent, and what it said.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sent {
    /// The watermark sent.
    pub watermark: Option<i64>,
    /// The idle flag sent.
    pub idle: bool,
    /// When.
    pub at: Instant,
}

impl Sent {
    /// Whether a marker saying (`watermark`, `reading`) is due; a vouched or quiet one (its
    /// reader vouched for it just now) always is.
    pub(crate) fn due(
        last: Option<&Sent>,
        watermark: Option<i64>,
        reading: Reading,
        now: Instant,
    ) -> bool {
        reading.vouched
            || reading.quiet
            || last.is_none_or(|s| {
                s.watermark != watermark || s.idle != reading.idle || now - s.at >= MARKER_EVERY
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        for r in [
            Forwarded::Event {
                time: -5,
                from: "logs/3",
                offset: 42,
                key: "a\tkey",
            },
            Forwarded::Marker {
                from: "logs/0",
                marker: Marker {
                    watermark: Some(1_000),
                    next: 7,
                    idle: false,
                    vouched: false,
                    quiet: false,
                },
            },
            Forwarded::Marker {
                from: "logs/1",
                marker: Marker {
                    watermark: None,
                    next: 0,
                    idle: true,
                    vouched: true,
                    quiet: false,
                },
            },
            Forwarded::Marker {
                from: "logs/1",
                marker: Marker {
                    watermark: Some(5),
                    next: 3,
                    idle: true,
                    vouched: false,
                    quiet: false,
                },
            },
            Forwarded::Marker {
                from: "logs/2",
                marker: Marker {
                    watermark: Some(7),
                    next: 9,
                    idle: false,
                    vouched: false,
                    quiet: true,
                },
            },
        ] {
            r.encode(&mut buf);
            assert_eq!(Forwarded::parse(&buf), Some(r));
        }
        assert_eq!(Forwarded::parse(b"{\"json\":1}"), None);
    }

    #[test]
    fn a_marker_is_due_whenever_its_reader_vouched_for_it() {
        let now = Instant::now();
        let last = Sent {
            watermark: Some(5),
            idle: false,
            at: now,
        };
        let reading = |vouched, quiet| Reading {
            assigned: true,
            idle: vouched,
            vouched,
            quiet,
        };
        assert!(!Sent::due(Some(&last), Some(5), reading(false, false), now));
        // A quiet partition is vouched for about once a second, in one round: that round's
        // marker must go, however recently the last one went.
        assert!(Sent::due(Some(&last), Some(5), reading(false, true), now));
        let idle = Sent { idle: true, ..last };
        assert!(Sent::due(Some(&idle), Some(5), reading(true, false), now));
    }
}
