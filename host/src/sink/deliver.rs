//! Delivery to one HTTP receiver, off the applying thread. Alerts wait in a bounded queue (a
//! full queue makes the caller wait: backpressure, never a drop); one thread per receiver
//! takes what is queued, in order, and posts it, retrying with exponential backoff and
//! jitter; after `max_attempts` (or at once, for an answer no retry can change) the rest go to
//! the dead-letter file with the last error.
//!
//! Every queued alert is *settled* — delivered or dead-lettered — in queue order, and the
//! counts say how far: a checkpoint records [`Mark`]s when its snapshot is taken and is
//! stored only once every mark is settled, so a crash before that redoes the work and
//! delivers again, with the same `alert_id`, rather than loses.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// One alert to deliver: its id and the bytes the receiver gets for it.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// The alert's `alert_id`.
    pub id: String,
    /// Its body (JSON), as the sink formats it.
    pub body: Vec<u8>,
}

/// What an attempt achieved: the first `delivered` items are done; `error`, if any, says
/// why the next one was not, and whether retrying can help.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// Items delivered, from the first.
    pub delivered: usize,
    /// Why the rest were not, if they were not.
    pub error: Option<Failure>,
}

/// Why an attempt stopped.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong (shown in logs and dead letters).
    pub reason: String,
    /// A retry may succeed (a timeout, a refused connection, a 5xx, 408, 429); otherwise
    /// the receiver refused the alert itself (another 4xx).
    pub retry: bool,
}

/// A receiver's protocol: posts items (one request for all, or one each, in order).
pub(crate) trait Post: Send + 'static {
    /// Posts `items`, stopping at the first failure.
    fn post(&mut self, items: &[Item]) -> Attempt;
}

/// Where alerts that exhaust their attempts go: JSON lines in a file, or records of a Kafka
/// topic keyed by `alert_id` (`run` only), each with the last error.
pub(crate) enum DeadLetter {
    /// Appended to this file.
    File(std::fs::File),
    /// Sent to this topic through the shared producer.
    Topic(super::producer::Output, String),
}

/// How hard delivery tries.
#[derive(Clone, Debug)]
pub(crate) struct Retry {
    /// Attempts per item before it is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's wait; doubled each attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Retry {
    /// The wait before attempt `attempt + 1`: full backoff, less up to a half of jitter.
    fn wait(&self, attempt: u32) -> Duration {
        let full = (self.backoff.saturating_mul(1 << attempt.min(20))).min(self.max_backoff);
        full.mul_f64(1.0 - fastrand::f64() / 2.0)
    }
}

/// Counts shared by the queue's owner, its thread and checkpoints. Settled is delivered +
/// dead; both only grow, each increment published (Release) after the work it counts.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    queued: AtomicU64,
    delivered: AtomicU64,
    dead: AtomicU64,
    failing: Mutex<Option<String>>,
    /// The queue's capacity.
    capacity: u64,
}

impl Progress {
    /// Alerts delivered so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Alerts that exhausted their attempts.
    pub(crate) fn dead(&self) -> u64 {
        self.dead.load(Ordering::Acquire)
    }

    /// Alerts delivered or dead-lettered.
    fn settled(&self) -> u64 {
        self.delivered() + self.dead()
    }

    /// Why its last attempt failed, while it is failing.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failing.lock().expect("not poisoned").clone()
    }

    /// Whether its queue is full: reading waits for the receiver.
    pub(crate) fn backed_up(&self) -> bool {
        self.waiting() >= self.capacity
    }

    /// Alerts queued and not settled yet.
    pub(crate) fn waiting(&self) -> u64 {
        let settled = self.settled();
        self.queued.load(Ordering::Acquire).saturating_sub(settled)
    }
}

/// How far a receiver's queue had come when a checkpoint's snapshot was taken.
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    /// The receiver, for messages.
    pub name: String,
    progress: Arc<Progress>,
    upto: u64,
}

impl Mark {
    /// Waits until everything queued before the mark is settled, at most `timeout`.
    pub(crate) fn settle(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.progress.settled() < self.upto {
            if started.elapsed() > timeout {
                anyhow::bail!(
                    "{}: {} alert(s) not delivered within {timeout:?}",
                    self.name,
                    self.upto.saturating_sub(self.progress.settled())
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// Every receiver started in this process, by name, for `/metrics`.
static RECEIVERS: Mutex<Vec<(String, Arc<Progress>)>> = Mutex::new(Vec::new());

/// Every receiver started in this process: its name and counts.
pub(crate) fn receivers() -> Vec<(String, Arc<Progress>)> {
    RECEIVERS.lock().expect("not poisoned").clone()
}

/// Most items taken from the queue for one attempt.
const BATCH: usize = 256;

/// A receiver's queue and delivery thread; the thread ends once the queue is dropped and
/// drained.
pub(crate) struct Delivery {
    name: String,
    queue: Option<SyncSender<Item>>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
    full_said: bool,
}

impl Delivery {
    /// Starts delivering to `post`, named `name` in logs, holding at most `capacity` items,
    /// sending what exhausts `retry` to `dead_letter` when given.
    pub(crate) fn start(
        name: String,
        post: impl Post,
        capacity: usize,
        retry: Retry,
        dead_letter: Option<DeadLetter>,
    ) -> Delivery {
        let (queue, items) = sync_channel(capacity);
        let progress = Arc::new(Progress {
            capacity: capacity as u64,
            ..Progress::default()
        });
        let mut all = RECEIVERS.lock().expect("not poisoned");
        all.retain(|(n, _)| *n != name);
        all.push((name.clone(), progress.clone()));
        drop(all);
        let worker = Worker {
            name: name.clone(),
            post,
            retry,
            dead_letter,
            progress: progress.clone(),
            dead_said: false,
        };
        let thread = std::thread::Builder::new()
            .name("rulewatch-deliver".into())
            .spawn(move || worker.run(items))
            .expect("a thread starts");
        Delivery {
            name,
            queue: Some(queue),
            progress,
            thread: Some(thread),
            full_said: false,
        }
    }

    /// Queues `item`, waiting while the queue is full (said once per episode).
    pub(crate) fn push(&mut self, item: Item) {
        let queue = self.queue.as_ref().expect("open until dropped");
        self.progress.queued.fetch_add(1, Ordering::AcqRel);
        match queue.try_send(item) {
            Ok(()) => self.full_said = false,
            Err(TrySendError::Full(item)) => {
                if !std::mem::replace(&mut self.full_said, true) {
                    warn!(
                        "{}: delivery queue full ({} alerts waiting): reading waits for the \
                         receiver (backpressure); nothing is dropped",
                        self.name,
                        self.progress.waiting()
                    );
                }
                // The thread lives as long as the queue; a send fails only if it panicked.
                let _ = queue.send(item);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Where the queue stands now, for a checkpoint.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            name: self.name.clone(),
            progress: self.progress.clone(),
            upto: self.progress.queued.load(Ordering::Acquire),
        }
    }

    /// Waits until everything queued so far is settled.
    pub(crate) fn drain(&self, timeout: Duration) -> anyhow::Result<()> {
        self.mark().settle(timeout)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The delivery thread's side.
struct Worker<P> {
    name: String,
    post: P,
    retry: Retry,
    dead_letter: Option<DeadLetter>,
    progress: Arc<Progress>,
    /// Whether a dead letter was logged since the last delivery.
    dead_said: bool,
}

impl<P: Post> Worker<P> {
    fn run(mut self, items: Receiver<Item>) {
        while let Ok(first) = items.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match items.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            self.deliver(&batch);
        }
    }

    /// Delivers `batch`, retrying; dead-letters what is left after the last attempt.
    fn deliver(&mut self, batch: &[Item]) {
        let mut done = 0;
        let mut attempt = 0;
        while done < batch.len() {
            let result = self.post.post(&batch[done..]);
            self.settle(result.delivered, true);
            done += result.delivered;
            let Some(failure) = result.error else {
                continue;
            };
            attempt += 1;
            if failure.retry {
                self.say_failing(Some(&failure.reason));
            }
            if !failure.retry || attempt >= self.retry.max_attempts {
                // Only the item that failed goes: the others get attempts of their own.
                self.dead_letter(&batch[done], &failure.reason, attempt);
                done += 1;
                attempt = 0;
                continue;
            }
            std::thread::sleep(self.retry.wait(attempt - 1));
        }
        self.say_failing(None);
    }

    fn settle(&mut self, n: usize, delivered: bool) {
        if delivered && n > 0 {
            self.dead_said = false;
        }
        let counter = if delivered {
            &self.progress.delivered
        } else {
            &self.progress.dead
        };
        counter.fetch_add(n as u64, Ordering::Release);
    }

    /// Sends `item` with `reason` to the dead letter, and counts it settled; logs the first
    /// of a run of them.
    fn dead_letter(&mut self, item: &Item, reason: &str, attempts: u32) {
        if !std::mem::replace(&mut self.dead_said, true) {
            warn!(
                "{}: alert {} not delivered after {attempts} attempt(s): {}; it {}, as will \
                 others until one is delivered (counted in rulewatch_sink_dead_letters_total, \
                 not logged)",
                self.name,
                item.id,
                crate::text::one_line(reason),
                match &self.dead_letter {
                    Some(DeadLetter::File(_)) => "goes to the dead-letter file",
                    Some(DeadLetter::Topic(..)) => "goes to the dead-letter topic",
                    None => "is dropped (neither dead_letter nor dead_letter_topic is set)",
                }
            );
        }
        let alert: serde_json::Value =
            serde_json::from_slice(&item.body).unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({
            "sink": self.name,
            "alert_id": item.id,
            "error": reason,
            "attempts": attempts,
            "alert": alert,
        });
        match &mut self.dead_letter {
            Some(DeadLetter::File(file)) => {
                let written = writeln!(file, "{line}").and_then(|()| file.flush());
                if let Err(e) = written {
                    warn!("{}: cannot write the dead letter: {e}", self.name);
                }
            }
            // Acknowledged before the checkpoint that covers it (`checkpoint::writer`).
            Some(DeadLetter::Topic(output, topic)) => {
                output.send(topic, item.id.as_bytes(), line.to_string().as_bytes(), None);
            }
            None => {}
        }
        self.settle(1, false);
    }

    /// Logs a change between failing (with `reason`) and delivering.
    fn say_failing(&self, reason: Option<&str>) {
        let mut failing = self.progress.failing.lock().expect("not poisoned");
        match (failing.is_some(), reason) {
            (false, Some(r)) => {
                warn!(
                    "{}: cannot deliver: {} (retrying with backoff)",
                    self.name,
                    crate::text::one_line(r)
                );
                *failing = Some(r.to_owned());
            }
            (true, None) => {
                info!("{}: delivering again", self.name);
                *failing = None;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails the first `fail` posts (retryably, or not), then delivers; records what came.
    struct Flaky {
        fail: usize,
        retry: bool,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Post for Flaky {
        fn post(&mut self, items: &[Item]) -> Attempt {
            if self.fail > 0 {
                self.fail -= 1;
                let reason = "HTTP 503".to_owned();
                let error = Some(Failure {
                    reason,
                    retry: self.retry,
                });
                return Attempt {
                    delivered: 0,
                    error,
                };
            }
            let mut got = self.got.lock().unwrap();
            got.extend(items.iter().map(|i| i.id.clone()));
            Attempt {
                delivered: items.len(),
                error: None,
            }
        }
    }

    fn retry(max_attempts: u32) -> Retry {
        Retry {
            max_attempts,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    fn item(i: usize) -> Item {
        Item {
            id: format!("a{i}"),
            body: format!("{{\"n\":{i}}}").into_bytes(),
        }
    }

    #[test]
    fn retries_deliver_everything_in_order_and_marks_settle() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let post = Flaky {
            fail: 3,
            retry: true,
            got: got.clone(),
        };
        let mut d = Delivery::start("test".into(), post, 4, retry(5), None);
        for i in 0..50 {
            d.push(item(i));
        }
        let mark = d.mark();
        mark.settle(Duration::from_secs(10)).unwrap();
        let want: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
        assert_eq!(*got.lock().unwrap(), want);
        assert_eq!((d.progress.delivered(), d.progress.dead()), (50, 0));
    }

    #[test]
    fn exhausted_or_refused_alerts_go_to_the_dead_letter_with_the_error() {
        for (fail, retry_helps, attempts) in [(3, true, 3), (1, false, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("dead.jsonl");
            let file = std::fs::File::create(&path).unwrap();
            let got = Arc::new(Mutex::new(Vec::new()));
            let post = Flaky {
                fail,
                retry: retry_helps,
                got: got.clone(),
            };
            let dead = Some(DeadLetter::File(file));
            let mut d = Delivery::start("test".into(), post, 8, retry(3), dead);
            for i in 0..3 {
                d.push(item(i));
            }
            d.drain(Duration::from_secs(10)).unwrap();
            // The first item is given up; the rest are delivered.
            assert_eq!(*got.lock().unwrap(), ["a1", "a2"]);
            assert_eq!((d.progress.delivered(), d.progress.dead()), (2, 1));
            let text = std::fs::read_to_string(&path).unwrap();
            let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(line["alert_id"], "a0");
            assert_eq!(line["error"], "HTTP 503");
            assert_eq!(line["attempts"], attempts);
            assert_eq!(line["alert"]["n"], 0);
        }
    }

    #[test]
    fn a_mark_not_settled_in_time_says_how_many_wait() {
        let post = Flaky {
            fail: usize::MAX,
            retry: true,
            got: Arc::default(),
        };
        let slow = Retry {
            max_attempts: 1000,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(50),
        };
        let mut d = Delivery::start("test".into(), post, 8, slow, None);
        d.push(item(0));
        let e = d.mark().settle(Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("1 alert(s) not delivered"), "{e}");
        std::mem::forget(d); // its thread would retry for a long while
    }
}
