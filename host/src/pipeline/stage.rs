//! The worker stage: one persistent pool of [`Front`]s that filters parts of batches on
//! every worker's core, used by every driver — `run` and the backtest split each batch over
//! it ([`super::Pipeline::process`]), `replay` keeps several batches in flight through it
//! ([`super::Pipeline::submit`]).
//!
//! The invariant: **chunks come out in the order they went in**, whichever thread filtered
//! them and however long each took, so what the pipeline applies — and so the output — is
//! that of one worker, byte for byte. N workers are N busy threads: N - 1 of them started
//! here, and the caller's, which filters a queued chunk itself rather than wait for one.
//! A panic while filtering comes back as an error instead of leaving the caller waiting.

use super::front::{Filtered, Front, FrontSpec};
use crate::rules::RuleError;
use crate::source::lines::Line;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};

/// A part of a batch on its way through the stage: lines `range` of `lines`, whose bytes are
/// in `buf`, and what a front found in them.
pub(crate) struct Chunk {
    seq: u64,
    pub(crate) buf: Arc<Vec<u8>>,
    pub(crate) lines: Arc<Vec<Line>>,
    range: Range<usize>,
    /// Per source index, whether its lines are not input (partitions of repartition topics).
    internal: Option<Arc<[bool]>>,
    /// Per rule, whether it still runs (a front gives no events to the others).
    running: Arc<[bool]>,
    /// What the front found.
    pub(crate) filtered: Filtered,
}

/// A finished chunk, or why filtering failed, by sequence number.
type Done = (u64, Result<Chunk, String>);

/// The pool.
pub(crate) struct Stage {
    /// The caller's own front.
    own: Front,
    /// The worker threads' fronts, each locked by its thread while it filters.
    fronts: Vec<Arc<Mutex<Front>>>,
    jobs: Sender<Chunk>,
    /// The queue the workers take chunks from; the caller takes one too rather than wait.
    queue: Arc<Mutex<Receiver<Chunk>>>,
    done: Receiver<Done>,
    done_tx: Sender<Done>,
    /// Finished chunks (or failures) waiting for the ones before them.
    ready: BTreeMap<u64, Result<Chunk, String>>,
    /// Sequence numbers of the next chunk submitted and of the next handed out.
    next_in: u64,
    next_out: u64,
    /// What chunks found, to be reused.
    spare: Vec<Filtered>,
}

impl Stage {
    /// A pool of one front for `rules`, the caller's ([`Stage::grow`] adds threads).
    pub(crate) fn new(rules: &[FrontSpec<'_>]) -> Result<Self, RuleError> {
        let (jobs, queue) = channel();
        let (done_tx, done) = channel();
        Ok(Stage {
            own: Front::new(rules).map_err(|(_, e)| e)?,
            fronts: Vec::new(),
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            done,
            done_tx,
            ready: BTreeMap::new(),
            next_in: 0,
            next_out: 0,
            spare: Vec::new(),
        })
    }

    /// Starts threads until there are `workers` fronts for `rules`, each with a front of its
    /// own (threads are never stopped: a smaller count only leaves some idle).
    pub(crate) fn grow(&mut self, workers: usize, rules: &[FrontSpec<'_>]) -> anyhow::Result<()> {
        while self.fronts.len() + 1 < workers {
            let front = Front::new(rules).map_err(|(_, e)| e)?;
            let front = Arc::new(Mutex::new(front));
            let (queue, done) = (Arc::clone(&self.queue), self.done_tx.clone());
            let mine = Arc::clone(&front);
            let i = self.fronts.len();
            std::thread::Builder::new()
                .name(format!("rulewatch-worker-{i}"))
                .spawn(move || work(&mine, &queue, &done))
                .context("cannot start a worker thread")?;
            self.fronts.push(front);
        }
        Ok(())
    }

    /// Chunks submitted and not handed out yet.
    pub(crate) fn in_flight(&self) -> u64 {
        self.next_in - self.next_out
    }

    /// Queues lines `range` of `lines` for filtering. `internal`: per source, whether its
    /// lines are left out; `running`: per rule, whether it still runs.
    pub(crate) fn submit(
        &mut self,
        buf: &Arc<Vec<u8>>,
        lines: &Arc<Vec<Line>>,
        range: Range<usize>,
        internal: Option<&Arc<[bool]>>,
        running: &Arc<[bool]>,
    ) {
        let chunk = Chunk {
            seq: self.next_in,
            buf: Arc::clone(buf),
            lines: Arc::clone(lines),
            range,
            internal: internal.cloned(),
            running: Arc::clone(running),
            filtered: self.spare.pop().unwrap_or_default(),
        };
        self.next_in += 1;
        if self.fronts.is_empty() {
            // One worker: this thread, at once.
            let done = filter(&mut self.own, chunk);
            self.settle(done);
        } else if let Err(e) = self.jobs.send(chunk) {
            // Every worker is gone (the queue's receiver lives in them and here): unreachable
            // while the stage is alive, but filter here rather than lose the chunk.
            let done = filter(&mut self.own, e.0);
            self.settle(done);
        }
    }

    /// The next chunk in submission order, once filtered (or why filtering it failed, in
    /// its place in the order): waits for it, filtering queued chunks on this thread
    /// meanwhile. `None` if nothing is in flight.
    pub(crate) fn next(&mut self) -> anyhow::Result<Option<Chunk>> {
        loop {
            if let Some(done) = self.ready.remove(&self.next_out) {
                self.next_out += 1;
                return done.map(Some).map_err(anyhow::Error::msg);
            }
            if self.in_flight() == 0 {
                return Ok(None);
            }
            let done = match self.done.try_recv() {
                Ok(done) => done,
                Err(_) if self.steal() => continue,
                Err(_) => self.done.recv()?,
            };
            self.settle(done);
        }
    }

    /// Gives a chunk's buffers back once applied: the batch's bytes and lines are let go.
    pub(crate) fn recycle(&mut self, chunk: Chunk) {
        self.spare.push(chunk.filtered);
    }

    /// Filters on this thread a chunk no worker has taken yet; whether there was one (the
    /// queue has one only while every worker is busy).
    fn steal(&mut self) -> bool {
        let chunk = match self.queue.try_lock() {
            Ok(queue) => queue.try_recv(),
            Err(_) => return false,
        };
        match chunk {
            Ok(chunk) => {
                let done = filter(&mut self.own, chunk);
                self.settle(done);
                true
            }
            Err(_) => false,
        }
    }

    /// Keeps a finished chunk until `next` reaches it.
    fn settle(&mut self, (seq, done): Done) {
        self.ready.insert(seq, done);
    }

    /// Follows a change of the rules in every front (nothing may be in flight), keeping the
    /// instances of unchanged rules. On an error, the index of a rule whose instance did not
    /// start: quarantine it and renew again.
    pub(crate) fn renew(&mut self, rules: &[FrontSpec<'_>]) -> Result<(), (usize, RuleError)> {
        debug_assert_eq!(self.in_flight(), 0, "fronts change only between batches");
        self.own.renew(rules)?;
        for front in &self.fronts {
            lock(front).renew(rules)?;
        }
        Ok(())
    }
}

/// A front's lock, even if a panic while filtering poisoned it (the panic was reported).
fn lock(front: &Mutex<Front>) -> MutexGuard<'_, Front> {
    front.lock().unwrap_or_else(|e| e.into_inner())
}

/// A worker thread: filters the chunks it takes until the stage is dropped.
fn work(front: &Mutex<Front>, queue: &Mutex<Receiver<Chunk>>, done: &Sender<Done>) {
    loop {
        // The lock is held while waiting: the other workers wait for it, then for the next.
        let chunk = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(chunk) = chunk else { return };
        let filtered = filter(&mut lock(front), chunk);
        if done.send(filtered).is_err() {
            return;
        }
    }
}

/// Filters `chunk` with `front`; a panic comes back as an error.
fn filter(front: &mut Front, mut chunk: Chunk) -> Done {
    let seq = chunk.seq;
    front.keep_running(&chunk.running);
    let filtered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let internal = chunk.internal.as_deref();
        let skip = |line: &Line| {
            internal.is_some_and(|i| i.get(line.source as usize).copied().unwrap_or(false))
        };
        let lines = &chunk.lines[chunk.range.clone()];
        let first = chunk.range.start;
        front.filter(&chunk.buf, lines, first, &skip, &mut chunk.filtered);
    }));
    let done = match filtered {
        Ok(()) => Ok(chunk),
        Err(_) => Err(
            "a worker panicked while filtering a batch (a bug: please report it with the log)"
                .to_owned(),
        ),
    };
    (seq, done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::{batch, crash, event};

    /// A stage of `workers` fronts for the crash rule.
    fn stage(workers: usize) -> Stage {
        let rule = crash("user_id");
        let specs = [FrontSpec {
            rule: &rule,
            running: true,
            id: 1,
        }];
        let mut stage = Stage::new(&specs).unwrap();
        stage.grow(workers, &specs).unwrap();
        stage
    }

    /// `n` events, every other one a selected crash.
    fn events(n: u32) -> (Arc<Vec<u8>>, Arc<Vec<Line>>) {
        let texts: Vec<String> = (0..n)
            .map(|i| {
                let severity = if i % 2 == 0 { "High" } else { "Low" };
                event(i % 3600, severity, "u1", "crash")
            })
            .collect();
        batch(0, &texts)
    }

    /// Submits chunks of the sizes given, then takes them all back: (input lines, selected
    /// events' first line) per chunk, in the order given back.
    fn round_trip(stage: &mut Stage, sizes: &[usize]) -> Vec<(u64, Option<u32>)> {
        let total: usize = sizes.iter().sum();
        let (buf, lines) = events(total as u32);
        let running: Arc<[bool]> = Arc::new([true]);
        let mut start = 0;
        for size in sizes {
            stage.submit(&buf, &lines, start..start + size, None, &running);
            start += size;
        }
        let mut out = Vec::new();
        while let Some(chunk) = stage.next().unwrap() {
            let first = chunk.filtered.rules[0].calls().first();
            out.push((
                chunk.filtered.input_lines,
                first.and_then(|c| c.lines.first().copied()),
            ));
            stage.recycle(chunk);
        }
        out
    }

    #[test]
    fn chunks_come_back_in_the_order_they_went_in_however_long_each_took() {
        // Long chunks first, so that the short ones behind them finish earlier.
        let sizes = [3000, 5, 2000, 1, 700, 9, 1, 1500];
        for workers in [1, 2, 4] {
            let mut stage = stage(workers);
            let out = round_trip(&mut stage, &sizes);
            let expected: Vec<(u64, Option<u32>)> = sizes
                .iter()
                .scan(0u32, |start, &size| {
                    let first = *start;
                    *start += size as u32;
                    Some((size as u64, Some(first)))
                })
                .collect();
            assert_eq!(out, expected, "{workers} workers");
            assert_eq!(stage.in_flight(), 0);
            assert!(stage.next().unwrap().is_none(), "nothing more");
            // The stage goes on after a round, reusing what chunks found.
            assert_eq!(round_trip(&mut stage, &[10, 10]).len(), 2);
        }
    }

    #[test]
    fn lines_of_internal_sources_are_left_out() {
        let mut stage = stage(2);
        let (buf, lines) = events(10);
        let internal: Arc<[bool]> = Arc::new([true]);
        let running: Arc<[bool]> = Arc::new([true]);
        stage.submit(&buf, &lines, 0..10, Some(&internal), &running);
        let chunk = stage.next().unwrap().unwrap();
        assert_eq!(chunk.filtered.input_lines, 0);
    }

    #[test]
    fn a_panic_while_filtering_comes_back_as_an_error_and_the_stage_goes_on() {
        for workers in [1, 3] {
            let mut stage = stage(workers);
            let (buf, lines) = events(10);
            let running: Arc<[bool]> = Arc::new([true]);
            // Lines past the batch's end: slicing them panics inside the front's call. The
            // failure comes in its place: after the chunk before it, before the one after.
            stage.submit(&buf, &lines, 0..5, None, &running);
            stage.submit(&buf, &lines, 5..50, None, &running);
            stage.submit(&buf, &lines, 5..10, None, &running);
            assert_eq!(stage.next().unwrap().unwrap().filtered.input_lines, 5);
            let e = stage
                .next()
                .err()
                .expect("an error, not a hang")
                .to_string();
            assert!(e.contains("panicked while filtering"), "{e}");
            assert_eq!(stage.next().unwrap().unwrap().filtered.input_lines, 5);
            // The worker threads are still there and their fronts work.
            assert_eq!(round_trip(&mut stage, &[4, 4, 4]).len(), 3, "{workers}");
        }
    }
}
