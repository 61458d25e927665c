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
//! partition stand at the others' watermark as of that marker. A partition whose reader is
//! gone says nothing more, so it holds the windows back where its reader last vouched for
//! it until its new reader catches up. Replays after a failover forward events again; each
//! internal partition keeps, per input partition, the next offset it expects and drops what
//! is below it, and checkpoints that with its windows.

pub(crate) mod keying;

use crate::config::run::KafkaConfig;
use crate::source::Reading;
use crate::window::WindowSettings;
use serde::{Deserialize, Serialize};
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

/// What an internal partition knows of one input partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Upstream {
    /// The next input offset expected: records below it were seen (replays are dropped).
    pub next: i64,
    /// Its watermark, from its latest marker.
    pub watermark: Option<i64>,
    /// Idle as of its latest marker.
    pub idle: bool,
    /// While idle: the watermark it stands at, taken from the other input partitions each
    /// time its reader said it is idle. Only its reader's markers raise it, so a partition
    /// whose reader is gone (killed, cut off, being handed over) is *unowned*: it holds the
    /// windows back at the last point its reader vouched for, instead of letting them close
    /// while its data goes unread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<i64>,
    /// When its last record (marker or event) came here; not checkpointed.
    #[serde(skip)]
    pub heard: Option<Instant>,
}

impl Upstream {
    /// The watermark it holds the internal partition at.
    fn effective(&self) -> Option<i64> {
        if self.idle {
            self.watermark.max(self.floor)
        } else {
            self.watermark
        }
    }
}

/// What an input partition's marker says: its watermark (none before its first event),
/// whether it is idle, and the next offset it will read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Its watermark, epoch ms.
    pub watermark: Option<i64>,
    /// Its next offset.
    pub next: i64,
    /// Idle: read to the end, nothing new for a while.
    pub idle: bool,
    /// Idle, and vouched for by the broker just now: it may stand at the others'
    /// watermark as of this marker.
    pub vouched: bool,
    /// Vouched for just now as read to its end with nothing new for `quiet_close`: it may
    /// stand past every window open here as of this marker.
    pub quiet: bool,
}

/// Per internal partition, the input partitions' progress; the internal partition's
/// watermark follows from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// By input partition name.
    pub upstream: BTreeMap<String, Upstream>,
}

impl Progress {
    /// Whether an event at input `offset` of `from` is new here (and notes it).
    pub(crate) fn accept_event(&mut self, from: &str, offset: i64) -> bool {
        let u = self.entry(from);
        if offset < u.next {
            return false;
        }
        u.next = offset + 1;
        u.idle = false;
        u.floor = None;
        u.heard = Some(Instant::now());
        true
    }

    /// Applies a marker unless it is older than what was seen from `from`; `inputs` are all
    /// input partitions (a vouched idle marker raises its floor to the others' watermark);
    /// `past_open` is where the watermark must be for every window open here to close (a
    /// quiet marker raises its floor to it).
    pub(crate) fn apply_marker(
        &mut self,
        from: &str,
        marker: Marker,
        inputs: &[String],
        past_open: Option<i64>,
    ) {
        let Marker {
            watermark,
            next,
            idle,
            vouched,
            quiet,
        } = marker;
        if next < self.entry(from).next {
            return;
        }
        let others = if idle && vouched {
            self.watermark_over(inputs, Some(from))
        } else {
            None
        };
        let past = if quiet { past_open } else { None };
        let u = self.entry(from);
        u.next = next;
        // Quiet stands where idle would: only its reader's markers move it.
        u.idle = idle || quiet;
        u.heard = Some(Instant::now());
        if let Some(w) = watermark {
            u.watermark = Some(u.watermark.map_or(w, |x| x.max(w)));
        }
        u.floor = if u.idle {
            u.floor.max(others).max(past)
        } else {
            None
        };
    }

    fn entry(&mut self, from: &str) -> &mut Upstream {
        if !self.upstream.contains_key(from) {
            self.upstream.insert(from.to_owned(), Upstream::default());
        }
        self.upstream.get_mut(from).expect("inserted above")
    }

    /// The watermark over `inputs` (every input partition): the smallest of their
    /// watermarks, an idle one counting at its floor; none while one of them has none.
    pub(crate) fn watermark(&self, inputs: &[String]) -> Option<i64> {
        self.watermark_over(inputs, None)
    }

    /// The input partition holding this internal partition's watermark back while nothing
    /// has come from it for longer than a few markers' time — its reader is gone, cut off or
    /// being replaced — and for how long.
    pub(crate) fn held_by<'a>(&self, inputs: &'a [String]) -> Option<(&'a str, Duration)> {
        let (name, u) = inputs
            .iter()
            .filter_map(|n| Some((n.as_str(), self.upstream.get(n)?)))
            .min_by_key(|(_, u)| u.effective())?;
        let silent = u.heard?.elapsed();
        (silent > 3 * MARKER_EVERY).then_some((name, silent))
    }

    fn watermark_over(&self, inputs: &[String], except: Option<&str>) -> Option<i64> {
        let mut min: Option<i64> = None;
        for name in inputs.iter().filter(|n| Some(n.as_str()) != except) {
            let w = self.upstream.get(name)?.effective()?;
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        min
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

    /// A marker; idle ones vouched for.
    fn marker(watermark: Option<i64>, next: i64, idle: bool) -> Marker {
        Marker {
            watermark,
            next,
            idle,
            vouched: idle,
            quiet: false,
        }
    }

    #[test]
    fn replays_are_dropped_and_the_slowest_active_input_sets_the_watermark() {
        let inputs = ["logs/0".to_owned(), "logs/1".to_owned()];
        let mut p = Progress::default();
        assert!(p.accept_event("logs/0", 10));
        assert!(!p.accept_event("logs/0", 10), "a replayed event");
        assert!(p.accept_event("logs/0", 11));
        p.apply_marker("logs/0", marker(Some(500), 12, false), &inputs, None);
        assert_eq!(p.watermark(&inputs), None, "logs/1 has not reported");
        p.apply_marker("logs/1", marker(Some(300), 3, false), &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(300));
        // An old marker (a replay) changes nothing; an idle input stops holding back.
        p.apply_marker("logs/1", marker(Some(100), 1, true), &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(300));
        p.apply_marker("logs/1", marker(Some(300), 3, true), &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(500));
        // Data wakes it up.
        assert!(p.accept_event("logs/1", 3));
        assert_eq!(p.watermark(&inputs), Some(300));
    }

    #[test]
    fn an_idle_input_whose_reader_is_gone_holds_the_windows_where_it_was_vouched_for() {
        let inputs = ["logs/0".to_owned(), "logs/1".to_owned()];
        let mut p = Progress::default();
        p.apply_marker("logs/0", marker(Some(500), 10, false), &inputs, None);
        p.apply_marker("logs/1", marker(Some(300), 3, true), &inputs, None);
        assert_eq!(
            p.watermark(&inputs),
            Some(500),
            "idle at the others' watermark"
        );
        // logs/0 moves on; logs/1's reader says nothing more (it died): held at 500.
        p.apply_marker("logs/0", marker(Some(900), 20, false), &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(500));
        // Idle markers that do not vouch anew hold it where it stands.
        let holding = Marker {
            vouched: false,
            ..marker(Some(300), 3, true)
        };
        p.apply_marker("logs/1", holding, &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(500));
        // A live idle reader vouches again and follows.
        p.apply_marker("logs/1", marker(Some(300), 3, true), &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(900));
        // All idle: they stand at the fastest.
        p.apply_marker("logs/0", marker(Some(900), 20, true), &inputs, None);
        assert_eq!(p.watermark(&inputs), Some(900));
        // Whose silence holds the windows: none while markers come.
        assert_eq!(p.held_by(&inputs), None);
        p.upstream.get_mut("logs/1").unwrap().heard =
            Instant::now().checked_sub(Duration::from_secs(60));
        p.upstream.get_mut("logs/1").unwrap().floor = Some(400);
        let (name, silent) = p.held_by(&inputs).unwrap();
        assert!(name == "logs/1" && silent >= Duration::from_secs(60));
    }

    #[test]
    fn quiet_closes_the_windows_only_once_every_input_vouched_for_it() {
        let inputs = ["logs/0".to_owned(), "logs/1".to_owned()];
        let quiet = |watermark, next| Marker {
            quiet: true,
            ..marker(Some(watermark), next, false)
        };
        let mut p = Progress::default();
        p.apply_marker("logs/0", marker(Some(500), 10, false), &inputs, None);
        p.apply_marker("logs/1", marker(Some(300), 3, false), &inputs, None);
        // Windows open here up to 2000. logs/0 is quiet; logs/1's reader says nothing (it
        // died, or has not noticed yet): held at logs/1's watermark.
        p.apply_marker("logs/0", quiet(500, 10), &inputs, Some(2000));
        assert_eq!(p.watermark(&inputs), Some(300));
        // Its reader vouches for it too: every window open then may close.
        p.apply_marker("logs/1", quiet(300, 3), &inputs, Some(2000));
        assert_eq!(p.watermark(&inputs), Some(2000));
        // A window opened later (by events logs/1 forwards) waits for logs/0 to vouch again.
        assert!(p.accept_event("logs/1", 3));
        p.apply_marker("logs/1", quiet(2500, 4), &inputs, Some(3000));
        assert_eq!(p.watermark(&inputs), Some(2000));
        p.apply_marker("logs/0", quiet(500, 10), &inputs, Some(3000));
        assert_eq!(p.watermark(&inputs), Some(3000));
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
