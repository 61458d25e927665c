//! Live rule changes, applied between batches. A new version of a rule with the same
//! window settings takes over its windows (a swap); with other window settings the old
//! windows are closed and emitted first, as at the end of input (a restart). A removed rule
//! closes and emits its windows, or drops them with `on_delete = "drop"`. A version that
//! does not start leaves the running one in place, with the reason on the status page.

use super::Pipeline;
use super::runner::RuleRunner;
use crate::config::OnDelete;
use crate::registry::LoadedRule;
use crate::registry::watch::{Change, Changes};
use crate::sink::Sink;
use crate::window::Windows;
use std::time::Instant;
use tracing::{error, info};

impl Pipeline {
    /// Applies the rule changes that are ready.
    pub(crate) fn apply_ready(
        &mut self,
        changes: &Changes,
        sink: &mut dyn Sink,
    ) -> anyhow::Result<()> {
        if let Some(rx) = changes {
            while let Ok(change) = rx.try_recv() {
                self.apply(change, sink)?;
            }
        }
        Ok(())
    }

    /// Applies a change of the rules folder.
    pub(crate) fn apply(&mut self, change: Change, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let started = Instant::now();
        match change {
            Change::Upsert(rule) => {
                self.upsert(&rule, sink)?;
                self.restart_fronts();
            }
            Change::Remove(name) => {
                self.remove(&name, sink)?;
                self.restart_fronts();
            }
            Change::Rejected { rule, error } => {
                self.changes.rejected += 1;
                if let Some(r) = self
                    .rules
                    .iter_mut()
                    .find(|r| Some(&r.meta.name) == rule.as_ref())
                {
                    r.last_error = Some(error);
                }
            }
        }
        tracing::debug!("rule change applied in {:?}", started.elapsed());
        Ok(())
    }

    fn remove(&mut self, name: &str, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let Some(i) = self.rules.iter().position(|r| r.meta.name == name) else {
            return Ok(());
        };
        let fate = match self.rules[i].on_delete {
            OnDelete::Flush => {
                self.close_rule(i, sink)?;
                "closed and emitted"
            }
            OnDelete::Drop => "dropped (on_delete = \"drop\")",
        };
        self.rules.remove(i);
        self.changes.removed += 1;
        info!("rule {name}: removed; its open windows were {fate}");
        Ok(())
    }

    fn upsert(&mut self, rule: &LoadedRule, sink: &mut dyn Sink) -> anyhow::Result<()> {
        let name = &rule.name;
        let index = self.rules.iter().position(|r| &r.meta.name == name);
        let mut runner = match RuleRunner::new(rule, self.mode) {
            Ok(r) => r,
            Err(e) => {
                error!(
                    "rule {name}: the new version does not start ({e}); the running version stays"
                );
                return Ok(());
            }
        };
        if let Err(e) = self.set_counting(&mut runner) {
            error!("{e}; the running version stays");
            self.changes.rejected += 1;
            if let Some(i) = index {
                self.rules[i].last_error = Some(e);
            }
            return Ok(());
        }
        let sha = &runner.meta.sha256;
        match index {
            None => {
                info!("rule {name}: added (module sha256 {sha}); its windows start empty");
                self.rules.push(runner);
                self.changes.added += 1;
            }
            Some(i) if self.rules[i].settings == runner.settings => {
                let old = &mut self.rules[i];
                info!(
                    "rule {name}: now running module sha256 {sha} (was {}); windows kept",
                    old.meta.sha256
                );
                runner.windows = std::mem::replace(&mut old.windows, Windows::empty());
                // Equal settings: both count the same way, and the forwarder's progress
                // goes on.
                std::mem::swap(&mut runner.counting, &mut old.counting);
                runner.stats = std::mem::take(&mut old.stats);
                runner.version = old.version + 1;
                *old = runner;
                self.changes.swapped += 1;
            }
            Some(i) => {
                let was = self.rules[i].settings.to_string();
                self.close_rule(i, sink)?;
                info!(
                    "rule {name}: window settings changed ({was} -> {}); its open windows were \
                     closed and emitted, and it restarts with empty windows (module sha256 {sha})",
                    runner.settings
                );
                runner.stats = std::mem::take(&mut self.rules[i].stats);
                runner.version = self.rules[i].version + 1;
                self.rules[i] = runner;
                self.changes.restarted += 1;
            }
        }
        Ok(())
    }

    /// Sets how `runner` counts, from the repartitioning set up at start; an error (with
    /// the way out) if it would need an internal topic that was not.
    pub(super) fn set_counting(&self, runner: &mut RuleRunner) -> Result<(), String> {
        if let Some(rp) = &self.repartitioning {
            runner.set_counting(rp.counting_for(&runner.meta.name, &runner.settings.key)?);
        }
        Ok(())
    }

    /// Closes every window of rule `i` and emits the result, as at the end of input.
    fn close_rule(&mut self, i: usize, sink: &mut dyn Sink) -> anyhow::Result<()> {
        self.rows.clear();
        let inputs = self.repartitioning.as_ref().map(|r| r.inputs.as_slice());
        if let Err(e) = self.rules[i].trigger(true, &mut self.rows, &self.sources, inputs) {
            self.rules[i].quarantine(e);
        }
        // A shadow's rows are never published.
        self.rows.retain(|r| !r.rule.role.is_shadow());
        self.emit(sink)
    }
}
