//! What the pipeline tells people: the run summary printed at the end, and the status the
//! page, `/metrics` and `/readyz` are made from (the driver adds what its source knows).

use super::Pipeline;
use super::runner::RuleRunner;
use crate::decode::Reason;
use crate::metrics::RuleSummary;
use crate::source::PartitionId;
use crate::status::{PartitionStatus, RuleState, RuleStatus, Status, WindowStatus};

impl Pipeline {
    /// Input lines read so far (blank and rejected ones too).
    pub(crate) fn input_lines(&self) -> u64 {
        self.input.stats.lines
    }

    /// The run summary for stderr: input and per-rule counters over `elapsed`.
    pub(crate) fn summary(&self, elapsed: std::time::Duration) -> String {
        let rules: Vec<RuleSummary<'_>> = self
            .rules
            .iter()
            .map(|r| RuleSummary {
                name: &r.meta.name,
                shadow: r.meta.role.is_shadow(),
                stats: &r.stats,
            })
            .collect();
        crate::metrics::summary(&self.input.stats, &rules, &self.changes, elapsed)
    }

    /// Fills `s` with the counters, rules, latest alerts and per-source watermarks; the
    /// caller adds what the source knows (assignment, idleness, lag) to `s.partitions`.
    pub(crate) fn status(&self, s: &mut Status) {
        s.totals.events = self.input_lines();
        s.totals.alerts = 0;
        s.totals.late = 0;
        s.bad.clear();
        for r in Reason::ALL {
            let n = self.input.stats.bad.get(r)
                + self.rules.iter().map(|x| x.stats.bad.get(r)).sum::<u64>();
            if n > 0 {
                s.bad.insert(r.label(), n);
            }
        }
        s.totals.bad = s.bad.values().sum();
        s.rules.clear();
        for r in &self.rules {
            if !r.meta.role.is_shadow() {
                s.totals.alerts += r.stats.alerts;
                s.totals.late += r.stats.late;
            }
            s.rules.push(self.rule_status(r));
        }
        s.alerts.clear();
        s.alerts.extend(self.recent.iter().rev().cloned());
        s.rule_changes = self.changes.clone();
        s.partitions.clear();
        let files = self.sources.are_files();
        for (i, name) in self.sources.names() {
            let (topic, partition) = match PartitionId::parse(name) {
                Some(p) if !files => (p.topic, p.partition),
                _ => (name, 0),
            };
            let rule_watermarks: Vec<(String, i64)> = self
                .rules
                .iter()
                .filter_map(|r| Some((r.meta.name.clone(), r.windows.watermark_of(i)?)))
                .collect();
            s.partitions.push(PartitionStatus {
                topic: topic.to_owned(),
                partition,
                // A file is read at once; partitions are marked by the caller.
                assigned: files,
                watermark_ms: rule_watermarks.iter().map(|(_, w)| *w).min(),
                rule_watermarks,
                idle: false,
                lag: None,
            });
        }
    }

    /// What the status says of rule `r`.
    fn rule_status(&self, r: &RuleRunner) -> RuleStatus {
        let shadow = r.meta.role.is_shadow();
        let inputs = self.repartitioning.as_ref().map(|rp| rp.inputs.as_slice());
        let forwarder = r.counting.forwarder();
        let w = &r.settings;
        RuleStatus {
            name: r.meta.name.clone(),
            state: match (&r.instance, shadow) {
                (None, _) => RuleState::Quarantined,
                (Some(_), true) => RuleState::Shadow,
                (Some(_), false) => RuleState::Running,
            },
            version: r.version,
            sha256: r.meta.sha256.clone(),
            last_error: r.stats.quarantined.clone().or(r.last_error.clone()),
            repartition_topic: forwarder.map(|f| f.topic().to_owned()),
            matched: r.stats.matched,
            late: r.stats.late,
            bad: r.stats.bad.total(),
            bad_by_reason: Reason::ALL
                .iter()
                .map(|&x| (x.label(), r.stats.bad.get(x)))
                .filter(|&(_, n)| n > 0)
                .collect(),
            alerts: r.stats.alerts,
            log_lines: crate::rules::wasi::log_lines_of(&r.meta.name),
            watermark_ms: r.windows.watermark(),
            open_pairs: r.windows.open_pairs(),
            window: WindowStatus {
                key: w.key.clone(),
                size_ms: w.size.as_millis() as i64,
                slide_ms: w.slide.as_millis() as i64,
                delay_ms: w.delay.as_millis() as i64,
            },
            key_column: r.meta.key_column.clone(),
            count_column: r.meta.count_column.clone(),
            params: r.params.clone(),
            batch_seconds: r.stats.batch_seconds.clone(),
            held_by: forwarder
                .zip(inputs)
                .and_then(|(f, inputs)| f.held_by(inputs))
                .map(|(name, d)| (name, d.as_secs_f64())),
        }
    }
}
