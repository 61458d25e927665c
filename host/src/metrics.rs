//! Counters of what the pipeline did, per input and per rule, and the summary printed at the
//! end of a run.

use crate::decode::Reason;
use std::fmt::Write as _;
use std::time::Duration;

/// Counts per [`Reason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReasonCounts([u64; Reason::ALL.len()]);

impl ReasonCounts {
    /// Adds one for `reason`.
    pub(crate) fn add(&mut self, reason: Reason) {
        self.0[reason.index()] += 1;
    }

    /// The count for `reason`.
    pub(crate) fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()]
    }

    /// All counts together.
    pub(crate) fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `not_json 3, missing_field 1`, omitting zeros.
    pub(crate) fn describe(&self) -> String {
        Reason::ALL
            .iter()
            .filter(|r| self.get(**r) > 0)
            .map(|r| format!("{} {}", r.label(), self.get(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Counters of the input as a whole.
#[derive(Clone, Debug, Default)]
pub(crate) struct InputStats {
    /// Lines read.
    pub lines: u64,
    /// Lines no rule could use, by reason (not UTF-8, not JSON, not an object, too large).
    pub bad: ReasonCounts,
}

/// Counters of changes to the set of running rules.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct RuleChanges {
    /// Rules added while running.
    pub added: u64,
    /// New versions (module or params) swapped in with their windows kept.
    pub swapped: u64,
    /// New versions with new window settings (old windows flushed).
    pub restarted: u64,
    /// Rules removed.
    pub removed: u64,
    /// Changes rejected (the running version stayed).
    pub rejected: u64,
}

/// Counters of one rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct RuleStats {
    /// Events decoded for the rule (its fields present and well-typed).
    pub events: u64,
    /// Events its filter selected (late ones included).
    pub matched: u64,
    /// Selected events that arrived after their window closed.
    pub late: u64,
    /// Events rejected for this rule, by reason (missing field, wrong type, bad timestamp).
    pub bad: ReasonCounts,
    /// Alert rows emitted.
    pub alerts: u64,
    /// Alert rows held back by the rule's cooldown.
    pub suppressed: u64,
    /// For a shadow rule: rows in which its alerts differed from the rule it shadows.
    pub shadow_diffs: u64,
    /// Why the rule was stopped, if it was.
    pub quarantined: Option<String>,
    /// Time per batch: the filter call and the window updates.
    pub batch_seconds: Histogram,
    /// Time in its filter calls, summed over the workers.
    pub filter_time: Duration,
}

/// Time spent per pipeline stage, summed over batches (a few clock reads per batch).
#[derive(Clone, Debug, Default)]
pub(crate) struct StageTimes {
    /// Decoding lines and projecting each rule's fields.
    pub decode: Duration,
    /// The rules' filter calls (WebAssembly).
    pub filter: Duration,
    /// Window and watermark updates.
    pub window: Duration,
    /// Triggers: collecting rows, the alert calls, and the sink.
    pub trigger: Duration,
}

/// Upper bounds, in seconds, of the buckets of latency histograms: 50 µs to 5 s.
pub(crate) const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`] (plus one bucket for anything longer).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub(crate) fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS.partition_point(|&b| b < seconds);
        self.counts[i] += 1;
        self.sum += seconds;
    }

    /// Observations so far.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their sum, in seconds.
    pub(crate) fn sum(&self) -> f64 {
        self.sum
    }

    /// (upper bound, observations in that bucket alone); the last bound is `f64::MAX`.
    pub(crate) fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .chain([&f64::MAX])
            .zip(self.counts)
            .map(|(&b, n)| (b, n))
            .collect()
    }
}

/// Whether stderr carries JSON logs (`--log-format json`), so that the summary is JSON too.
pub(crate) static JSON_LOGS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Prints the end-of-run summary on stderr: as it is, or with JSON logs as one object
/// `{"summary": "..."}` so that every line stays parseable.
pub(crate) fn print_summary(text: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{}", serde_json::json!({ "summary": text }));
    } else {
        eprintln!("{text}");
    }
}

/// One rule's line of the summary.
pub(crate) struct RuleSummary<'a> {
    /// Its name.
    pub name: &'a str,
    /// Whether it shadows another rule (its alerts are not published).
    pub shadow: bool,
    /// Its counters.
    pub stats: &'a RuleStats,
}

/// The end-of-run summary for stderr.
pub(crate) fn summary(
    input: &InputStats,
    rules: &[RuleSummary<'_>],
    changes: &RuleChanges,
    elapsed: Duration,
) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        input.lines as f64 / secs
    } else {
        0.0
    };
    let mut s = format!(
        "read {} lines in {:.3} s ({:.0} lines/s); bad lines {}",
        input.lines,
        secs,
        rate,
        input.bad.total()
    );
    if input.bad.total() > 0 {
        write!(s, " ({})", input.bad.describe()).unwrap();
    }
    let c = changes;
    if c.added + c.swapped + c.restarted + c.removed + c.rejected > 0 {
        write!(
            s,
            "\nrule changes: added {}, swapped {}, restarted {}, removed {}, rejected {}",
            c.added, c.swapped, c.restarted, c.removed, c.rejected
        )
        .unwrap();
    }
    for &RuleSummary {
        name,
        shadow,
        stats: r,
    } in rules
    {
        write!(
            s,
            "\nrule {name}: events {}, matched {}, late {}, bad {}",
            r.events,
            r.matched,
            r.late,
            r.bad.total()
        )
        .unwrap();
        if r.bad.total() > 0 {
            write!(s, " ({})", r.bad.describe()).unwrap();
        }
        write!(s, ", alerts {}", r.alerts).unwrap();
        if r.suppressed > 0 {
            write!(s, " ({} more in cooldown)", r.suppressed).unwrap();
        }
        if shadow {
            write!(s, " (not published), differences {}", r.shadow_diffs).unwrap();
        }
        if let Some(q) = &r.quarantined {
            write!(s, ", QUARANTINED: {q}").unwrap();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let mut h = Histogram::default();
        for s in [0.00005, 0.0003, 0.0003, 7.0] {
            h.observe(s);
        }
        let b = h.buckets();
        assert_eq!(b[0], (0.00005, 1), "a bound includes its own value");
        assert_eq!(b[3], (0.0005, 2));
        assert_eq!(b.last(), Some(&(f64::MAX, 1)));
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 7.00065).abs() < 1e-9);
    }
}
