//! `rulewatch run` against a test broker, and the alert comparisons the Kafka tests make.

use super::kafka::{Broker, Protocol, Received, signal};
use super::{Alert, crash_reference_partitions, eventually, parse_alerts};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An instance of consumer group `group` on topic `logs` with the rules in `rules`, alerts
/// to topic `{group}-alerts`, checkpoints in topic `{group}-cp`, and partitions never idle
/// within a test (idleness, a wall-clock decision, kept out of the way).
pub(crate) fn member(
    broker: &Broker,
    dir: &Path,
    rules: &Path,
    group: &str,
    protocol: Protocol,
) -> Engine {
    member_with(broker, dir, rules, group, protocol, &[])
}

/// [`member`] with more flags, `more`.
pub(crate) fn member_with(
    broker: &Broker,
    dir: &Path,
    rules: &Path,
    group: &str,
    protocol: Protocol,
    more: &[&str],
) -> Engine {
    let (alerts, checkpoints) = (format!("{group}-alerts"), format!("{group}-cp"));
    let args = [
        "--group-id",
        group,
        "--alerts-topic",
        &alerts,
        "--checkpoint-topic",
        &checkpoints,
        "--idle-timeout",
        "1h",
        "--rules",
        rules.to_str().unwrap(),
    ];
    Engine::start_in(broker, "logs", dir, &[&args[..], more].concat(), protocol)
}

/// Waits until `topic` has an alert (90 s at most), checking that `engines` are alive.
pub(crate) fn first_alert(broker: &Broker, topic: &str, engines: &mut [Engine]) {
    let logs: Vec<_> = engines.iter().map(Engine::log_reader).collect();
    super::eventually(
        Duration::from_secs(90),
        || {
            let logs: String = (logs.iter().enumerate())
                .map(|(i, log)| format!("--- instance {i}:\n{}", log()))
                .collect();
            format!("no alert in {topic}\n{logs}")
        },
        || {
            engines.iter_mut().for_each(Engine::assert_running);
            let got = broker.consume(topic, Duration::from_secs(1), |g| !g.is_empty());
            (!got.is_empty()).then_some(())
        },
    );
}

/// A running `rulewatch run`.
pub(crate) struct Engine {
    pub child: Child,
    stderr: tempfile::NamedTempFile,
}

impl Engine {
    /// `rulewatch run` on topic `logs` of `broker`, in folder `dir`, with checkpoints every
    /// 300 ms, a 6 s session timeout and `args` (group, outputs, state).
    pub(crate) fn start(broker: &Broker, dir: &Path, args: &[&str]) -> Engine {
        Self::start_on(broker, "logs", dir, args)
    }

    /// [`Engine::start`] on topic `topic`.
    pub(crate) fn start_on(broker: &Broker, topic: &str, dir: &Path, args: &[&str]) -> Engine {
        Self::start_in(broker, topic, dir, args, Protocol::Classic)
    }

    /// [`Engine::start_on`] with the consumer group protocol `protocol`.
    pub(crate) fn start_in(
        broker: &Broker,
        topic: &str,
        dir: &Path,
        args: &[&str],
        protocol: Protocol,
    ) -> Engine {
        // The classic protocol's session is the client's; the consumer protocol's is the
        // broker's (6 s in tests/kafka/broker.sh), and librdkafka refuses client settings.
        let group: &[&str] = match protocol {
            Protocol::Classic => &["--kafka-option", "session.timeout.ms=6000"],
            Protocol::Consumer => &["--kafka-option", "group.protocol=consumer"],
        };
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rulewatch"))
            .args(["run", "--brokers", &broker.addr, "--topics", topic])
            .args(["--console", "none"])
            // Checkpoints every 300 ms unless the test says otherwise.
            .args(if args.contains(&"--checkpoint-interval") {
                &[][..]
            } else {
                &["--checkpoint-interval", "300ms"][..]
            })
            .args(group)
            // The rebalance timeout: how long a rebalance waits for a member that was killed
            // while the group formed (librdkafka's default is 5 minutes).
            .args(["--kafka-option", "max.poll.interval.ms=10000"])
            .args(
                broker
                    .client_options()
                    .iter()
                    .flat_map(|(k, v)| ["--kafka-option".to_owned(), format!("{k}={v}")]),
            )
            .args(args)
            .env("RUST_LOG", "info")
            // Two workers on any machine: every guarantee must hold with the filter stage
            // split over threads.
            .env("RULEWATCH_WORKERS", "2")
            // A free port for the status endpoint: tests run side by side.
            .env("RULEWATCH_HTTP_LISTEN", "127.0.0.1:0")
            // No rulewatch.toml there: flags and defaults only.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        Engine { child, stderr }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }

    /// Reads the log when called, without holding on to the engine (for a message while
    /// the engine itself is borrowed).
    pub(crate) fn log_reader(&self) -> impl Fn() -> String + use<> {
        let path = self.stderr.path().to_owned();
        move || std::fs::read_to_string(&path).unwrap()
    }

    /// Panics with the log if the engine has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("rulewatch run exited ({status}):\n{}", self.log());
        }
    }

    /// Freezes the engine (SIGSTOP), as a machine pause or a long GC would.
    pub(crate) fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    /// Resumes a paused engine (SIGCONT).
    pub(crate) fn resume(&self) {
        signal(self.child.id(), "CONT");
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status within 30 s.
    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let no_exit = || "no exit after SIGTERM".to_owned();
        let status = eventually(Duration::from_secs(30), no_exit, || {
            self.child.try_wait().unwrap()
        });
        (status, self.log())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alerts by id (the last row of each), as a consumer deduplicating by id sees them.
pub(crate) fn dedup(received: &[Received]) -> BTreeMap<String, Alert> {
    received
        .iter()
        .map(|m| {
            let alert = parse_alerts(std::str::from_utf8(&m.value).unwrap()).remove(0);
            (m.key.clone().unwrap(), alert)
        })
        .collect()
}

pub(crate) fn sorted(alerts: &BTreeMap<String, Alert>) -> Vec<Alert> {
    let mut v: Vec<Alert> = alerts.values().cloned().collect();
    v.sort();
    v
}

/// Compares alert sets, showing only the differences.
pub(crate) fn assert_same(got: &[Alert], expected: &[Alert], log: &str) {
    let missing: Vec<_> = expected
        .iter()
        .filter(|a| !got.contains(a))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|a| !expected.contains(a))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && got.len() == expected.len(),
        "{} alerts, {} expected; missing (first 5): {missing:?}; unexpected (first 5): \
         {extra:?}\nengine log:\n{log}",
        got.len(),
        expected.len()
    );
}

/// The reference's alerts over the partitions of `topic` as they stand: each partition's
/// lateness judged by its own watermark.
pub(crate) fn per_partition_reference(broker: &Broker, topic: &str) -> Vec<Alert> {
    let inputs: Vec<Vec<u8>> = broker
        .read_all(topic)
        .values()
        .map(|messages| {
            let mut input = Vec::new();
            for m in messages {
                input.extend_from_slice(&m.value);
                input.push(b'\n');
            }
            input
        })
        .collect();
    let inputs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    crash_reference_partitions(&inputs).alerts
}

/// Reads `topic` until `expected` distinct alerts are there (or 120 s pass), checking that
/// the engines are alive.
pub(crate) fn wait_for(
    broker: &Broker,
    topic: &str,
    engines: &mut [&mut Engine],
    expected: usize,
) -> Vec<Alert> {
    wait_within(broker, topic, engines, expected, Duration::from_secs(120))
}

/// [`wait_for`] for at most `timeout`.
pub(crate) fn wait_within(
    broker: &Broker,
    topic: &str,
    engines: &mut [&mut Engine],
    expected: usize,
    timeout: Duration,
) -> Vec<Alert> {
    let got = broker.consume(topic, timeout, |got| {
        for e in engines.iter_mut() {
            e.assert_running();
        }
        dedup(got).len() >= expected
    });
    // Append mode: an alert id carries one count, however often it was sent.
    let mut counts: BTreeMap<String, Alert> = BTreeMap::new();
    for m in &got {
        let alert = parse_alerts(std::str::from_utf8(&m.value).unwrap()).remove(0);
        let id = m.key.clone().unwrap();
        if let Some(before) = counts.insert(id.clone(), alert.clone()) {
            assert_eq!(before, alert, "alert {id} sent with two counts");
        }
    }
    sorted(&dedup(&got))
}
