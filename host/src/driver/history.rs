//! The loop of a backtest (`replay --brokers`): a topic's history through the pipeline as
//! a file replay goes through it — batches in, rule changes applied between them, the
//! status published — and every window closed at the end. Each partition keeps its own
//! watermark, as in `run`; no partition is ever idle, since each has data until its end.

use super::file::{end, publish};
use crate::pipeline::{BATCH_LINES, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::kafka::history::History;
use crate::status::Publisher;
use std::time::Duration;
use tracing::info;

/// How long a poll waits for records.
const POLL: Duration = Duration::from_millis(100);

/// Feeds the history to `pipeline` until every partition is read to its end, then closes
/// every window.
pub fn drive(
    pipeline: &mut Pipeline,
    history: &mut History,
    sink: &mut dyn Sink,
    changes: &Changes,
    mut status: Option<&mut Publisher>,
) -> anyhow::Result<()> {
    for (i, name) in history.names() {
        pipeline.name_source(i, name);
    }
    let mut lines = Vec::with_capacity(BATCH_LINES);
    while !history.done() {
        history.next_batch(BATCH_LINES, POLL, &mut lines)?;
        pipeline.apply_ready(changes, sink)?;
        if !lines.is_empty() {
            pipeline.process(history.buffer(), &lines, sink)?;
            publish(pipeline, &lines, status.as_deref_mut());
        }
    }
    if history.early > 0 {
        info!(
            "backtest: skipped {} records stamped before --from that came after its first offset",
            history.early
        );
    }
    end(pipeline, sink, status)
}
