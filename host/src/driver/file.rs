//! The file driver: JSON lines from a file or stdin, batch by batch through the pipeline,
//! rule changes applied between batches, then the end of the input closes every window.
//! `replay`, `bench` and `rulewatch test` all run through [`drive`].

use crate::pipeline::{BATCH_LINES, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::lines::LineReader;
use crate::status::{Publisher, RuleState, Status};
use anyhow::Context;
use std::io::Read;

/// Feeds a whole stream through the pipeline, then ends it. Lines longer than `max_line`
/// are rejected as too large; `changes` are applied between batches; `status`, if given,
/// is published as the replay goes.
pub fn drive(
    pipeline: &mut Pipeline,
    input: impl Read,
    max_line: usize,
    sink: &mut dyn Sink,
    changes: &Changes,
    mut status: Option<&mut Publisher>,
) -> anyhow::Result<()> {
    let mut reader = LineReader::new(input, max_line);
    let mut lines = Vec::with_capacity(BATCH_LINES);
    while reader
        .next_batch(BATCH_LINES, &mut lines)
        .context("reading the input")?
    {
        pipeline.apply_ready(changes, sink)?;
        pipeline.process(reader.buffer(), &lines, sink)?;
        tracing::debug!("processed a batch of {} lines", lines.len());
        if let Some(p) = status.as_mut() {
            // A short batch means the input is slower than we are: show it at once.
            p.publish(lines.len() < BATCH_LINES, |s| file_status(pipeline, s));
        }
    }
    pipeline.finish(sink)?;
    if let Some(p) = status {
        p.publish(true, |s| file_status(pipeline, s));
    }
    Ok(())
}

/// The status of a file replay: ready while a rule runs.
fn file_status(pipeline: &Pipeline, s: &mut Status) {
    pipeline.status(s);
    s.ready = s.rules.iter().any(|r| r.state == RuleState::Running);
}
