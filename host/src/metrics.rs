//! Counters of what the pipeline did, per input and per rule, and the summary printed at the
//! end of a run.

use crate::decode::Reason;
use std::fmt::Write as _;
use std::time::Duration;

/// Counts per [`Reason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonCounts([u64; Reason::ALL.len()]);

impl ReasonCounts {
    /// Adds one for `reason`.
    pub fn add(&mut self, reason: Reason) {
        self.0[reason.index()] += 1;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()]
    }

    /// All counts together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `not_json 3, missing_field 1`, omitting zeros.
    pub fn describe(&self) -> String {
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
pub struct InputStats {
    /// Lines read.
    pub lines: u64,
    /// Lines no rule could use, by reason (not UTF-8, not JSON, not an object, too large).
    pub bad: ReasonCounts,
}

/// Counters of changes to the set of running rules.
#[derive(Clone, Debug, Default)]
pub struct RuleChanges {
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
pub struct RuleStats {
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
}

/// The end-of-run summary for stderr.
pub fn summary(
    input: &InputStats,
    rules: &[(&str, &RuleStats)],
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
    for (name, r) in rules {
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
        if name.ends_with(crate::config::SHADOW_SUFFIX) {
            write!(s, " (not published), differences {}", r.shadow_diffs).unwrap();
        }
        if let Some(q) = &r.quarantined {
            write!(s, ", QUARANTINED: {q}").unwrap();
        }
    }
    s
}
