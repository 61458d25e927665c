//! Input no rule can use: every line is counted by reason, the first few of each reason are
//! logged with their position and what to do, and all go to the dead-letter output if one
//! is set (late events to the late output), so that nothing is lost without a trace.

use super::BatchContext;
use super::front::Filtered;
use super::runner::RuleRunner;
use crate::decode::{LineError, Reason};
use crate::metrics::InputStats;
use crate::sink::records::RejectSink;
use crate::source::lines::Line;
use anyhow::Context;
use tracing::warn;

/// How many problems of one kind are logged before they are only counted (for the input,
/// and for each rule on its own, so that one rule's noise hides no other's).
const LOGGED_PER_REASON: u64 = 5;

/// Optional outputs for rejected input.
#[derive(Default)]
pub(crate) struct Rejects {
    /// Dead letters: lines that could not be used.
    pub dead_letter: Option<Box<dyn RejectSink>>,
    /// Late events.
    pub late: Option<Box<dyn RejectSink>>,
}

impl Rejects {
    /// Flushes both outputs; the first write error since the last flush.
    pub(crate) fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(w) = &mut self.dead_letter {
            w.flush().context("cannot write dead letters")?;
        }
        if let Some(w) = &mut self.late {
            w.flush().context("cannot write late events")?;
        }
        Ok(())
    }
}

/// Problems logged so far, per reason, for rate limiting.
#[derive(Default)]
pub(crate) struct Logged([u64; Reason::ALL.len()]);

impl Logged {
    /// Whether one more problem of `reason` is logged (`rule`: of that rule's fields); says
    /// so once when it is not any more.
    pub(crate) fn allow(&mut self, reason: Reason, rule: Option<&str>) -> bool {
        let n = &mut self.0[reason.index()];
        *n += 1;
        if *n == LOGGED_PER_REASON + 1 {
            warn!(
                "more {} input{}: counted (see the summary) and, with a dead-letter output, \
                 written there, but no longer logged",
                reason.label(),
                rule.map(|r| format!(" for rule {r}")).unwrap_or_default()
            );
        }
        *n <= LOGGED_PER_REASON
    }
}

/// The input's own accounting: lines read, lines no rule can use, and what was logged.
#[derive(Default)]
pub(crate) struct InputTally {
    /// Lines read and rejected, by reason.
    pub stats: InputStats,
    /// Problems logged so far.
    pub logged: Logged,
}

impl InputTally {
    /// Counts the input lines of chunk `c` and rejects, in line order, what could not be
    /// used: lines no rule can use, and events a rule could not read.
    pub(crate) fn reject_unusable(
        &mut self,
        c: &Filtered,
        rules: &mut [RuleRunner],
        ctx: &mut BatchContext<'_>,
    ) {
        self.stats.lines += c.input_lines;
        let mut next_line_error = c.line_errors.iter().peekable();
        // Only running rules' (a front may have run one the batch before stopped).
        let mut next_field_error: Vec<_> = (c.rules.iter().zip(rules.iter()))
            .map(|(f, r)| {
                let errors = if r.instance.is_some() {
                    &f.field_errors[..]
                } else {
                    &[]
                };
                errors.iter().peekable()
            })
            .collect();
        loop {
            // The earliest line; a line no rule can use has no field errors.
            let mut earliest = next_line_error.peek().map(|&&(line, _)| (line, None));
            for (r, errors) in next_field_error.iter_mut().enumerate() {
                if let Some(&&(line, _)) = errors.peek()
                    && earliest.is_none_or(|(first, _)| line < first)
                {
                    earliest = Some((line, Some(r)));
                }
            }
            match earliest {
                None => return,
                Some((_, None)) => {
                    let (line, e) = next_line_error.next().expect("peeked");
                    self.reject(&ctx.lines[*line as usize], e, ctx);
                }
                Some((_, Some(r))) => {
                    let (line, e) = next_field_error[r].next().expect("peeked");
                    rules[r].reject_field(e, &ctx.lines[*line as usize], ctx);
                }
            }
        }
    }

    /// Counts, logs (rate-limited) and dead-letters a line no rule can use.
    fn reject(&mut self, line: &Line, e: &LineError, ctx: &mut BatchContext<'_>) {
        self.stats.bad.add(e.reason);
        let pos = ctx.sources.position(line);
        if self.logged.allow(e.reason, None) {
            warn!("{pos}: {e} [{}]; {}", e.reason.label(), e.reason.hint());
        }
        if let Some(dl) = &mut ctx.rejects.dead_letter {
            let raw = &ctx.buf[line.range.clone()];
            dl.dead_letter(pos, e.reason.label(), &e.to_string(), None, raw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_is_logged_a_few_times_on_its_own_count() {
        let mut logged = Logged::default();
        let allowed = (0..10)
            .filter(|_| logged.allow(Reason::NotJson, None))
            .count();
        assert_eq!(allowed as u64, LOGGED_PER_REASON);
        assert!(logged.allow(Reason::TooLarge, None), "another reason");
    }
}
