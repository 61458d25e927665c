//! What the engine is doing now: a snapshot that the processing loop publishes a few times a
//! second and the HTTP endpoint reads (`/api/status`, `/api/rules`, `/metrics`, the page).
//! The loop never waits for a reader: it replaces the snapshot under a short lock.

use crate::metrics::{Histogram, RuleChanges};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many of the latest alerts the snapshot keeps.
pub(crate) const RECENT_ALERTS: usize = 50;

/// The snapshot, as `/api/status` serves it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Status {
    /// The engine's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Rules loaded and the source assigned: see [`Status::is_ready`].
    pub ready: bool,
    /// `kafka` or `file`.
    pub source: &'static str,
    /// Counters over the whole input.
    pub totals: Totals,
    /// Lines no rule could use, by reason, plus field-level rejections of every rule.
    pub bad: BTreeMap<&'static str, u64>,
    /// Input partitions (Kafka) or the input file.
    pub partitions: Vec<PartitionStatus>,
    /// Every rule, shadows included.
    pub rules: Vec<RuleStatus>,
    /// The latest alerts, newest first.
    pub alerts: Vec<AlertStatus>,
    /// Changes to the set of rules since start.
    pub rule_changes: RuleChanges,
    /// Checkpoints (`run` only).
    pub checkpoint: Option<CheckpointStatus>,
    /// The Kafka client's current problem, with what to check (`run` only).
    pub kafka_problem: Option<String>,
    /// Kafka client problems logged since start.
    pub kafka_problems: u64,
    /// Webhook and Alertmanager receivers (filled when the status is served).
    pub sinks: Vec<SinkStatus>,
    /// When the processing loop last published; `/healthz` fails when this gets old.
    #[serde(skip)]
    pub published: Instant,
    /// When the engine started (uptime is computed when asked, not when published).
    #[serde(skip)]
    pub started: Instant,
}

impl Status {
    /// Whether a rule runs (and publishes): the first condition of readiness.
    pub(crate) fn a_rule_runs(&self) -> bool {
        self.rules.iter().any(|r| r.state == RuleState::Running)
    }

    /// An empty snapshot of a source of `kind` (`kafka`, `file`).
    pub(crate) fn new(kind: &'static str) -> Self {
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: 0.0,
            ready: false,
            source: kind,
            totals: Totals::default(),
            bad: BTreeMap::new(),
            partitions: Vec::new(),
            rules: Vec::new(),
            alerts: Vec::new(),
            rule_changes: RuleChanges::default(),
            checkpoint: None,
            kafka_problem: None,
            kafka_problems: 0,
            sinks: Vec::new(),
            published: Instant::now(),
            started: Instant::now(),
        }
    }
}

/// One receiver of `[[output.sinks]]`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SinkStatus {
    /// Its kind and URL.
    pub name: String,
    /// Alerts it accepted.
    pub delivered: u64,
    /// Alerts that went to its dead letter.
    pub dead_letters: u64,
    /// Alerts queued for it, not settled yet.
    pub waiting: u64,
    /// Why its last attempt failed, while it is failing.
    pub failing: Option<String>,
    /// Its queue is full: reading waits for it.
    pub backed_up: bool,
}

/// Counters over the whole input.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Totals {
    /// Lines (messages) read.
    pub events: u64,
    /// Alert rows emitted by all rules (shadows excluded).
    pub alerts: u64,
    /// Late events over all rules.
    pub late: u64,
    /// Bad lines plus field-level rejections of all rules.
    pub bad: u64,
}

/// One input partition.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PartitionStatus {
    /// Topic (or the file name).
    pub topic: String,
    /// Partition number (0 for a file).
    pub partition: i32,
    /// Whether this instance reads it now.
    pub assigned: bool,
    /// The lowest watermark the partition gives any rule, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Each rule's watermark from this partition (largest event time seen minus the rule's
    /// delay), epoch ms.
    #[serde(skip)]
    pub rule_watermarks: Vec<(String, i64)>,
    /// No data for `idle_timeout`: it does not hold watermarks back.
    pub idle: bool,
    /// Messages in the partition not yet read, from the broker's last fetch answer.
    pub lag: Option<i64>,
}

/// What a rule is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RuleState {
    /// Its alerts are published.
    Running,
    /// It shadows another rule: its alerts are compared, not published.
    Shadow,
    /// Stopped after it misbehaved; its windows were dropped.
    Quarantined,
}

/// One rule.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RuleStatus {
    /// Its name.
    pub name: String,
    /// Running, quarantined or shadow.
    pub state: RuleState,
    /// 1 for the version loaded first, one more for each version swapped in.
    pub version: u64,
    /// sha256 of its module.
    pub sha256: String,
    /// Why it was quarantined, or why its last change was rejected.
    pub last_error: Option<String>,
    /// The internal topic its events go through when the input is not keyed by its
    /// group-by field; none when it counts per input partition.
    pub repartition_topic: Option<String>,
    /// Events its filter selected.
    pub matched: u64,
    /// Selected events that came after their window closed.
    pub late: u64,
    /// Events rejected for this rule (missing field, wrong type, bad timestamp).
    pub bad: u64,
    /// Rejected events by reason.
    #[serde(skip)]
    pub bad_by_reason: Vec<(&'static str, u64)>,
    /// Alert rows emitted.
    pub alerts: u64,
    /// Lines its module wrote to stdout or stderr (all of its versions).
    pub log_lines: u64,
    /// Its watermark, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Open (window, key) pairs.
    pub open_pairs: usize,
    /// Window settings.
    pub window: WindowStatus,
    /// Column titles of its rows.
    pub key_column: String,
    /// Column titles of its rows.
    pub count_column: String,
    /// Its `[params]`.
    pub params: serde_json::Value,
    /// Time per batch: the filter call and the window updates.
    #[serde(skip)]
    pub batch_seconds: Histogram,
    /// Repartitioned rules: the input partition whose silence holds its windows back (its
    /// reader is gone or being replaced), and for how many seconds.
    pub held_by: Option<(String, f64)>,
}

/// A rule's window settings.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct WindowStatus {
    /// The field events are grouped by.
    pub key: String,
    /// Window length.
    pub size_ms: i64,
    /// Distance between window starts (= size for tumbling windows).
    pub slide_ms: i64,
    /// How far the watermark trails event time.
    pub delay_ms: i64,
}

/// One alert row.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AlertStatus {
    /// The rule.
    pub rule: String,
    /// Window start, epoch ms.
    pub window_start_ms: i64,
    /// Window end, epoch ms.
    pub window_end_ms: i64,
    /// The key.
    pub key: String,
    /// The count.
    pub count: u64,
    /// Where some of its events are (`[output] evidence`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<crate::source::Origin>,
}

/// Checkpoints of `run`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CheckpointStatus {
    /// Seconds since the last checkpoint was written (or since start, before the first).
    pub age_seconds: f64,
    /// How long writing one took (flush of outputs included).
    #[serde(skip)]
    pub duration_seconds: Histogram,
    /// Why checkpoints are not being written, while they are not.
    pub failing: Option<String>,
}

/// The snapshot shared between the processing loop and the HTTP endpoint.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<Status>>);

impl Shared {
    /// A shared snapshot, empty until the first publish.
    pub(crate) fn new(status: Status) -> Self {
        Shared(Arc::new(Mutex::new(status)))
    }

    /// Replaces the snapshot.
    pub(crate) fn publish(&self, status: Status) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// A copy of the snapshot, its uptime as of now.
    pub(crate) fn get(&self) -> Status {
        let mut status = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        status.uptime_seconds = status.started.elapsed().as_secs_f64();
        status
    }
}

/// How often the processing loop publishes.
pub(crate) const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// The processing loop's side: fills a snapshot every [`PUBLISH_EVERY`] and publishes it.
pub(crate) struct Publisher {
    shared: Shared,
    status: Status,
    last: Option<Instant>,
}

impl Publisher {
    /// Publishes into `shared`; the source is of `kind` (`kafka`, `file`).
    pub(crate) fn new(shared: Shared, kind: &'static str) -> Self {
        Publisher {
            shared,
            status: Status::new(kind),
            last: None,
        }
    }

    /// Publishes if the last publish is [`PUBLISH_EVERY`] old (or `now`): `fill` updates the
    /// snapshot first.
    pub(crate) fn publish(&mut self, now: bool, fill: impl FnOnce(&mut Status)) {
        if !now && self.last.is_some_and(|t| t.elapsed() < PUBLISH_EVERY) {
            return;
        }
        fill(&mut self.status);
        self.status.published = Instant::now();
        self.last = Some(self.status.published);
        self.shared.publish(self.status.clone());
    }
}
