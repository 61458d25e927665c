//! Writes checkpoints off the processing loop. The loop takes a snapshot between batches
//! (cheap) and hands it over with the number of records sent until then; this thread waits
//! until the broker has acknowledged those and the HTTP sinks have settled the alerts queued
//! before it (later ones may still be in flight), then saves
//! the partitions' records to the store. The loop commits the offsets when it hears back.
//! One checkpoint is in flight at a time, so they are written in order.

use super::Record;
use super::store::Store;
use crate::sink::deliver::Mark;
use crate::sink::producer::Output;
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Longest wait for the broker to acknowledge what was sent before a checkpoint.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A checkpoint that was written: the offsets it covers, and how long it took from snapshot
/// to store.
pub(crate) struct Written {
    /// The checkpoint's offsets, to commit to the group.
    pub offsets: BTreeMap<String, i64>,
    /// From the snapshot to the stored records.
    pub took: Duration,
}

/// The checkpoint thread and its channels.
pub(crate) struct Writer {
    jobs: SyncSender<Job>,
    output: Output,
    done: Receiver<anyhow::Result<Written>>,
    busy: bool,
}

/// Where the thread writes: the file (it keeps every partition's latest record, also those
/// of partitions now read elsewhere, and rewrites the file) or the topic.
enum Target {
    File {
        dir: std::path::PathBuf,
        records: BTreeMap<String, Vec<u8>>,
    },
    Kafka {
        output: Output,
        topic: String,
    },
}

impl Writer {
    /// Starts the thread, writing to `store` after flushing `output`, which also carries
    /// the records when the store is a topic. `file` is the checkpoint file read at start,
    /// whose records of other partitions are kept.
    pub(crate) fn start(
        store: &Store,
        output: Output,
        file: &super::Checkpoint,
    ) -> anyhow::Result<Self> {
        let mut target = match store {
            Store::File(dir) => Target::File {
                dir: dir.clone(),
                records: file
                    .partitions
                    .iter()
                    .map(|(name, state)| Ok((name.clone(), super::encode(state)?)))
                    .collect::<anyhow::Result<_>>()?,
            },
            Store::Kafka { topic, .. } => Target::Kafka {
                output: output.clone(),
                topic: topic.clone(),
            },
        };
        let (jobs, inbox) = sync_channel::<Job>(1);
        let (report, done) = sync_channel(1);
        let out = output.clone();
        std::thread::Builder::new()
            .name("rulewatch-checkpoint".into())
            .spawn(move || {
                for job in inbox {
                    let taken = job.taken;
                    let result = write(&mut target, &out, job).map(|offsets| Written {
                        offsets,
                        took: taken.elapsed(),
                    });
                    // The snapshot's buffers are as large as the state: give them back to the
                    // system instead of keeping them in the allocator until the next one.
                    #[cfg(target_env = "gnu")]
                    // SAFETY: malloc_trim only releases free memory of the allocator.
                    unsafe {
                        libc::malloc_trim(0);
                    }
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
    pub(crate) fn busy(&self) -> bool {
        self.busy
    }

    /// Hands encoded partition records (see [`super::encode`]) covering `offsets` over;
    /// the caller checks [`Writer::busy`] first.
    /// `marks` say how far each HTTP sink's queue had come: the checkpoint is stored only
    /// once those alerts are delivered (or dead-lettered).
    pub(crate) fn submit(
        &mut self,
        records: Vec<Record>,
        offsets: BTreeMap<String, i64>,
        triggers: u64,
        marks: Vec<Mark>,
    ) {
        debug_assert!(!self.busy);
        let job = Job {
            records,
            offsets,
            triggers,
            sent: self.output.sent(),
            marks,
            taken: Instant::now(),
        };
        self.busy = self.jobs.send(job).is_ok();
    }

    /// How the checkpoint handed over last ended, if it has: written, or not (outputs not
    /// acknowledged, disk full, checkpoint topic unreachable: the inner error). With `wait`,
    /// waits for it. The outer error means the writer thread is gone.
    pub(crate) fn finished(
        &mut self,
        wait: bool,
    ) -> anyhow::Result<Option<anyhow::Result<Written>>> {
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
                Ok(Some(r))
            }
        }
    }
}

/// A snapshot and what had been sent when it was taken.
struct Job {
    records: Vec<Record>,
    offsets: BTreeMap<String, i64>,
    triggers: u64,
    /// Records queued on the output before the snapshot.
    sent: usize,
    /// Alerts queued for HTTP sinks before the snapshot.
    marks: Vec<Mark>,
    taken: Instant,
}

/// Makes what was sent before the snapshot durable, then stores the records; the offsets
/// they cover.
fn write(target: &mut Target, output: &Output, job: Job) -> anyhow::Result<BTreeMap<String, i64>> {
    for mark in &job.marks {
        mark.settle(FLUSH_TIMEOUT)
            .context("not checkpointing: alerts are not all delivered to the sinks yet")?;
    }
    // The sinks' dead letters may go to Kafka as their marks settle: wait for those too.
    let sent = if job.marks.is_empty() {
        job.sent
    } else {
        output.sent()
    };
    output
        .settle(sent, FLUSH_TIMEOUT)
        .context("not checkpointing: alerts are not all delivered; restart to redo them")?;
    match target {
        Target::File { dir, records } => {
            // Kept until the next checkpoint: no slack beyond the bytes themselves.
            for mut r in job.records {
                r.body.shrink_to_fit();
                records.insert(r.partition, r.body);
            }
            let body = super::compose(
                job.triggers,
                records.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            );
            super::save_encoded(dir, &body)?;
        }
        Target::Kafka { output, topic } => {
            for r in &job.records {
                output.send(topic, r.partition.as_bytes(), &super::frame(&r.body), None);
            }
            output
                .settle(output.sent(), FLUSH_TIMEOUT)
                .with_context(|| format!("not checkpointed: records to {topic} not delivered"))?;
        }
    }
    Ok(job.offsets)
}
