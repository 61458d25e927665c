//! The file driver: JSON lines from a file or stdin, batch by batch through the pipeline,
//! rule changes applied between batches, then the end of the input closes every window.
//! `replay`, `bench` and `rulewatch test` all run through [`drive`].
//!
//! With several workers whole batches are kept in flight through the pipeline's worker
//! stage: batch after batch is read and split (for a file on this thread, whose disk reads
//! never wait long; for a stream that may pause, on a reader thread, so that this thread
//! never waits on it and what a slow producer sent is applied at once, as with one worker);
//! this thread applies rule changes between batches and queues each batch for the workers,
//! then applies what they found strictly in input order (the stage hands batches back in
//! order, and this thread filters queued ones itself rather than wait). The output is that
//! of one worker, byte for byte, and at most a few batches are in flight: memory stays flat.

use crate::pipeline::{BATCH_LINES, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::lines::{Line, LineReader};
use crate::status::{Publisher, Status};
use anyhow::Context;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

/// Batches in flight per worker.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// Feeds a whole stream through the pipeline, then ends it. `may_wait`: reading `input` may
/// wait on its producer (stdin, a pipe), not only on a disk; with several workers, a thread
/// of its own then reads it. Lines longer than `max_line` are rejected as too large;
/// `changes` are applied between batches; `status`, if given, is published as the replay
/// goes.
pub(crate) fn drive(
    pipeline: &mut Pipeline,
    input: impl Read + Send + 'static,
    may_wait: bool,
    max_line: usize,
    sink: &mut dyn Sink,
    changes: &Changes,
    status: Option<&mut Publisher>,
) -> anyhow::Result<()> {
    let reader = LineReader::new(input, max_line);
    let mut status = status;
    let mut flow = Flow::start(pipeline.workers(), reader, may_wait)?;
    flow.drive(pipeline, sink, changes, &mut status)?;
    end(pipeline, sink, status)
}

/// Ends the input: every window closes, and the status says so.
pub(super) fn end(
    pipeline: &mut Pipeline,
    sink: &mut dyn Sink,
    status: Option<&mut Publisher>,
) -> anyhow::Result<()> {
    pipeline.finish(sink)?;
    if let Some(p) = status {
        p.publish(true, |s| file_status(pipeline, s));
    }
    Ok(())
}

fn next_batch<R: Read>(reader: &mut LineReader<R>, lines: &mut Vec<Line>) -> anyhow::Result<bool> {
    reader
        .next_batch(BATCH_LINES, lines)
        .context("reading the input")
}

/// Publishes the status after a batch of `lines`.
pub(super) fn publish(pipeline: &Pipeline, lines: &[Line], status: Option<&mut Publisher>) {
    tracing::debug!("processed a batch of {} lines", lines.len());
    if let Some(p) = status {
        // A short batch means the input is slower than we are: show it at once.
        p.publish(lines.len() < BATCH_LINES, |s| file_status(pipeline, s));
    }
}

/// The status of a file replay: ready while a rule runs.
fn file_status(pipeline: &Pipeline, s: &mut Status) {
    pipeline.status(s);
    s.ready = s.a_rule_runs();
}

/// A batch read: the reader's buffer its lines point into (held while the batch is in
/// flight; the reader reads into other buffers meanwhile) and its lines.
#[derive(Default)]
struct Batch {
    buf: Arc<Vec<u8>>,
    lines: Arc<Vec<Line>>,
}

/// What the reader thread sends: a batch read, or the end of the input (or why reading
/// stopped).
enum Msg {
    Read(Batch),
    End(anyhow::Result<()>),
}

/// Batches from the input to the pipeline's workers and back, in order.
struct Flow<R> {
    /// Most batches in flight: one per worker and one more each to keep them busy; one
    /// with one worker, so that each batch is applied before the next is read.
    depth: usize,
    /// Batches read and not queued yet.
    read: VecDeque<Batch>,
    /// Batches queued for the workers, oldest first: each is given back to the reader
    /// once applied.
    queued: VecDeque<Batch>,
    /// Gives applied batches back to the reader to fill.
    empty: SyncSender<Batch>,
    /// The input has ended (with this error, if reading failed).
    ended: Option<anyhow::Result<()>>,
    input: Input<R>,
}

/// Where batches are read: on this thread, or on a reader thread that sends them.
enum Input<R> {
    Inline(LineReader<R>, Receiver<Batch>),
    Thread(Receiver<Msg>),
}

impl<R: Read + Send + 'static> Flow<R> {
    /// The flow of `reader` through `workers` workers; a reader thread of its own if
    /// reading `may_wait` on its producer and several workers share the work (with one,
    /// each batch is applied before the next read, which is what a slow producer needs).
    fn start(workers: usize, reader: LineReader<R>, may_wait: bool) -> anyhow::Result<Self> {
        let depth = if workers == 1 {
            1
        } else {
            workers * IN_FLIGHT_PER_WORKER
        };
        let (empty, empty_rx) = sync_channel(depth);
        for _ in 0..depth {
            empty.send(Batch::default())?;
        }
        let input = if may_wait && workers > 1 {
            let (to_main, msgs) = channel();
            // Not scoped: a read may wait on the stream for ever, and must not keep this
            // thread from returning.
            std::thread::Builder::new()
                .name("rulewatch-reader".into())
                .spawn(move || read(reader, &empty_rx, &to_main))?;
            Input::Thread(msgs)
        } else {
            Input::Inline(reader, empty_rx)
        };
        Ok(Flow {
            depth,
            read: VecDeque::new(),
            queued: VecDeque::new(),
            empty,
            ended: None,
            input,
        })
    }

    /// Runs the input to its end through the workers; a read error comes after every batch
    /// read before it is applied, as with one worker.
    fn drive(
        &mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        changes: &Changes,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        loop {
            self.receive(false)?;
            let room = self.queued.len() < self.depth;
            if room && let Some(batch) = self.read.pop_front() {
                self.dispatch(batch, pipeline, sink, changes, status)?;
            } else if room && self.read_inline() {
            } else if !self.queued.is_empty() {
                self.apply_next(pipeline, sink, status)?;
            } else if self.ended.is_some() && self.read.is_empty() {
                return self.ended.take().unwrap_or(Ok(()));
            } else {
                self.receive(true)?;
            }
        }
    }

    /// Takes what the reader thread sent (with `wait`, waits for one message).
    fn receive(&mut self, wait: bool) -> anyhow::Result<()> {
        let Input::Thread(msgs) = &self.input else {
            return Ok(());
        };
        let mut next = if wait {
            Some(msgs.recv().context("the reader stopped")?)
        } else {
            msgs.try_recv().ok()
        };
        while let Some(msg) = next {
            match msg {
                Msg::Read(batch) => self.read.push_back(batch),
                Msg::End(result) => self.ended = Some(result),
            }
            next = msgs.try_recv().ok();
        }
        Ok(())
    }

    /// Reads a batch on this thread if it reads the input and a batch is free; whether it
    /// did (or saw the input end).
    fn read_inline(&mut self) -> bool {
        let Input::Inline(reader, empty) = &mut self.input else {
            return false;
        };
        if self.ended.is_some() {
            return false;
        }
        let Ok(batch) = empty.try_recv() else {
            return false;
        };
        match read_batch(reader, batch) {
            Ok(Some(batch)) => self.read.push_back(batch),
            Ok(None) => self.ended = Some(Ok(())),
            Err(e) => self.ended = Some(Err(e)),
        }
        true
    }

    /// Queues a batch read for the workers, after the rule changes that are ready: a change
    /// applies to the batches read after it came, as with one worker.
    fn dispatch(
        &mut self,
        batch: Batch,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        changes: &Changes,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        if let Some(change) = changes.as_ref().and_then(|rx| rx.try_recv().ok()) {
            // The batches in flight are applied under the rules they saw.
            while !self.queued.is_empty() {
                self.apply_next(pipeline, sink, status)?;
            }
            pipeline.apply(change, sink)?;
            pipeline.apply_ready(changes, sink)?;
        }
        pipeline.submit(&batch.buf, &batch.lines);
        self.queued.push_back(batch);
        Ok(())
    }

    /// Applies the oldest batch in flight once the workers filtered it, and gives it back
    /// to the reader.
    fn apply_next(
        &mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        let chunk = pipeline
            .next_filtered()?
            .context("a batch in flight was lost")?;
        pipeline.apply_chunk(chunk, sink)?;
        let batch = self
            .queued
            .pop_front()
            .context("a batch was applied twice")?;
        publish(pipeline, &batch.lines, status.as_deref_mut());
        // Lets the reader write into the buffer again; the reader may have ended, and then
        // the batch is not needed.
        let _ = self.empty.send(Batch {
            buf: Arc::default(),
            ..batch
        });
        Ok(())
    }
}

/// The reader thread: fills empty batches from `reader` and sends them on, until the input
/// ends (then says so, with the error if reading failed) or nobody listens.
fn read<R: Read>(mut reader: LineReader<R>, empty: &Receiver<Batch>, out: &Sender<Msg>) {
    while let Ok(batch) = empty.recv() {
        let (msg, end) = match read_batch(&mut reader, batch) {
            Ok(Some(batch)) => (Msg::Read(batch), false),
            Ok(None) => (Msg::End(Ok(())), true),
            Err(e) => (Msg::End(Err(e)), true),
        };
        if out.send(msg).is_err() || end {
            return;
        }
    }
}

/// Fills `batch` from `reader` with the next lines and their bytes; `None` at the end of
/// the input.
fn read_batch<R: Read>(
    reader: &mut LineReader<R>,
    mut batch: Batch,
) -> anyhow::Result<Option<Batch>> {
    if !next_batch(reader, Arc::make_mut(&mut batch.lines))? {
        return Ok(None);
    }
    batch.buf = reader.block();
    Ok(Some(batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::{GenConfig, Generator};
    use crate::pipeline::Rejects;
    use crate::pipeline::test_support::{Rows, crash};
    use crate::source::Sources;

    /// A stream that gives `data`, then fails.
    struct Failing(std::io::Cursor<Vec<u8>>);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("the disk went away")),
                n => Ok(n),
            }
        }
    }

    fn input() -> Vec<u8> {
        let config = GenConfig {
            events: 40_000,
            disorder: 5_000.0,
            late_share: 0.02,
            bad: 0.01,
            ..GenConfig::default()
        };
        let mut input = Vec::new();
        Generator::new(config).read_to_end(&mut input).unwrap();
        input
    }

    /// The rows of `input` through `workers` workers, and how the drive ended.
    fn replay(
        input: impl Read + Send + 'static,
        workers: usize,
        may_wait: bool,
    ) -> (Vec<String>, anyhow::Result<()>) {
        let rules = [crash("user_id")];
        let mut p = Pipeline::new(Sources::file("in"), &rules, None, Rejects::default()).unwrap();
        p.set_workers(workers).unwrap();
        let mut sink = Rows::default();
        let result = drive(&mut p, input, may_wait, 1 << 20, &mut sink, &None, None);
        (sink.0, result)
    }

    #[test]
    fn any_number_of_workers_and_either_reader_give_what_one_worker_gives() {
        let input = input();
        let (one, result) = replay(std::io::Cursor::new(input.clone()), 1, false);
        result.unwrap();
        assert!(one.len() > 10, "{}", one.len());
        for (workers, may_wait) in [(1, true), (2, false), (2, true), (4, false), (4, true)] {
            let (rows, result) = replay(std::io::Cursor::new(input.clone()), workers, may_wait);
            result.unwrap();
            assert!(
                rows == one,
                "{workers} workers (may_wait {may_wait}) differ"
            );
        }
    }

    #[test]
    fn a_read_error_comes_after_every_batch_read_before_it() {
        let input = input();
        // Every batch applied, the input not ended (no last trigger closing every window).
        let rules = [crash("user_id")];
        let mut p = Pipeline::new(Sources::file("in"), &rules, None, Rejects::default()).unwrap();
        let mut applied = Rows::default();
        let reader = LineReader::new(std::io::Cursor::new(input.clone()), 1 << 20);
        let mut flow = Flow::start(1, reader, false).unwrap();
        flow.drive(&mut p, &mut applied, &None, &mut None).unwrap();
        assert!(!applied.0.is_empty());
        for (workers, may_wait) in [(1, false), (3, false), (3, true)] {
            let failing = Failing(std::io::Cursor::new(input.clone()));
            let (rows, result) = replay(failing, workers, may_wait);
            let e = format!("{:#}", result.expect_err("the read error"));
            assert!(e.contains("the disk went away"), "{e}");
            assert!(rows == applied.0, "{workers} workers (may_wait {may_wait})");
        }
    }
}
