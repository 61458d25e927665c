//! Shadow rules: a shadow runs on the same events beside the rule it shadows; its rows are
//! taken out of every trigger before anything is published, and where they differ from the
//! rule's rows of the same trigger — a (window, key, count) only one of them alerts on — the
//! difference is counted and logged.

use super::Pipeline;
use crate::config::Role;
use crate::sink::AlertRow;
use tracing::warn;

/// Most differences from its primary a shadow logs per trigger (all are counted).
const LOGGED_SHADOW_DIFFS: usize = 20;

/// A (window start, key, count) one of the two rules alerted on and the other did not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Difference<'a> {
    /// Window start, epoch ms.
    pub start: i64,
    /// The key.
    pub key: &'a str,
    /// The count.
    pub count: u64,
    /// The shadow alerted (else the rule it shadows did).
    pub by_shadow: bool,
}

/// Where the rows of `shadow` differ from those of `primary`, both from one trigger.
pub(crate) fn differences<'a>(
    rows: &'a [AlertRow],
    shadows: &'a [AlertRow],
    shadow: &str,
    primary: &str,
) -> Vec<Difference<'a>> {
    let view = |rows: &'a [AlertRow], name: &str| {
        let mut v: Vec<(i64, &'a str, u64)> = rows
            .iter()
            .filter(|row| row.rule.name == name)
            .map(|row| (row.start, row.key.as_str(), row.count))
            .collect();
        v.sort_unstable();
        v
    };
    let (ours, theirs) = (view(shadows, shadow), view(rows, primary));
    let mut out = Vec::new();
    for (only, other, by_shadow) in [(&ours, &theirs, true), (&theirs, &ours, false)] {
        // Both are sorted: a binary search keeps large triggers linear-logarithmic.
        for &(start, key, count) in only.iter().filter(|x| other.binary_search(x).is_err()) {
            out.push(Difference {
                start,
                key,
                count,
                by_shadow,
            });
        }
    }
    out
}

impl Pipeline {
    /// Takes the shadows' rows out of this trigger and reports where they differ from the
    /// rows of the rules they shadow.
    pub(super) fn compare_shadows(&mut self) {
        if !self.rules.iter().any(|r| r.meta.role.is_shadow()) {
            return;
        }
        let (shadows, rows): (Vec<AlertRow>, Vec<AlertRow>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|r| r.rule.role.is_shadow());
        self.rows = rows;
        for r in self.rules.iter_mut() {
            let Role::Shadow { of: primary } = &r.meta.role else {
                continue;
            };
            let name = &r.meta.name;
            let diffs = differences(&self.rows, &shadows, name, primary);
            r.stats.shadow_diffs += diffs.len() as u64;
            for d in diffs.iter().take(LOGGED_SHADOW_DIFFS) {
                let (verb, primary_verb) = if d.by_shadow {
                    ("alerts", "does not")
                } else {
                    ("does not alert", "does")
                };
                warn!(
                    "rule {name}: {verb} {} {} with count {}, {primary} {primary_verb}",
                    crate::decode::time::format_rfc3339(d.start),
                    crate::text::shown(d.key),
                    d.count,
                );
            }
            if diffs.len() > LOGGED_SHADOW_DIFFS {
                warn!(
                    "rule {name}: {} more differences in this trigger (counted, not logged)",
                    diffs.len() - LOGGED_SHADOW_DIFFS
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OutputMode;
    use crate::sink::RuleMeta;
    use std::sync::Arc;

    fn rows(rule: &str, role: Role, alerts: &[(i64, &str, u64)]) -> Vec<AlertRow> {
        let meta = Arc::new(RuleMeta {
            name: rule.into(),
            role,
            sha256: String::new(),
            key_column: "user_id".into(),
            count_column: "count".into(),
            mode: OutputMode::Append,
        });
        alerts
            .iter()
            .map(|&(start, key, count)| AlertRow {
                rule: Arc::clone(&meta),
                start,
                end: start + 10,
                key: key.into(),
                count,
                watermark: None,
                evidence: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn only_rows_one_side_alerts_on_are_differences_in_either_direction() {
        let shadow = Role::Shadow { of: "crash".into() };
        let mut published = rows("crash", Role::Primary, &[(0, "a", 3), (0, "b", 4)]);
        // Another rule's rows are not compared.
        published.extend(rows("other", Role::Primary, &[(0, "z", 9)]));
        let shadows = rows(
            "crash (shadow)",
            shadow,
            &[(0, "b", 4), (0, "a", 5), (10, "c", 3)],
        );
        let d = differences(&published, &shadows, "crash (shadow)", "crash");
        let found: Vec<(i64, &str, u64, bool)> = d
            .iter()
            .map(|d| (d.start, d.key, d.count, d.by_shadow))
            .collect();
        assert_eq!(
            found,
            vec![(0, "a", 5, true), (10, "c", 3, true), (0, "a", 3, false)]
        );
        assert!(differences(&published, &rows("s", Role::Primary, &[]), "s", "none").is_empty());
    }
}
