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
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
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
