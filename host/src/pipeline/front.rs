//! The filter stage: the part of a batch that runs on any core. A [`Front`] decodes a
//! chunk of lines once, projects each running rule's fields into that rule's event batch,
//! and asks the rule's own instance which events it selects. It touches no window, counter
//! or output: what it found ([`Filtered`]) the pipeline applies afterwards, chunk by chunk in
//! line order, so the result does not depend on how many fronts split the batch.
//!
//! Each front has its own decoder and its own instance of every rule (a wasmtime store
//! belongs to one thread); a filter must therefore decide each event on its own, which the
//! SDK's `filter(&self, …)` already asks of it.

use crate::config::sandbox::ceilings;
use crate::decode::{Decoder, FieldError, LineError, Projection, Reason};
use crate::registry::LoadedRule;
use crate::rules::{RuleError, RuleInstance};
use crate::source::lines::Line;
use rulewatch_sdk::abi::BatchWriter;
use std::time::{Duration, Instant};

/// Largest encoded batch handed to a rule in one call (a single larger row goes alone), and
/// at most an eighth of its memory: what others send never swamps a rule's memory.
const MAX_RULE_BATCH_BYTES: usize = 4 << 20;

/// A line over the record size, rejected before decoding.
const TOO_LARGE: LineError = LineError {
    reason: Reason::TooLarge,
    at: None,
    detail: "longer than the maximum record size",
};

/// The filter stage of every rule, for one core.
pub(crate) struct Front {
    decoder: Decoder,
    rules: Vec<FrontRule>,
}

/// One rule's filter stage.
struct FrontRule {
    /// The rule version's identity ([`FrontSpec::id`]).
    id: u64,
    projection: Projection,
    /// `None` once its filter failed here.
    instance: Option<RuleInstance>,
    events: BatchWriter,
    /// Most bytes of one batch to the rule.
    batch_bytes: usize,
}

/// What one front found in a chunk of a batch.
#[derive(Default)]
pub(crate) struct Filtered {
    /// Input lines decoded or rejected (lines of repartition topics are not input).
    pub input_lines: u64,
    /// Lines no rule can use: the line's index in the batch, and why.
    pub line_errors: Vec<(u32, LineError)>,
    /// Per rule, in the pipeline's order.
    pub rules: Vec<RuleFiltered>,
    /// Time spent decoding and projecting.
    pub decode_time: Duration,
}

/// What one front found for one rule in a chunk.
#[derive(Default)]
pub(crate) struct RuleFiltered {
    /// Events it staged (their fields could be read).
    pub events: u64,
    /// Events whose fields it could not read: the line's index in the batch, and why.
    pub field_errors: Vec<(u32, FieldError)>,
    /// Its filter calls, in line order; only the first `calls_used` are this chunk's.
    pub calls: Vec<FilterCall>,
    pub calls_used: usize,
    /// Why its filter failed in this chunk.
    pub failed: Option<RuleError>,
    /// Time spent in its filter.
    pub filter_time: Duration,
}

/// One filter call: the encoded event batch, the rule's selection bitmap, and the batch
/// index of each row's line.
#[derive(Default)]
pub(crate) struct FilterCall {
    pub encoded: Vec<u8>,
    pub selected: Vec<u8>,
    pub lines: Vec<u32>,
}

impl RuleFiltered {
    /// The filter calls of this chunk.
    pub(crate) fn calls(&self) -> &[FilterCall] {
        &self.calls[..self.calls_used]
    }

    fn clear(&mut self) {
        self.events = 0;
        self.field_errors.clear();
        self.calls_used = 0;
        // Each call's `encoded` and `selected` are overwritten when it is made; its lines
        // are pushed as they are staged, so they start empty.
        self.calls.iter_mut().for_each(|c| c.lines.clear());
        self.failed = None;
        self.filter_time = Duration::ZERO;
    }
}

/// What a front needs of a rule: the rule, whether it runs, and the identity of its
/// version (a front keeps an instance of the same version across rule changes).
pub(crate) struct FrontSpec<'a> {
    pub rule: &'a LoadedRule,
    pub running: bool,
    pub id: u64,
}

impl Front {
    /// A front for `rules`; a rule that is not running gets none of its events. An error
    /// names the index of the rule whose instance did not start.
    pub(crate) fn new(rules: &[FrontSpec<'_>]) -> Result<Self, (usize, RuleError)> {
        let mut front = Front {
            decoder: Decoder::default(),
            rules: Vec::new(),
        };
        front.renew(rules)?;
        Ok(front)
    }

    /// Follows a change of the rules: keeps the instances of the versions still running and
    /// starts the others. On an error (the index of the rule whose instance did not start)
    /// the front has no rules until renewed again.
    pub(crate) fn renew(&mut self, rules: &[FrontSpec<'_>]) -> Result<(), (usize, RuleError)> {
        let mut decoder = Decoder::default();
        let mut old = std::mem::take(&mut self.rules);
        let mut renewed = Vec::with_capacity(rules.len());
        for (i, spec) in rules.iter().enumerate() {
            let kept = (old.iter_mut().find(|r| r.id == spec.id)).and_then(|r| r.instance.take());
            renewed.push(FrontRule::new(spec, &mut decoder, kept).map_err(|e| (i, e))?);
        }
        self.decoder = decoder;
        self.rules = renewed;
        Ok(())
    }

    /// Stops giving its events to each rule that is not `running` (by index) any more: it
    /// was quarantined.
    pub(crate) fn keep_running(&mut self, running: &[bool]) {
        for (r, _) in self.rules.iter_mut().zip(running).filter(|(_, run)| !**run) {
            r.instance = None;
            r.batch_bytes = 0;
        }
    }

    /// Filters the lines `lines` (the batch's lines from index `first` on; `buf` holds the
    /// batch's bytes) into `out`. Lines whose source `skip` says are not input are left out.
    pub(crate) fn filter(
        &mut self,
        buf: &[u8],
        lines: &[Line],
        first: usize,
        skip: &(dyn Fn(&Line) -> bool + Sync),
        out: &mut Filtered,
    ) {
        let started = Instant::now();
        out.input_lines = 0;
        out.line_errors.clear();
        out.rules
            .resize_with(self.rules.len(), RuleFiltered::default);
        out.rules.iter_mut().for_each(RuleFiltered::clear);
        for r in &mut self.rules {
            r.events.reset(r.projection.kinds());
        }
        let mut filter_time = Duration::ZERO;
        for (i, line) in lines.iter().enumerate() {
            if skip(line) {
                continue;
            }
            let index = (first + i) as u32;
            out.input_lines += 1;
            let decoded = if line.too_large {
                Err(TOO_LARGE)
            } else {
                self.decoder.decode(&buf[line.range.clone()])
            };
            let rec = match decoded {
                Ok(rec) => rec,
                Err(e) => {
                    out.line_errors.push((index, e));
                    continue;
                }
            };
            for (r, f) in self.rules.iter_mut().zip(&mut out.rules) {
                if r.batch_bytes == 0 {
                    continue; // not running
                }
                match r.projection.project(&rec, &mut r.events) {
                    Ok(_) => {
                        f.events += 1;
                        current_call(f).lines.push(index);
                        if r.events.encoded_len() >= r.batch_bytes {
                            filter_time += r.call(f);
                        }
                    }
                    Err(e) => f.field_errors.push((index, e)),
                }
            }
        }
        for (r, f) in self.rules.iter_mut().zip(&mut out.rules) {
            filter_time += r.call(f);
        }
        out.decode_time = started.elapsed().saturating_sub(filter_time);
    }
}

/// The call being staged: the one after the used ones, made ready if new.
fn current_call(f: &mut RuleFiltered) -> &mut FilterCall {
    if f.calls.len() == f.calls_used {
        f.calls.push(FilterCall::default());
    }
    &mut f.calls[f.calls_used]
}

impl FrontRule {
    /// The filter stage of `spec`'s rule, with fields registered in `decoder`, using the
    /// instance `kept` if it has one for a running rule.
    fn new(
        spec: &FrontSpec<'_>,
        decoder: &mut Decoder,
        kept: Option<RuleInstance>,
    ) -> Result<Self, RuleError> {
        let (rule, running) = (spec.rule, spec.running);
        let c = &rule.config;
        let projection = Projection::new(
            decoder,
            &c.time.field,
            c.time.format,
            &c.window.key,
            rule.module.fields(),
        )
        .with_max_key_bytes(usize::try_from(ceilings().max_key_bytes).unwrap_or(usize::MAX));
        let instance = match (running, kept) {
            (false, _) => None,
            (true, Some(kept)) => Some(kept),
            (true, None) => {
                let limits = &c.limits;
                let params = c.params_json();
                Some(
                    rule.module
                        .instantiate(&params, limits.memory, limits.time_per_batch)?,
                )
            }
        };
        Ok(FrontRule {
            id: spec.id,
            projection,
            instance,
            events: BatchWriter::default(),
            // Zero: the rule gets no events.
            batch_bytes: if running { batch_bytes(rule) } else { 0 },
        })
    }

    /// Runs the filter over the staged events into the current call and starts a new one;
    /// the time it took. A failure is kept in `f`; no later call is made here.
    fn call(&mut self, f: &mut RuleFiltered) -> Duration {
        let rows = self.events.rows();
        if rows == 0 {
            return Duration::ZERO;
        }
        let started = Instant::now();
        let call = current_call(f);
        self.events.finish(&mut call.encoded);
        self.events.reset(self.projection.kinds());
        call.selected.clear();
        match self
            .instance
            .as_mut()
            .map(|i| i.filter(&call.encoded, rows))
        {
            Some(Ok(selected)) => call.selected.extend_from_slice(selected),
            Some(Err(e)) => {
                f.failed.get_or_insert(e);
                self.instance = None;
            }
            // Failed earlier in this chunk: its events are counted, never applied.
            None => {}
        }
        f.calls_used += 1;
        let took = started.elapsed();
        f.filter_time += took;
        took
    }
}

/// Most bytes of one filter call for `rule`.
pub(crate) fn batch_bytes(rule: &LoadedRule) -> usize {
    usize::try_from(rule.config.limits.memory / 8)
        .unwrap_or(usize::MAX)
        .clamp(64 << 10, MAX_RULE_BATCH_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::crash;

    #[test]
    fn renewing_keeps_the_instances_of_versions_still_running() {
        let good = crash("user_id");
        let spec = |rule, id| FrontSpec {
            rule,
            running: true,
            id,
        };
        let mut front = Front::new(&[spec(&good, 1)]).unwrap();
        // A config whose init would refuse: only starting a new instance would notice.
        let mut refused = good.clone();
        refused.config.params = toml::from_str("threshold = \"many\"").unwrap();
        front
            .renew(&[spec(&refused, 1)])
            .expect("version 1 is kept, not restarted");
        let (i, e) = front
            .renew(&[spec(&good, 1), spec(&refused, 2)])
            .unwrap_err();
        assert_eq!(i, 1);
        assert!(matches!(e, RuleError::Init(_)), "{e}");
    }
}
