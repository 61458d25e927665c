//! End-to-end tests of `rulewatch run` against a real broker (Apache Kafka): alerts
//! against the reference, crash recovery, idle partitions, dead letters, late events,
//! shutdown, damaged checkpoints and a broker that goes away.

mod common;

use common::engine::{Engine, assert_same, dedup, sorted};
use common::kafka::{Broker, Received, keyed_messages, sentinels};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const PARTITIONS: i32 = 4;
/// Far past the generated data (which starts 2026-01-27T22:00Z).
const END: &str = "2026-01-28T00:00:00Z";

/// `rulewatch run` as the single-instance tests run it: group `rulewatch-test`, alerts to
/// `alerts`, checkpoints in `state`.
fn start(broker: &Broker, state: &Path, extra: &[&str]) -> Engine {
    start_in(broker, "rulewatch-test", state, extra)
}

/// [`start`] in consumer group `group`.
fn start_in(broker: &Broker, group: &str, state: &Path, extra: &[&str]) -> Engine {
    let state_arg = state.to_str().unwrap();
    let mut args = vec!["--group-id", group, "--alerts-topic", "alerts"];
    args.extend(["--checkpoint-dir", state_arg]);
    args.extend(extra);
    Engine::start(broker, state.parent().unwrap(), &args)
}

/// Generates events with no very late ones and disorder below the delay, so that the
/// result cannot depend on how partitions interleave; produces them keyed by user.
fn produce_logs(broker: &Broker, dir: &Path, n: &str, seed: &str) -> Vec<u8> {
    broker.create_topic("logs", PARTITIONS);
    let path = generate(
        dir,
        "logs.jsonl",
        &[
            "--events",
            n,
            "--late-share",
            "0",
            "--disorder",
            "3",
            "--seed",
            seed,
        ],
    );
    let input = std::fs::read(&path).unwrap();
    broker.produce("logs", &keyed_messages(&input));
    broker.produce("logs", &sentinels(PARTITIONS, END));
    input
}

/// Reads the alerts topic until `expected` distinct alerts are there (or 90 s pass).
fn wait_for_alerts(broker: &Broker, engine: &mut Engine, expected: usize) -> Vec<Received> {
    broker.consume("alerts", Duration::from_secs(90), |got| {
        engine.assert_running();
        dedup(got).len() >= expected
    })
}

#[test]
fn alerts_on_the_topic_match_the_reference_and_sigterm_checkpoints() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = produce_logs(&broker, dir.path(), "40000", "21");
    let expected = crash_reference(&input).alerts;
    assert!(expected.len() > 50);
    let state = dir.path().join("state");
    let mut engine = start(&broker, &state, &[]);
    let got = wait_for_alerts(&broker, &mut engine, expected.len());
    assert_same(&sorted(&dedup(&got)), &expected, &engine.log());
    // Each alert once: append mode emits a window's row when it closes.
    assert_eq!(got.len(), expected.len());
    let first = &got[0];
    let v: serde_json::Value = serde_json::from_slice(&first.value).unwrap();
    assert_eq!(first.key.as_deref(), v["alert_id"].as_str());
    assert_eq!(v["module_sha256"].as_str().unwrap().len(), 64);

    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("writing a last checkpoint"), "{log}");
    assert_eq!(
        checkpointed_offsets(&state) as usize,
        40_000 + PARTITIONS as usize,
        "offsets cover every message"
    );

    // A restart resumes after the checkpoint: nothing is read or alerted twice.
    let engine = start(&broker, &state, &[]);
    std::thread::sleep(wait::FOR_NOTHING);
    let (status, log) = engine.terminate();
    assert!(
        status.success() && log.contains("restored 4 of 4 partition(s)"),
        "{log}"
    );
    let again = broker.consume("alerts", Duration::from_secs(5), |_| false);
    assert_eq!(
        again.len(),
        expected.len(),
        "no alert was repeated after the restart"
    );
}

#[test]
fn killed_at_any_moment_the_deduplicated_alerts_equal_an_uninterrupted_run() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = produce_logs(&broker, dir.path(), "150000", "22");
    let expected = crash_reference(&input).alerts;
    let state = dir.path().join("state");
    // SIGKILL at several moments: while joining, mid-batch, around checkpoints. Each run in
    // a group of its own: the checkpoint, not the group, is what a restart resumes from.
    let mut logs = String::new();
    for (i, ms) in [900u64, 1600, 2400, 3300].into_iter().enumerate() {
        let engine = start_in(&broker, &format!("run-{i}"), &state, &[]);
        std::thread::sleep(Duration::from_millis(ms));
        logs += &format!("--- run {i}, killed after {ms} ms:\n{}", engine.log());
        engine.kill();
        // What a kill inside a checkpoint write leaves: a partial temporary file.
        if i == 1 {
            std::fs::create_dir_all(&state).unwrap();
            std::fs::write(state.join("checkpoint.tmp"), b"half a checkpoint").unwrap();
        }
    }
    let mut engine = start(&broker, &state, &[]);
    let got = wait_for_alerts(&broker, &mut engine, expected.len());
    let cp = std::fs::read_to_string(state.join("checkpoint")).unwrap_or_default();
    logs += &format!(
        "--- checkpoint before the last run ended: {}\n",
        &cp[..cp.len().min(600)]
    );
    let (_, log) = engine.terminate();
    logs += &format!("--- last run:\n{log}");
    assert_same(&sorted(&dedup(&got)), &expected, &logs);
}

#[test]
fn an_idle_partition_stops_holding_the_watermark_back() {
    let broker = Broker::start();
    broker.create_topic("logs", PARTITIONS);
    // Data only in partition 0; partitions 1..3 stay empty.
    let events: Vec<_> = [
        ("2026-01-27T22:00:01Z", "u1"),
        ("2026-01-27T22:00:02Z", "u1"),
        ("2026-01-27T22:00:03Z", "u1"),
        ("2026-01-27T22:00:30Z", "u2"),
    ]
    .iter()
    .map(|(t, u)| (Some(0), u.to_string(), crash_line(t, u, "High")))
    .collect();
    broker.produce("logs", &events);
    let dir = tempfile::tempdir().unwrap();
    let engine = start(&broker, &dir.path().join("s"), &["--idle-timeout", "2s"]);
    let got = broker.consume("alerts", Duration::from_secs(30), |g| !g.is_empty());
    let alerts = sorted(&dedup(&got));
    assert_eq!(alerts.len(), 1, "{}", engine.log());
    assert_eq!((alerts[0].key.as_str(), alerts[0].count), ("u1", 3));
}

#[test]
fn bad_and_late_records_go_to_their_topics_with_reason_and_position() {
    let broker = Broker::start();
    broker.create_topic("logs", 1);
    let good = |t: &str| crash_line(t, "u1", "High");
    let messages: Vec<(Option<i32>, String, Vec<u8>)> = [
        good("2026-01-27T22:00:01Z"),
        b"{not json".to_vec(),
        br#"{"timestamp":"2026-01-27T22:00:02Z","severity":7,"user_id":"u1","content":"x"}"#
            .to_vec(),
        good("2026-01-27T22:01:00Z"),
        good("2026-01-27T22:00:03Z"), // late: watermark 22:00:50
    ]
    .into_iter()
    .map(|v| (Some(0), "k".to_owned(), v))
    .collect();
    broker.produce("logs", &messages);
    let dir = tempfile::tempdir().unwrap();
    let engine = start(
        &broker,
        &dir.path().join("s"),
        &["--dead-letter-topic", "dlq", "--late-topic", "late"],
    );
    let dlq = broker.consume("dlq", Duration::from_secs(30), |g| g.len() >= 2);
    let late = broker.consume("late", Duration::from_secs(30), |g| !g.is_empty());
    assert_eq!(dlq.len(), 2, "{}", engine.log());
    assert_eq!(dlq[0].value, b"{not json");
    assert_eq!(dlq[0].headers["rulewatch.reason"], "not_json");
    assert_eq!(dlq[0].headers["rulewatch.source.topic"], "logs");
    assert_eq!(dlq[0].headers["rulewatch.source.partition"], "0");
    assert_eq!(dlq[0].headers["rulewatch.source.offset"], "1");
    assert_eq!(dlq[1].headers["rulewatch.reason"], "wrong_type");
    assert_eq!(dlq[1].headers["rulewatch.rule"], "crash");
    assert!(dlq[1].headers["rulewatch.error"].contains("severity"));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].value, good("2026-01-27T22:00:03Z"));
    assert_eq!(late[0].headers["rulewatch.source.offset"], "4");
    assert_eq!(
        late[0].headers["rulewatch.watermark"],
        "2026-01-27T22:00:50Z"
    );
    assert_eq!(late[0].headers["rulewatch.lateness_ms"], "47000");
}

#[test]
fn a_damaged_checkpoint_stops_the_start_unless_told_to_start_fresh() {
    let broker = Broker::start();
    broker.create_topic("logs", 1);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("checkpoint"),
        b"rulewatch-checkpoint v1 sha256=00 bytes=2\n{}",
    )
    .unwrap();
    let mut engine = start(&broker, &state, &[]);
    let status = engine.child.wait().unwrap();
    let log = engine.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("is damaged") && log.contains("--fresh-start"),
        "{log}"
    );

    let engine = start(&broker, &state, &["--fresh-start"]);
    std::thread::sleep(wait::FOR_NOTHING);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("ignoring the checkpoint"), "{log}");
    assert!(
        checkpoint_is_readable(&state),
        "a good checkpoint replaced the damaged one"
    );
}

/// The offsets the checkpoint file in `state` covers, summed over the input partitions
/// (`logs/*`); 0 while there is none.
fn checkpointed_offsets(state: &Path) -> i64 {
    let Ok(cp) = std::fs::read_to_string(state.join("checkpoint")) else {
        return 0;
    };
    let body: serde_json::Value = serde_json::from_str(cp.split_once('\n').unwrap().1).unwrap();
    (body["partitions"].as_object().unwrap().iter())
        .filter(|(name, _)| name.starts_with("logs/"))
        .map(|(_, p)| p["offset"].as_i64().unwrap())
        .sum()
}

/// One event line of the shape the crash rule reads, with "crash" in its content.
fn crash_line(time: &str, user: &str, severity: &str) -> Vec<u8> {
    format!(
        r#"{{"timestamp":"{time}","severity":"{severity}","user_id":"{user}","content":"crash"}}"#
    )
    .into_bytes()
}

fn checkpoint_is_readable(state: &Path) -> bool {
    let text = std::fs::read_to_string(state.join("checkpoint")).unwrap_or_default();
    text.split_once('\n')
        .is_some_and(|(_, body)| serde_json::from_str::<serde_json::Value>(body).is_ok())
}

#[test]
fn a_broker_that_goes_away_and_comes_back_loses_nothing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = produce_logs(&broker, dir.path(), "30000", "23");
    let expected = crash_reference(&input).alerts;
    let mut engine = start(&broker, &dir.path().join("state"), &[]);
    // The broker freezes while the engine reads, for longer than librdkafka's reconnect
    // backoff (the fault is the point: nothing to poll for).
    let (into_reading, outage) = (Duration::from_millis(800), Duration::from_secs(4));
    std::thread::sleep(into_reading);
    broker.pause();
    std::thread::sleep(outage);
    broker.resume();
    let got = wait_for_alerts(&broker, &mut engine, expected.len());
    assert_same(&sorted(&dedup(&got)), &expected, &engine.log());
    let (status, _) = engine.terminate();
    assert!(status.success());
}

#[test]
fn quiet_close_emits_open_windows_when_no_data_comes() {
    // Counted per input partition, and counted after a repartition topic.
    for keyed_by in ["user_id", "none"] {
        let broker = Broker::start();
        broker.create_topic("logs", 1);
        let events: Vec<_> = (1..4)
            .map(|s| {
                let line = crash_line(&format!("2026-01-27T22:00:0{s}Z"), "u1", "High");
                (Some(0), "u1".to_owned(), line)
            })
            .collect();
        broker.produce("logs", &events);
        let dir = tempfile::tempdir().unwrap();
        let args = ["--quiet-close", "2s", "--keyed-by", keyed_by];
        let mut engine = start(&broker, &dir.path().join("s"), &args);
        let got = broker.consume("alerts", Duration::from_secs(30), |g| {
            engine.assert_running();
            !g.is_empty()
        });
        let alerts = sorted(&dedup(&got));
        let log = engine.log();
        assert_eq!(alerts.len(), 1, "{log}");
        assert_eq!((alerts[0].key.as_str(), alerts[0].count), ("u1", 3));
        assert!(
            log.contains("no data for 2s: closing the windows they hold"),
            "{log}"
        );
        assert_eq!(log.contains("repartitioning"), keyed_by == "none", "{log}");
    }
}

#[test]
fn health_readiness_lag_and_partition_watermarks() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("logs", PARTITIONS);
    let state = dir.path().join("state");
    // Frozen broker: the engine is alive (healthz) but has no partitions (not ready).
    broker.pause();
    let mut engine = start(&broker, &state, &[]);
    let addr = http_addr(|| engine.log());
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 503);
    assert!(body.starts_with("not ready: "), "{body}");
    broker.resume();
    eventually(Duration::from_secs(60), engine.log_reader(), || {
        engine.assert_running();
        (http_get(&addr, "/readyz").0 == 200).then_some(())
    });

    let path = generate(
        dir.path(),
        "logs.jsonl",
        &["--events", "20000", "--late-share", "0"],
    );
    let input = std::fs::read(&path).unwrap();
    let expected = crash_reference(&input);
    broker.produce("logs", &keyed_messages(&input));
    broker.produce("logs", &sentinels(PARTITIONS, END));
    let total = 20_000.0 + f64::from(PARTITIONS);
    let alerts = r#"rulewatch_alerts_total{rule="crash"}"#;
    let metrics = || http_get(&addr, "/metrics").1;
    let text = eventually(Duration::from_secs(60), metrics, || {
        engine.assert_running();
        let (_, text) = http_get(&addr, "/metrics");
        let all = metric(&text, "rulewatch_events_total") == Some(total)
            && metric(&text, alerts) == Some(expected.alerts.len() as f64);
        all.then_some(text)
    });
    let get = |sample: &str| metric(&text, sample).unwrap_or_else(|| panic!("{sample}:\n{text}"));
    assert_eq!(
        get(r#"rulewatch_rule_matched_total{rule="crash"}"#),
        expected.matched as f64
    );
    // Each partition ends with a sentinel at END: its watermark is END minus the 10 s delay.
    let end = chrono::DateTime::parse_from_rfc3339(END)
        .unwrap()
        .timestamp() as f64;
    for p in 0..PARTITIONS {
        let labels = format!(r#"topic="logs",partition="{p}""#);
        assert_eq!(get(&format!("rulewatch_consumer_lag{{{labels}}}")), 0.0);
        assert_eq!(get(&format!("rulewatch_partition_idle{{{labels}}}")), 0.0);
        assert_eq!(
            get(&format!(
                r#"rulewatch_partition_watermark_seconds{{rule="crash",{labels}}}"#
            )),
            end - 10.0
        );
    }
    assert_eq!(
        get(r#"rulewatch_rule_watermark_seconds{rule="crash"}"#),
        end - 10.0
    );
    assert!(get("rulewatch_checkpoint_age_seconds") < 30.0);
    assert!(get("rulewatch_checkpoint_duration_seconds_count") >= 1.0);
    assert_eq!(get("rulewatch_ready"), 1.0);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn loadgen_produces_keyed_or_unkeyed_events_to_a_topic_it_creates() {
    let broker = Broker::start();
    for (topic, unkeyed) in [("keyed", false), ("unkeyed", true)] {
        let mut args = vec!["loadgen", "--brokers", &broker.addr, "--topic", topic];
        args.extend(["--partitions", "3", "--events", "3000"]);
        if unkeyed {
            args.push("--unkeyed");
        }
        rulewatch_ok(&args, None);
        let got = broker.consume(topic, Duration::from_secs(30), |got| got.len() >= 3000);
        assert_eq!(got.len(), 3000, "{topic}");
        let partitions: std::collections::BTreeSet<i32> = got.iter().map(|m| m.partition).collect();
        assert_eq!(
            partitions.len(),
            3,
            "{topic}: spread over the 3 partitions it created"
        );
        let mut owner: BTreeMap<String, i32> = BTreeMap::new();
        for m in &got {
            let event: serde_json::Value = serde_json::from_slice(&m.value).unwrap();
            let user = event["user_id"].as_str().unwrap();
            if unkeyed {
                assert_eq!(m.key, None);
            } else {
                assert_eq!(m.key.as_deref(), Some(user));
                // Keyed by user: each user's events stay in one partition.
                assert_eq!(
                    *owner.entry(user.to_owned()).or_insert(m.partition),
                    m.partition
                );
            }
        }
    }
}

#[test]
fn a_rule_first_repartitioned_on_an_empty_topic_stays_so_after_a_restart() {
    let broker = Broker::start();
    broker.create_topic("logs", 2);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let event = |t: &str, user: &str, severity: &str| {
        let line = crash_line(&format!("2026-01-27T{t}Z"), user, severity);
        (None, user.to_owned(), line)
    };
    // Nothing to look at: `auto` cannot tell how the input is keyed and repartitions.
    let engine = start(&broker, &state, &[]);
    broker.produce(
        "logs",
        &[
            event("22:00:01", "u1", "High"),
            event("22:00:02", "u1", "High"),
        ],
    );
    // Both events read and checkpointed before the restart.
    eventually(Duration::from_secs(30), engine.log_reader(), || {
        (checkpointed_offsets(&state) >= 2).then_some(())
    });
    let (status, first) = engine.terminate();
    assert!(status.success() && first.contains("cannot tell"), "{first}");
    // Now the topic shows keys = user_id, but the rule's state is in the repartition topic.
    let mut engine = start(&broker, &state, &[]);
    broker.produce("logs", &[event("22:00:03", "u1", "High")]);
    let sentinels: Vec<_> = (0..2)
        .map(|p| {
            let (_, key, line) = event("22:01:00", "sentinel", "Low");
            (Some(p), key, line)
        })
        .collect();
    broker.produce("logs", &sentinels);
    let got = broker.consume("alerts", Duration::from_secs(30), |g| {
        engine.assert_running();
        !g.is_empty()
    });
    let log = engine.log();
    assert!(log.contains("repartitioned as in its checkpoints"), "{log}");
    let alerts = sorted(&dedup(&got));
    assert_eq!(alerts.len(), 1, "{first}\n{log}");
    assert_eq!(
        (alerts[0].key.as_str(), alerts[0].count),
        ("u1", 3),
        "{log}"
    );
}

/// Waits up to 60 s until `f` holds ([`eventually`] for a condition).
fn soon(what: &str, mut f: impl FnMut() -> bool) {
    let never = || format!("never: {what}");
    eventually(Duration::from_secs(60), never, || f().then_some(()));
}

/// Checkpoints that cannot be stored for a while (`block` makes the checkpoint folder
/// fail, `unblock` mends it; `why` is in the error): the engine goes on processing, commits
/// nothing meanwhile, says so once in the log, on /readyz and in a metric, and recovers by
/// itself. Alerts are exact, and a SIGKILL after the recovery resumes from a good
/// checkpoint.
fn storage_fault(state: &Path, block: impl Fn(&Path), unblock: impl Fn(&Path), why: &str) {
    let broker = Broker::start();
    let dir = state.parent().unwrap();
    broker.create_topic("logs", PARTITIONS);
    let input = std::fs::read(generate(
        dir,
        "logs.jsonl",
        &["--events", "40000", "--late-share", "0", "--seed", "24"],
    ))
    .unwrap();
    let expected = crash_reference(&input).alerts;
    let messages = keyed_messages(&input);
    let half = messages.len() / 2;
    broker.produce("logs", &messages[..half]);
    let mut engine = start(&broker, state, &[]);
    soon("a first checkpoint", || state.join("checkpoint").exists());
    let addr = http_addr(|| engine.log());

    block(state);
    soon("the failure logged", || {
        engine.log().contains("checkpoint not written")
    });
    assert!(engine.log().contains(why), "{}", engine.log());
    let committed = checkpointed_offsets(state);
    // The status is published every quarter of a second.
    soon("/readyz says why", || {
        let (code, body) = http_get(&addr, "/readyz");
        code == 503 && body.contains("checkpoints are not being written")
    });
    let metrics = http_get(&addr, "/metrics").1;
    assert_eq!(metric(&metrics, "rulewatch_checkpoint_failing"), Some(1.0));
    // Still processing: the second half is read while nothing can be checkpointed.
    broker.produce("logs", &messages[half..]);
    broker.produce("logs", &sentinels(PARTITIONS, END));
    soon("the rest read", || {
        let m = http_get(&addr, "/metrics").1;
        metric(&m, "rulewatch_events_total").is_some_and(|n| n as usize >= messages.len())
    });
    assert_eq!(
        checkpointed_offsets(state),
        committed,
        "nothing stored meanwhile"
    );
    assert_eq!(
        engine.log().matches("checkpoint not written").count(),
        1,
        "logged once per change of state"
    );

    unblock(state);
    soon("the recovery logged", || {
        engine.log().contains("checkpoints are written again")
    });
    soon("ready again", || http_get(&addr, "/readyz").0 == 200);
    let got = wait_for_alerts(&broker, &mut engine, expected.len());
    assert_same(&sorted(&dedup(&got)), &expected, &engine.log());
    soon("every offset checkpointed", || {
        checkpointed_offsets(state) as usize == messages.len() + PARTITIONS as usize
    });
    engine.kill();
    // In a group of its own: the killed member would hold the old one for its session.
    let engine = start_in(&broker, "after-kill", state, &[]);
    soon("the restart restored", || {
        engine.log().contains("restored 4 of 4")
    });
    std::thread::sleep(wait::FOR_NOTHING);
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    let again = broker.consume("alerts", Duration::from_secs(5), |_| false);
    assert_same(&sorted(&dedup(&again)), &expected, &log);
}

/// The checkpoint folder turns unwritable for a while: a directory where the checkpoint's
/// temporary file goes (root ignores permission bits, so a read-only folder is made this
/// way).
#[test]
fn an_unwritable_checkpoint_folder_stops_commits_not_processing() {
    let dir = tempfile::tempdir().unwrap();
    storage_fault(
        &dir.path().join("state"),
        |state| std::fs::create_dir(state.join("checkpoint.tmp")).unwrap(),
        |state| std::fs::remove_dir(state.join("checkpoint.tmp")).unwrap(),
        "Is a directory",
    );
}

/// A real full disk: the checkpoint folder is a 2 MiB tmpfs, filled up for a while.
#[test]
fn a_full_checkpoint_disk_stops_commits_not_processing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (./test.sh runs as root)"
    );
    /// Unmounts the tmpfs however the test ends.
    struct Mounted<'a>(&'a Path);
    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
        }
    }
    let _mounted = Mounted(&state);
    storage_fault(
        &state,
        |state| {
            use std::io::Write;
            let mut filler = std::fs::File::create(state.join("filler")).unwrap();
            while filler.write_all(&[0u8; 16 << 10]).is_ok() {}
        },
        |state| std::fs::remove_file(state.join("filler")).unwrap(),
        "No space left on device",
    );
}

#[test]
fn a_checkpoint_written_in_one_record_batch_is_restored_whole() {
    // One checkpoint of every partition, written at SIGTERM in one batch to the checkpoint
    // topic: the next instance must find all of them, although the test broker reports the
    // start of its last record batch as the topic's end.
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let input = produce_logs(&broker, dir.path(), "20000", "23");
    let expected = crash_reference(&input).alerts;
    let args = [
        "--group-id",
        "one-batch",
        "--alerts-topic",
        "alerts",
        "--checkpoint-topic",
        "checkpoints",
        "--checkpoint-interval",
        "1h",
    ];
    let mut first = Engine::start(&broker, dir.path(), &args);
    wait_for_alerts(&broker, &mut first, expected.len());
    let (status, log) = first.terminate();
    assert!(
        status.success() && log.contains("writing a last checkpoint"),
        "{log}"
    );
    let second = Engine::start(&broker, dir.path(), &args);
    eventually(Duration::from_secs(60), second.log_reader(), || {
        second.log().contains("rebalance: restored").then_some(())
    });
    let (_, log) = second.terminate();
    assert!(
        log.contains(&format!(
            "restored {PARTITIONS} of {PARTITIONS} partition(s)"
        )),
        "{log}"
    );
}

/// Reading partitions to their end is routine (the keying check reads the input topic so at
/// start-up, and some partitions may hold nothing yet): it is never logged as an error.
#[test]
fn reading_partitions_to_their_end_is_not_logged_as_an_error() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("logs", PARTITIONS);
    broker.produce(
        "logs",
        &keyed_messages(&crash_line("2026-01-27T22:00:00Z", "u", "High")),
    );
    let state = dir.path().join("state");
    let mut engine = start(&broker, &state, &[]);
    std::thread::sleep(wait::FOR_NOTHING);
    engine.assert_running();
    let (status, log) = engine.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}
