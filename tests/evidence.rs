//! Alerts that carry their evidence (`[output] evidence = N`): every evidence position of a
//! file replay points at an event that matches the rule, in that window, with that key, and
//! they are the N smallest-positioned of the events counted (on time) for it, whatever the
//! number of workers; `rulewatch evidence` prints those lines.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;

/// The crash rule keeping `n` evidence positions, in a rules folder.
pub fn crash_with_evidence(n: usize) -> tempfile::TempDir {
    let toml = crash_toml().replace("[output]", &format!("[output]\nevidence = {n}"));
    rules_dir(&[("crash", &toml, &rule_wasm("rulewatch-rule-crash", "crash"))])
}

/// An event of the crash rule: (line number, key, event time ms) of a line that matches it.
fn matching(line: &str) -> Option<(String, i64)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let severity = v.get("severity")?.as_str()?;
    let content = v.get("content")?.as_str()?;
    if !["High", "Critical"].contains(&severity) || !content.to_lowercase().contains("crash") {
        return None;
    }
    let time = chrono::DateTime::parse_from_rfc3339(v.get("timestamp")?.as_str()?).ok()?;
    Some((
        v.get("user_id")?.as_str()?.to_owned(),
        time.timestamp_millis(),
    ))
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn replay_with(input: &Path, rules: &Path, late: &Path, workers: &str) -> Vec<serde_json::Value> {
    let (out, _) = rulewatch_ok(
        &[
            "replay",
            input.to_str().unwrap(),
            "--format",
            "jsonl",
            "--rules",
            rules.to_str().unwrap(),
            "--late",
            late.to_str().unwrap(),
            "--workers",
            workers,
        ],
        None,
    );
    json_lines(&out)
}

#[test]
fn evidence_points_at_the_smallest_counted_events_of_each_alert() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--events",
        "40000",
        "--disorder",
        "8",
        "--late-share",
        "0.05",
        "--seed",
        "7",
    ];
    let input = generate(dir.path(), "in.jsonl", &args);
    let text = std::fs::read_to_string(&input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let late_path = dir.path().join("late.jsonl");
    let rules = crash_with_evidence(3);
    let alerts = replay_with(&input, rules.path(), &late_path, "1");
    assert!(alerts.len() > 50);
    let late: BTreeSet<u64> = std::fs::read_to_string(&late_path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(!late.is_empty(), "the input has late events");
    for alert in &alerts {
        let key = alert["key"].as_str().unwrap();
        let (start, end) = (
            ms(alert["window_start"].as_str().unwrap()),
            ms(alert["window_end"].as_str().unwrap()),
        );
        // The events counted for it: matching, its key, in its window, not late; by line.
        let counted: Vec<u64> = (1..=lines.len() as u64)
            .filter(|n| !late.contains(n))
            .filter(|&n| {
                matching(lines[n as usize - 1])
                    .is_some_and(|(k, t)| k == key && (start..end).contains(&t))
            })
            .collect();
        assert_eq!(
            counted.len() as u64,
            alert["count"].as_u64().unwrap(),
            "{alert}"
        );
        let evidence: Vec<(u64, u64)> = alert["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["line"].as_u64().unwrap(), e["byte"].as_u64().unwrap()))
            .collect();
        let lines_of: Vec<u64> = evidence.iter().map(|e| e.0).collect();
        assert_eq!(lines_of, counted[..3.min(counted.len())], "{alert}");
        for (line, byte) in evidence {
            let at = &text[byte as usize..];
            assert_eq!(at.lines().next().unwrap(), lines[line as usize - 1]);
        }
    }

    // The same with two workers, byte for byte.
    let two = replay_with(&input, rules.path(), &late_path, "2");
    assert_eq!(two, alerts);

    // `rulewatch evidence` prints each alert's evidence lines from the file.
    let first: String = alerts[..2].iter().map(|a| format!("{a}\n")).collect();
    let (printed, said) = rulewatch_ok(
        &["evidence", "--input", input.to_str().unwrap()],
        Some(first.as_bytes()),
    );
    let expected: Vec<&str> = alerts[..2]
        .iter()
        .flat_map(|a| a["evidence"].as_array().unwrap().clone())
        .map(|e| lines[e["line"].as_u64().unwrap() as usize - 1])
        .collect();
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
    assert!(said.contains("3 of its events"), "{said}");
}

#[test]
fn without_evidence_alerts_have_none_and_the_command_says_how_to_get_some() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "in.jsonl", &["--events", "5000", "--seed", "8"]);
    let (out, _) = rulewatch_ok(
        &["replay", input.to_str().unwrap(), "--format", "jsonl"],
        None,
    );
    assert!(!out.contains("evidence"));
    let first = format!("{}\n", out.lines().next().unwrap());
    let (printed, said) = rulewatch_ok(&["evidence"], Some(first.as_bytes()));
    assert!(printed.is_empty());
    assert!(said.contains("set [output] evidence = N"), "{said}");
    // Over the limit: refused with the limit.
    let rules = crash_with_evidence(17);
    let out = rulewatch(
        &[
            "replay",
            input.to_str().unwrap(),
            "--rules",
            rules.path().to_str().unwrap(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("output.evidence = 17 is over 16"),
        "{stderr}"
    );
}

/// Alert id → evidence, of alert JSON objects.
fn evidence_by_id<'a>(
    alerts: impl Iterator<Item = &'a serde_json::Value>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    alerts
        .map(|a| {
            (
                a["alert_id"].as_str().unwrap().to_owned(),
                a["evidence"].clone(),
            )
        })
        .collect()
}

#[test]
fn after_kills_and_restarts_kafka_alerts_carry_the_evidence_of_a_backtest() {
    use common::engine::Engine;
    use common::kafka::{Broker, keyed_messages, sentinels};
    use std::time::Duration;
    let broker = Broker::start();
    broker.create_topic("logs", 4);
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--events",
        "60000",
        "--disorder",
        "3",
        "--late-share",
        "0",
        "--seed",
        "9",
    ];
    let input = std::fs::read(generate(dir.path(), "in.jsonl", &args)).unwrap();
    broker.produce("logs", &keyed_messages(&input));
    broker.produce("logs", &sentinels(4, "2026-01-28T00:00:00Z"));
    let rules = crash_with_evidence(3);
    let rules_arg = rules.path().to_str().unwrap();

    // The history through a backtest: what an uninterrupted run counts per partition.
    let backtest = |extra: &[&str]| {
        let args = ["replay", "--brokers", &broker.addr, "--topics", "logs"];
        rulewatch_ok(&[&args[..], &["--format", "jsonl"], extra].concat(), None).0
    };
    let (out, out_rules) = (backtest(&[]), backtest(&["--rules", rules_arg]));
    assert!(!out.contains("evidence") && out_rules.contains("evidence"));
    let backtest = json_lines(&out_rules);
    let expected = evidence_by_id(backtest.iter());
    assert!(expected.len() > 50);

    // `run`, killed at several moments and restarted from its checkpoints.
    let state = dir.path().join("state");
    let start = |group: &str| {
        let args = [
            "--group-id",
            group,
            "--alerts-topic",
            "alerts",
            "--rules",
            rules_arg,
        ];
        let state = ["--checkpoint-dir", state.to_str().unwrap()];
        Engine::start(&broker, dir.path(), &[&args[..], &state].concat())
    };
    for (i, ms) in [1200u64, 2500].into_iter().enumerate() {
        let engine = start(&format!("run-{i}"));
        std::thread::sleep(Duration::from_millis(ms));
        engine.kill();
    }
    let mut engine = start("last");
    let got = broker.consume("alerts", Duration::from_secs(90), |got| {
        engine.assert_running();
        got.iter()
            .filter_map(|m| m.key.clone())
            .collect::<BTreeSet<_>>()
            .len()
            >= expected.len()
    });
    let log = engine.log();
    engine.kill();
    let alerts: Vec<serde_json::Value> = got
        .iter()
        .map(|m| serde_json::from_slice(&m.value).unwrap())
        .collect();
    // Every message of an alert, re-emitted after a restart or not, carries the same evidence.
    for a in &alerts {
        let id = a["alert_id"].as_str().unwrap();
        assert_eq!(Some(&a["evidence"]), expected.get(id), "{a}\n{log}");
    }
    assert_eq!(evidence_by_id(alerts.iter()), expected);

    // From an alert id to its log lines, through the alerts topic.
    let (id, alert) = expected.iter().next().unwrap();
    let key = backtest
        .iter()
        .find(|a| a["alert_id"] == id.as_str())
        .unwrap()["key"]
        .clone();
    let (printed, _) = rulewatch_ok(
        &[
            "evidence",
            "--brokers",
            &broker.addr,
            "--alerts-topic",
            "alerts",
            "--alert-id",
            id,
        ],
        None,
    );
    let printed = json_lines(&printed);
    assert_eq!(printed.len(), alert.as_array().unwrap().len());
    for event in &printed {
        assert_eq!(event["user_id"], key);
        assert!(matching(&event.to_string()).is_some(), "{event}");
    }
}

#[test]
fn rulewatch_test_compares_evidence_when_asked() {
    let rules = crash_with_evidence(2);
    let toml = rules.path().join("crash.toml");
    let expect = rules.path().join("expected.jsonl");
    let sample = workspace().join("examples/data/sample.jsonl");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut a = vec![
            "test".to_owned(),
            toml.display().to_string(),
            "--events".into(),
            sample.display().to_string(),
            "--expect".into(),
            expect.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        rulewatch(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
    };
    assert!(run(&["--evidence", "--write"]).status.success());
    let written = std::fs::read_to_string(&expect).unwrap();
    assert!(written.contains(r#""evidence":[{"byte":"#), "{written}");
    assert!(run(&["--evidence"]).status.success());
    // One evidence position off: a difference with --evidence, none without.
    let first = written.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    let line = v["evidence"][0]["line"].as_u64().unwrap();
    let changed = first.replacen(
        &format!(r#""line":{line}"#),
        &format!(r#""line":{}"#, line + 1),
        1,
    );
    std::fs::write(&expect, written.replacen(first, &changed, 1)).unwrap();
    let out = run(&["--evidence"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(expected, not produced)"));
    assert!(run(&[]).status.success());
}
