//! The file driver: JSON lines from a file or stdin, batch by batch through the pipeline,
//! rule changes applied between batches, then the end of the input closes every window.
//! `replay`, `bench` and `rulewatch test` all run through [`drive`].
//!
//! With several workers the batches flow through a pipeline of threads: this thread reads
//! and splits batch after batch and hands each to a worker, which decodes, projects and
//! filters it with its own front; this thread then applies the workers' results strictly in
//! input order. So the output is that of one worker, byte for byte, and at most a few
//! batches are in flight: memory stays flat. Before a read that may wait for the stream,
//! the batches in flight are applied, so that a slow stream's alerts come as with one worker.

use crate::pipeline::{BATCH_LINES, Filtered, Front, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::lines::{Line, LineReader};
use crate::status::{Publisher, RuleState, Status};
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, channel};

/// Batches in flight per worker.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// Feeds a whole stream through the pipeline, then ends it. Lines longer than `max_line`
/// are rejected as too large; `changes` are applied between batches; `status`, if given,
/// is published as the replay goes.
pub fn drive(
    pipeline: &mut Pipeline,
    input: impl Read,
    max_line: usize,
    sink: &mut dyn Sink,
    changes: &Changes,
    status: Option<&mut Publisher>,
) -> anyhow::Result<()> {
    let mut reader = LineReader::new(input, max_line);
    let mut status = status;
    if pipeline.workers() == 1 {
        let mut lines = Vec::with_capacity(BATCH_LINES);
        while next_batch(&mut reader, &mut lines)? {
            pipeline.apply_ready(changes, sink)?;
            pipeline.process(reader.buffer(), &lines, sink)?;
            publish(pipeline, &lines, status.as_deref_mut());
        }
    } else {
        Workers::start(pipeline)?.drive(pipeline, &mut reader, sink, changes, &mut status)?;
    }
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
fn publish(pipeline: &Pipeline, lines: &[Line], status: Option<&mut Publisher>) {
    tracing::debug!("processed a batch of {} lines", lines.len());
    if let Some(p) = status {
        // A short batch means the input is slower than we are: show it at once.
        p.publish(lines.len() < BATCH_LINES, |s| file_status(pipeline, s));
    }
}

/// The status of a file replay: ready while a rule runs.
fn file_status(pipeline: &Pipeline, s: &mut Status) {
    pipeline.status(s);
    s.ready = s.rules.iter().any(|r| r.state == RuleState::Running);
}

/// A batch on its way: its number, bytes and lines, and what a worker found in it.
#[derive(Default)]
struct Batch {
    seq: u64,
    buf: Vec<u8>,
    lines: Vec<Line>,
    filtered: Filtered,
}

/// Copies the bytes of `batch`'s lines out of the reader's buffer, and points the lines at
/// the copy.
fn copy_out(buffer: &[u8], batch: &mut Batch) {
    let text = || batch.lines.iter().filter(|l| !l.too_large);
    let start = text().map(|l| l.range.start).min().unwrap_or(0);
    let end = text().map(|l| l.range.end).max().unwrap_or(0);
    batch.buf.clear();
    batch.buf.extend_from_slice(&buffer[start..end]);
    for l in batch.lines.iter_mut().filter(|l| !l.too_large) {
        l.range = l.range.start - start..l.range.end - start;
    }
}

/// What a worker is asked to do.
enum Job {
    /// Filter a batch, giving no events to the rules not `running`.
    Filter { batch: Batch, running: Vec<bool> },
    /// Use this front from now on (the rules changed).
    Replace(Box<Front>),
}

/// The worker threads and the batches in flight.
struct Workers {
    jobs: Vec<Sender<Job>>,
    done: Receiver<Batch>,
    /// Filtered batches waiting for the ones before them.
    ready: BTreeMap<u64, Batch>,
    /// Empty batches to fill.
    spare: Vec<Batch>,
    sent: u64,
    applied: u64,
}

impl Workers {
    /// One thread per worker of `pipeline`, each with a front of its own.
    fn start(pipeline: &Pipeline) -> anyhow::Result<Self> {
        let n = pipeline.workers();
        let (done_tx, done) = channel();
        let mut jobs = Vec::with_capacity(n);
        for (i, front) in pipeline.new_fronts(n)?.into_iter().enumerate() {
            let (tx, rx) = channel();
            let done = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("rulewatch-worker-{i}"))
                .spawn(move || work(front, &rx, &done))?;
            jobs.push(tx);
        }
        let spare = (0..n * IN_FLIGHT_PER_WORKER)
            .map(|_| Batch::default())
            .collect();
        Ok(Workers {
            jobs,
            done,
            ready: BTreeMap::new(),
            spare,
            sent: 0,
            applied: 0,
        })
    }

    /// Reads `reader` to its end through the workers.
    fn drive<R: Read>(
        mut self,
        pipeline: &mut Pipeline,
        reader: &mut LineReader<R>,
        sink: &mut dyn Sink,
        changes: &Changes,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        let mut eof = false;
        while !eof || self.applied < self.sent {
            while !eof && !self.spare.is_empty() {
                // Before a read that may wait for a slow stream, everything read so far is
                // applied: its alerts must not wait for lines that have not come.
                if reader.may_wait() {
                    self.apply_all(pipeline, sink, status)?;
                }
                let mut batch = self.spare.pop().expect("checked");
                if !next_batch(reader, &mut batch.lines)? {
                    self.spare.push(batch);
                    eof = true;
                    break;
                }
                // As with one worker, a change ready when a batch has been read applies to
                // it; the batches before it are applied under the rules they saw.
                if let Some(change) = changes.as_ref().and_then(|rx| rx.try_recv().ok()) {
                    self.apply_all(pipeline, sink, status)?;
                    pipeline.apply(change, sink)?;
                    pipeline.apply_ready(changes, sink)?;
                    let fronts = pipeline.new_fronts(self.jobs.len())?;
                    for (tx, front) in self.jobs.iter().zip(fronts) {
                        tx.send(Job::Replace(Box::new(front)))?;
                    }
                }
                copy_out(reader.buffer(), &mut batch);
                batch.seq = self.sent;
                let worker = &self.jobs[(self.sent % self.jobs.len() as u64) as usize];
                let running = pipeline.running();
                worker.send(Job::Filter { batch, running })?;
                self.sent += 1;
            }
            if self.applied < self.sent {
                self.apply_next(pipeline, sink, status)?;
            }
        }
        Ok(())
    }

    /// Waits for the next batch in input order and applies it.
    fn apply_next(
        &mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        let batch = loop {
            if let Some(batch) = self.ready.remove(&self.applied) {
                break batch;
            }
            let batch = self.done.recv().context("a worker stopped")?;
            self.ready.insert(batch.seq, batch);
        };
        let filtered = std::slice::from_ref(&batch.filtered);
        pipeline.apply_filtered(&batch.buf, &batch.lines, filtered, sink)?;
        publish(pipeline, &batch.lines, status.as_deref_mut());
        self.applied += 1;
        self.spare.push(batch);
        Ok(())
    }

    /// Applies every batch in flight.
    fn apply_all(
        &mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        while self.applied < self.sent {
            self.apply_next(pipeline, sink, status)?;
        }
        Ok(())
    }
}

/// A worker: filters the batches it is given and hands them back, until the driver is done.
fn work(mut front: Front, jobs: &Receiver<Job>, done: &Sender<Batch>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Filter { mut batch, running } => {
                for (i, _) in running.iter().enumerate().filter(|(_, run)| !**run) {
                    front.stop(i);
                }
                let no_skip = |_: &Line| false;
                let (buf, lines) = (&batch.buf, &batch.lines);
                front.filter(buf, lines, 0, &no_skip, &mut batch.filtered);
                if done.send(batch).is_err() {
                    return;
                }
            }
            Job::Replace(new) => front = *new,
        }
    }
}
