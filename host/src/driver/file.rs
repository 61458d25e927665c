//! The file driver: JSON lines from a file or stdin, batch by batch through the pipeline,
//! rule changes applied between batches, then the end of the input closes every window.
//! `replay`, `bench` and `rulewatch test` all run through [`drive`].
//!
//! With several workers the batches flow through a pipeline of threads: batch after batch
//! is read and split (for a file on this thread, whose disk reads never wait long; for a
//! stream that may pause, on a reader thread, so that this thread never waits on it and what
//! a slow producer sent is applied at once, as with one worker); this thread applies rule
//! changes and queues each batch for a worker, which decodes, projects and filters it with
//! its own front; this thread then applies the workers' results strictly in input order. It
//! is a worker too: rather than wait for a result it filters a queued batch itself, so N
//! workers are N busy threads (N - 1 of them started here). The output is that of one
//! worker, byte for byte, and at most a few batches are in flight: memory stays flat.

use crate::pipeline::{BATCH_LINES, Filtered, Front, Pipeline};
use crate::registry::watch::Changes;
use crate::sink::Sink;
use crate::source::lines::{Line, LineReader};
use crate::status::{Publisher, Status};
use anyhow::Context;
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

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
        let workers = Workers::start(pipeline, reader, may_wait)?;
        workers.drive(pipeline, sink, changes, &mut status)?;
    }
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

/// A batch on its way: its number, the reader's buffer its lines point into, and what a
/// worker found in it.
#[derive(Default)]
struct Batch {
    seq: u64,
    /// Held while the batch is in flight; the reader reads into other buffers meanwhile.
    buf: Arc<Vec<u8>>,
    lines: Vec<Line>,
    filtered: Filtered,
}

/// What reaches this thread: a batch read, a batch filtered (or why a worker stopped), or
/// the end of the input (or why reading stopped).
enum Msg {
    Read(Batch),
    Filtered(Result<Batch, String>),
    End(anyhow::Result<()>),
    /// A worker's front, given back to be renewed.
    Front(usize, Box<Front>),
}

/// What the workers are asked to do, through one queue: whichever is free takes the next job,
/// so that a worker slowed down (sharing its core with this thread, say) takes fewer.
enum Job {
    /// Filter a batch, giving no events to the rules not `running`.
    Filter { batch: Batch, running: Vec<bool> },
    /// Give the front back (the rules are changing), then wait for the renewed one on the
    /// worker's own channel.
    Return,
}

/// The job queue the workers share.
type Jobs = Arc<Mutex<Receiver<Job>>>;

/// The worker threads (and the reader thread, if any), and the batches in flight.
struct Workers<R> {
    jobs: Sender<Job>,
    /// The queue the workers take jobs from: this thread takes one too rather than wait.
    queue: Jobs,
    /// This thread's own front: one of the workers is this thread, in its spare time.
    own: Box<Front>,
    /// Per worker thread: where its renewed front goes.
    fronts: Vec<Sender<Box<Front>>>,
    msgs: Receiver<Msg>,
    /// Batches read while this thread waited for others to be filtered.
    read: VecDeque<Batch>,
    /// Filtered batches waiting for the ones before them.
    ready: BTreeMap<u64, Batch>,
    /// Gives applied batches back to the reader to fill.
    empty: SyncSender<Batch>,
    sent: u64,
    applied: u64,
    /// The input has ended (with this error, if reading failed).
    ended: Option<anyhow::Result<()>>,
    /// The input and the empty batches, when this thread reads it (it never waits long).
    inline: Option<(LineReader<R>, Receiver<Batch>)>,
}

impl<R: Read + Send + 'static> Workers<R> {
    /// A thread per worker of `pipeline` but one, each with one of the pipeline's fronts
    /// (the last is this thread's), and a reader thread over `reader` if reading `may_wait`
    /// on its producer. As many threads as workers are busy: this one reads, applies and
    /// filters when it would otherwise wait.
    fn start(
        pipeline: &mut Pipeline,
        reader: LineReader<R>,
        may_wait: bool,
    ) -> anyhow::Result<Self> {
        let mut fronts = pipeline.take_fronts();
        let in_flight = fronts.len() * IN_FLIGHT_PER_WORKER;
        let own = Box::new(fronts.pop().expect("several workers"));
        let (msg_tx, msgs) = channel();
        let (empty, empty_rx) = sync_channel(in_flight);
        for _ in 0..in_flight {
            empty.send(Batch::default())?;
        }
        let inline = if may_wait {
            let to_main = msg_tx.clone();
            // Not scoped: a read may wait on the stream for ever, and must not keep this
            // thread from returning.
            std::thread::Builder::new()
                .name("rulewatch-reader".into())
                .spawn(move || read(reader, &empty_rx, &to_main))?;
            None
        } else {
            Some((reader, empty_rx))
        };
        let (jobs, queue) = channel();
        let queue: Jobs = Arc::new(Mutex::new(queue));
        let mut renewed = Vec::with_capacity(fronts.len());
        for (i, front) in fronts.into_iter().enumerate() {
            let (tx, rx) = channel();
            let (to_main, queue) = (msg_tx.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("rulewatch-worker-{i}"))
                .spawn(move || work(i, front, &queue, &rx, &to_main))?;
            renewed.push(tx);
        }
        Ok(Workers {
            jobs,
            queue,
            own,
            fronts: renewed,
            msgs,
            read: VecDeque::new(),
            ready: BTreeMap::new(),
            empty,
            sent: 0,
            applied: 0,
            ended: None,
            inline,
        })
    }

    /// Runs the input to its end through the workers; a read error comes after every batch
    /// read before it is applied, as with one worker.
    fn drive(
        mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        changes: &Changes,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        while self.ended.is_none() || !self.read.is_empty() || self.applied < self.sent {
            if let Some(batch) = self.read.pop_front() {
                self.dispatch(batch, pipeline, sink, changes, status)?;
            } else if !self.read_inline() {
                self.take(pipeline, sink, status)?;
            }
        }
        self.ended.unwrap_or(Ok(()))
    }

    /// Reads a batch on this thread if it reads the input and a batch is free; whether it
    /// did (or saw the input end).
    fn read_inline(&mut self) -> bool {
        let Some((reader, empty)) = &mut self.inline else {
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

    /// Hands a batch read to its worker, after the rule changes that are ready: a change
    /// applies to the batches read after it came, as with one worker.
    fn dispatch(
        &mut self,
        mut batch: Batch,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        changes: &Changes,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        if let Some(change) = changes.as_ref().and_then(|rx| rx.try_recv().ok()) {
            // The batches in flight are applied under the rules they saw.
            while self.applied < self.sent {
                self.take(pipeline, sink, status)?;
            }
            pipeline.apply(change, sink)?;
            pipeline.apply_ready(changes, sink)?;
            self.renew_fronts(pipeline)?;
        }
        batch.seq = self.sent;
        let running = pipeline.running();
        give(&self.jobs, Job::Filter { batch, running })?;
        self.sent += 1;
        Ok(())
    }

    /// Takes the workers' fronts back, renews them for the rules as they are now (keeping
    /// the instances of unchanged rules), and hands them out again.
    fn renew_fronts(&mut self, pipeline: &mut Pipeline) -> anyhow::Result<()> {
        // Each worker takes one Return: it then waits for its front, taking no other job.
        for _ in &self.fronts {
            give(&self.jobs, Job::Return)?;
        }
        let mut fronts: Vec<Option<Box<Front>>> = (0..self.fronts.len()).map(|_| None).collect();
        while fronts.iter().any(Option::is_none) {
            match self
                .msgs
                .recv()
                .context("the reader and the workers stopped")?
            {
                Msg::Front(i, front) => fronts[i] = Some(front),
                Msg::Read(batch) => self.read.push_back(batch),
                Msg::End(result) => self.ended = Some(result),
                Msg::Filtered(_) => unreachable!("nothing is in flight while rules change"),
            }
        }
        let mut fronts: Vec<Front> = fronts.into_iter().flatten().map(|f| *f).collect();
        let own = std::mem::replace(&mut *self.own, Front::new(&[]).expect("no rule to start"));
        fronts.push(own);
        pipeline.renew_fronts(&mut fronts);
        *self.own = fronts.pop().expect("this thread's front");
        for (tx, front) in self.fronts.iter().zip(fronts) {
            tx.send(Box::new(front))
                .map_err(|_| anyhow::anyhow!("a worker stopped"))?;
        }
        Ok(())
    }

    /// Filters a batch that no worker thread has taken yet, on this thread: whether there
    /// was one (the queue is free only while they are all busy).
    fn steal(
        &mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<bool> {
        let job = match self.queue.try_lock() {
            Ok(queue) => queue.try_recv(),
            Err(_) => return Ok(false),
        };
        match job {
            Ok(Job::Filter { batch, running }) => {
                let batch = filter(&mut self.own, batch, &running);
                self.filtered(batch, pipeline, sink, status)?;
                Ok(true)
            }
            Ok(Job::Return) => unreachable!("fronts are asked back only while nothing is queued"),
            Err(_) => Ok(false),
        }
    }

    /// Takes the next message — keeps a batch read for later, applies filtered batches that
    /// are next in input order, notes the end of the input — or, while none is there,
    /// filters a batch no worker thread has taken.
    fn take(
        &mut self,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        let msg = match self.msgs.try_recv() {
            Ok(msg) => msg,
            Err(_) if self.steal(pipeline, sink, status)? => return Ok(()),
            Err(_) => self
                .msgs
                .recv()
                .context("the reader and the workers stopped")?,
        };
        match msg {
            Msg::Read(batch) => self.read.push_back(batch),
            Msg::End(result) => self.ended = Some(result),
            Msg::Front(..) => unreachable!("fronts come back only when asked for"),
            Msg::Filtered(batch) => self.filtered(batch, pipeline, sink, status)?,
        }
        Ok(())
    }

    /// Takes a filtered batch (or why filtering failed) and applies the batches that are
    /// next in input order.
    fn filtered(
        &mut self,
        batch: Result<Batch, String>,
        pipeline: &mut Pipeline,
        sink: &mut dyn Sink,
        status: &mut Option<&mut Publisher>,
    ) -> anyhow::Result<()> {
        let batch = batch.map_err(anyhow::Error::msg)?;
        self.ready.insert(batch.seq, batch);
        while let Some(batch) = self.ready.remove(&self.applied) {
            let filtered = std::slice::from_ref(&batch.filtered);
            pipeline.apply_filtered(&batch.buf, &batch.lines, filtered, sink)?;
            publish(pipeline, &batch.lines, status.as_deref_mut());
            self.applied += 1;
            // Lets the reader write into the buffer again.
            let batch = Batch {
                buf: Arc::default(),
                ..batch
            };
            // The reader may have ended: then the batch is not needed.
            let _ = self.empty.send(batch);
        }
        Ok(())
    }
}

/// Queues a job for the workers; an error if they are all gone.
fn give(jobs: &Sender<Job>, job: Job) -> anyhow::Result<()> {
    jobs.send(job)
        .map_err(|_| anyhow::anyhow!("a worker stopped"))
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
    if !next_batch(reader, &mut batch.lines)? {
        return Ok(None);
    }
    batch.buf = reader.block();
    Ok(Some(batch))
}

/// A worker: filters the batches it is given and sends them back, until the driver is done.
/// A panic is sent back as an error rather than leaving the driver waiting.
fn work(
    index: usize,
    mut front: Front,
    jobs: &Jobs,
    renewed: &Receiver<Box<Front>>,
    out: &Sender<Msg>,
) {
    loop {
        // The lock is held while waiting: the other workers wait for it, then for the next.
        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else { return };
        match job {
            Job::Return => {
                let empty = Front::new(&[]).expect("no rule to start");
                let given = std::mem::replace(&mut front, empty);
                if out.send(Msg::Front(index, Box::new(given))).is_err() {
                    return;
                }
                match renewed.recv() {
                    Ok(new) => front = *new,
                    Err(_) => return,
                }
            }
            Job::Filter { batch, running } => {
                let filtered = filter(&mut front, batch, &running);
                let failed = filtered.is_err();
                if out.send(Msg::Filtered(filtered)).is_err() || failed {
                    return;
                }
            }
        }
    }
}

/// Filters `batch` with `front`, giving no events to the rules not `running`; a panic comes
/// back as an error rather than leaving the driver waiting.
fn filter(front: &mut Front, mut batch: Batch, running: &[bool]) -> Result<Batch, String> {
    front.keep_running(running);
    let filtered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let no_skip = |_: &Line| false;
        let (buf, lines) = (&batch.buf, &batch.lines);
        front.filter(buf, lines, 0, &no_skip, &mut batch.filtered);
    }));
    match filtered {
        Ok(()) => Ok(batch),
        Err(_) => Err(
            "a worker panicked while filtering a batch (a bug: please report it with the log)"
                .to_owned(),
        ),
    }
}
