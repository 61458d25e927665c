//! Writes checkpoints off the processing loop. The loop takes a snapshot between batches
//! (cheap) and hands it over with the number of records sent until then; this thread waits
//! until the broker has acknowledged those (later ones may still be in flight), then saves
//! the file. The loop commits the offsets when it hears back. One checkpoint is in flight at
//! a time, so they are written in order.

use crate::sink::kafka::Output;
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Longest wait for the broker to acknowledge what was sent before a checkpoint.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A checkpoint that was written: the offsets it covers, and how long it took from snapshot
/// to file.
pub struct Written {
    /// The checkpoint's offsets, to commit to the group.
    pub offsets: BTreeMap<String, i64>,
    /// From the snapshot to the renamed file.
    pub took: Duration,
}

/// The checkpoint thread and its channels.
pub struct Writer {
    jobs: SyncSender<Job>,
    output: Option<Output>,
    done: Receiver<anyhow::Result<Written>>,
    busy: bool,
}

impl Writer {
    /// Starts the thread, writing into `dir` after flushing `output` (if any).
    pub fn start(dir: PathBuf, output: Option<Output>) -> anyhow::Result<Self> {
        let (jobs, inbox) = sync_channel::<Job>(1);
        let (report, done) = sync_channel(1);
        let out = output.clone();
        std::thread::Builder::new()
            .name("rulewatch-checkpoint".into())
            .spawn(move || {
                for job in inbox {
                    let result = write(&dir, out.as_ref(), &job).map(|()| Written {
                        offsets: job.offsets,
                        took: job.taken.elapsed(),
                    });
                    if report.send(result).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Writer {
            jobs,
            output,
            done,
            busy: false,
        })
    }

    /// Whether a checkpoint is being written.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Hands an encoded checkpoint (see [`super::encode`]) covering `offsets` over; the
    /// caller checks [`Writer::busy`] first.
    pub fn submit(&mut self, body: Vec<u8>, offsets: BTreeMap<String, i64>) {
        debug_assert!(!self.busy);
        let job = Job {
            body,
            offsets,
            sent: self.output.as_ref().map_or(0, Output::sent),
            taken: Instant::now(),
        };
        self.busy = self.jobs.send(job).is_ok();
    }

    /// The checkpoint written since the last call, if any; with `wait`, waits for the one in
    /// flight. An error means it was not written (outputs not acknowledged, disk).
    pub fn finished(&mut self, wait: bool) -> anyhow::Result<Option<Written>> {
        if !self.busy {
            return Ok(None);
        }
        let result = if wait {
            self.done.recv().ok()
        } else {
            self.done.try_recv().ok()
        };
        match result {
            None if wait => anyhow::bail!("the checkpoint thread stopped"),
            None => Ok(None),
            Some(r) => {
                self.busy = false;
                r.map(Some)
            }
        }
    }
}

/// A snapshot and what had been sent when it was taken.
struct Job {
    body: Vec<u8>,
    offsets: BTreeMap<String, i64>,
    /// Records queued on the output before the snapshot.
    sent: usize,
    taken: Instant,
}

/// Makes what was sent before the snapshot durable, then saves it.
fn write(dir: &std::path::Path, output: Option<&Output>, job: &Job) -> anyhow::Result<()> {
    if let Some(output) = output {
        output
            .settle(job.sent, FLUSH_TIMEOUT)
            .context("not checkpointing: alerts are not all delivered; restart to redo them")?;
    }
    super::save_encoded(dir, &job.body)
}
