//! End-to-end tests of `rulewatch replay` with the real binary and the real crash rule module,
//! against an independent reference of the documented semantics.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Generated data — in order, out of order, very late and malformed lines — gives exactly
/// the reference's alerts, late count and bad counts.
#[test]
fn replay_matches_the_reference_on_generated_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "ordered.jsonl",
            &[
                "--events",
                "30000",
                "--disorder",
                "0",
                "--late-share",
                "0",
                "--seed",
                "1",
            ],
        ),
        (
            "disordered.jsonl",
            &["--events", "60000", "--disorder", "8", "--seed", "2"],
        ),
        (
            "late_and_bad.jsonl",
            &[
                "--events",
                "80000",
                "--late-share",
                "0.02",
                "--bad",
                "0.02",
                "--users",
                "300",
                "--seed",
                "3",
            ],
        ),
    ];
    for (name, args) in cases {
        let path = generate(dir.path(), name, args);
        let input = std::fs::read(&path).unwrap();
        let exp = crash_reference(&input);
        assert!(
            exp.alerts.len() > 20,
            "{name}: too few alerts to mean anything"
        );
        let (stdout, stderr) = rulewatch_ok(
            &[
                "replay",
                path.to_str().unwrap(),
                "--format",
                "jsonl",
                "--mode",
                "append",
            ],
            None,
        );
        let mut got = parse_alerts(&stdout);
        got.sort();
        assert_eq!(got, exp.alerts, "{name}: alerts differ from the reference");
        assert_eq!(summary_count(&stderr, "late"), exp.late, "{name}: late");
        assert_eq!(
            summary_count(&stderr, "matched"),
            exp.matched,
            "{name}: matched"
        );
        if *name == "late_and_bad.jsonl" {
            assert!(exp.late > 0 && !exp.bad.is_empty());
            for (reason, n) in &exp.bad {
                assert!(
                    stderr.contains(&format!("{reason} {n}")),
                    "{name}: expected `{reason} {n}` in the summary: {stderr}"
                );
            }
        }
    }
}

/// Reading from stdin gives the same alerts as reading the file.
#[test]
fn stdin_and_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "20000", "--seed", "9"],
    );
    let input = std::fs::read(&path).unwrap();
    let (from_file, _) = rulewatch_ok(
        &["replay", path.to_str().unwrap(), "--format", "jsonl"],
        None,
    );
    let (from_stdin, _) = rulewatch_ok(&["replay", "-", "--format", "jsonl"], Some(&input));
    assert!(!from_file.is_empty());
    assert_eq!(from_file, from_stdin);
}

/// `update` emits a row when a key first crosses the threshold and on each later change;
/// `complete` re-emits every alerting row still held. Both end at the append counts.
#[test]
fn output_modes_agree_on_final_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "50000", "--seed", "4"],
    );
    let input = std::fs::read(&path).unwrap();
    let exp = crash_reference(&input);
    let run = |mode: &str| {
        let (out, _) = rulewatch_ok(
            &[
                "replay",
                path.to_str().unwrap(),
                "--format",
                "jsonl",
                "--mode",
                mode,
            ],
            None,
        );
        parse_alerts(&out)
    };
    for mode in ["update", "complete"] {
        let rows = run(mode);
        let mut last: BTreeMap<(String, String), u64> = BTreeMap::new();
        for r in &rows {
            assert!(r.count > 2, "{mode}: row below the threshold: {r:?}");
            let k = (r.window_start.clone(), r.key.clone());
            if let Some(prev) = last.get(&k) {
                if mode == "update" {
                    assert!(r.count > *prev, "update repeated an unchanged count: {r:?}");
                } else {
                    assert!(r.count >= *prev, "complete went backwards: {r:?}");
                }
            }
            last.insert(k, r.count);
        }
        let finals: Vec<_> = exp
            .alerts
            .iter()
            .map(|a| ((a.window_start.clone(), a.key.clone()), a.count))
            .collect();
        assert_eq!(last.into_iter().collect::<Vec<_>>(), finals, "{mode}");
        assert!(rows.len() > exp.alerts.len(), "{mode} should re-emit rows");
    }
}

fn event(ts: &str, user: &str) -> String {
    format!(
        r#"{{"timestamp":{ts},"severity":"Critical","user_id":"{user}","content":"App crash"}}"#
    )
}

/// The three timestamp notations denote the same instants.
#[test]
fn each_timestamp_format_is_accepted() {
    // Three crashes of u1 in [22:35:50, 22:36:00), one of u1 in the next window.
    let rfc3339 = [
        r#""2026-01-27T22:35:51.123Z""#,
        r#""2026-01-27T23:35:55+01:00""#,
        r#""2026-01-27T22:35:59.999Z""#,
        r#""2026-01-27T22:36:00Z""#,
    ];
    let space = [
        r#""2026-01-27 22:35:51.123""#,
        r#""2026-01-27 22:35:55""#,
        r#""2026-01-27 22:35:59.999""#,
        r#""2026-01-27 22:36:00""#,
    ];
    let millis = [
        "1769553351123",
        "1769553355000",
        "1769553359999",
        "1769553360000",
    ];
    let mut outputs = Vec::new();
    for stamps in [rfc3339, space, millis] {
        let input: String = stamps.iter().map(|t| event(t, "u1") + "\n").collect();
        let (out, stderr) = rulewatch_ok(&["replay", "--format", "jsonl"], Some(input.as_bytes()));
        assert_eq!(summary_count(&stderr, "bad"), 0, "{stderr}");
        outputs.push(parse_alerts(&out));
    }
    let expected = vec![Alert {
        rule: "crash".into(),
        window_start: "2026-01-27T22:35:50Z".into(),
        window_end: "2026-01-27T22:36:00Z".into(),
        key: "u1".into(),
        count: 3,
    }];
    assert_eq!(outputs, vec![expected.clone(), expected.clone(), expected]);
}

/// Every kind of bad line is counted by reason, logged with its position, written to the
/// dead-letter file with the original bytes, and does not stop the run.
#[test]
fn bad_input_is_counted_logged_and_dead_lettered() {
    let good = |ts: &str| event(&format!("\"{ts}\""), "u1");
    let mut input = Vec::new();
    let mut push = |l: &[u8]| {
        input.extend_from_slice(l);
        input.push(b'\n');
    };
    push(good("2026-01-27T22:35:51Z").as_bytes()); // line 1
    push(b"{not json"); // 2 not_json
    push(b"[1,2]"); // 3 not_object
    push(b"\xff\xfe{}"); // 4 not_utf8
    push(format!(r#"{{"pad":"{}"}}"#, "x".repeat(300)).as_bytes()); // 5 too_large
    push(br#"{"severity":"High","user_id":"u1","content":"crash"}"#); // 6 missing_field
    push(br#"{"timestamp":"2026-01-27T22:35:52Z","severity":5,"user_id":"u1","content":"crash"}"#); // 7 wrong_type
    push(br#"{"timestamp":"yesterday","severity":"High","user_id":"u1","content":"crash"}"#); // 8 bad_timestamp
    push(good("2026-01-27T22:35:53Z").as_bytes()); // 9
    push(good("2026-01-27T22:35:54Z").as_bytes()); // 10
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let (out, stderr) = rulewatch_ok(
        &[
            "replay",
            "--format",
            "jsonl",
            "--max-line-bytes",
            "200",
            "--dead-letter",
            dead.to_str().unwrap(),
        ],
        Some(&input),
    );
    // The good lines still make their alert.
    assert_eq!(parse_alerts(&out).len(), 1);
    assert_eq!(parse_alerts(&out)[0].count, 3);
    for (reason, line) in [
        ("not_json", 2),
        ("not_object", 3),
        ("not_utf8", 4),
        ("too_large", 5),
        ("missing_field", 6),
        ("wrong_type", 7),
        ("bad_timestamp", 8),
    ] {
        assert!(
            stderr.contains(&format!("-:{line} ")),
            "no log for line {line}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("[{reason}]")),
            "no log of {reason}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{reason} 1")),
            "{reason} not counted: {stderr}"
        );
    }
    let letters = json_lines(&std::fs::read_to_string(&dead).unwrap());
    let got: Vec<(String, u64)> = letters
        .iter()
        .map(|v| {
            (
                v["reason"].as_str().unwrap().into(),
                v["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = [
        ("not_json", 2),
        ("not_object", 3),
        ("not_utf8", 4),
        ("too_large", 5),
        ("missing_field", 6),
        ("wrong_type", 7),
        ("bad_timestamp", 8),
    ]
    .iter()
    .map(|(r, l)| (r.to_string(), *l))
    .collect();
    assert_eq!(got, want);
    assert_eq!(letters[0]["raw"], "{not json");
    assert_eq!(letters[4]["rule"], "crash");
    assert_eq!(letters[4]["error"], "field `timestamp`: field is missing");
    // Line 2 starts right after line 1 and its newline.
    let first_line = good("2026-01-27T22:35:51Z").len() as u64 + 1;
    assert_eq!(letters[0]["offset"], first_line);
}

/// A late event is not counted, is counted as late, and lands in the late file.
#[test]
fn late_events_are_dropped_counted_and_written() {
    let lines = [
        event(r#""2026-01-27T22:35:51Z""#, "u1"),
        event(r#""2026-01-27T22:35:52Z""#, "u1"),
        event(r#""2026-01-27T22:36:15Z""#, "u2"), // watermark 22:36:05: [22:35:50, 22:36:00) closes
        event(r#""2026-01-27T22:35:53Z""#, "u1"), // late
        event(r#""2026-01-27T22:36:01Z""#, "u1"), // on time: window [22:36:00, 22:36:10)
    ];
    let input = lines.join("\n");
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.jsonl");
    let (out, stderr) = rulewatch_ok(
        &[
            "replay",
            "--format",
            "jsonl",
            "--late",
            late.to_str().unwrap(),
            "--mode",
            "update",
        ],
        Some(input.as_bytes()),
    );
    assert!(
        parse_alerts(&out).is_empty(),
        "u1 has only 2 counted crashes: {out}"
    );
    assert_eq!(summary_count(&stderr, "late"), 1);
    let text = std::fs::read_to_string(&late).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["rule"], "crash");
    assert_eq!(v["line"], 4);
    assert_eq!(v["event_time"], "2026-01-27T22:35:53Z");
    assert_eq!(v["watermark"], "2026-01-27T22:36:05Z");
    assert_eq!(v["lateness_ms"], 12_000);
}

/// The table format is the Spark console layout, with the rule's column names.
#[test]
fn table_format_matches_the_spark_console() {
    let input: String = (1..=3)
        .map(|s| event(&format!(r#""2026-01-27T22:35:5{s}Z""#), "user_1503") + "\n")
        .collect();
    let (out, _) = rulewatch_ok(&["replay", "--format", "table"], Some(input.as_bytes()));
    let expected = "\
-------------------------------------------
Batch: 0
-------------------------------------------
+------------------------------------------+---------+-----------+
|interval                                  |user_id  |crash_count|
+------------------------------------------+---------+-----------+
|{2026-01-27 22:35:50, 2026-01-27 22:36:00}|user_1503|3          |
+------------------------------------------+---------+-----------+

";
    assert_eq!(out, expected);
}

/// A rules folder with the crash rule built from source behaves as the built-in rule, and
/// a broken config next to it is reported with its file, line and key without stopping it.
#[test]
fn rules_folder_runs_rules_built_from_source() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let typo = crash_toml().replace("delay =", "dealy =");
    let rules = rules_dir(&[("crash", &crash_toml(), &crash), ("typo", &typo, &crash)]);
    let dir = tempfile::tempdir().unwrap();
    let path = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "20000", "--seed", "5"],
    );
    let (builtin, _) = rulewatch_ok(
        &["replay", path.to_str().unwrap(), "--format", "jsonl"],
        None,
    );
    let (folder, stderr) = replay_rules(&path, rules.path());
    assert!(!builtin.is_empty());
    assert_eq!(parse_alerts(&builtin), parse_alerts(&folder));
    assert!(
        stderr.contains("typo.toml: TOML parse error at line"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `dealy`"), "{stderr}");
}

/// `[output] cooldown` holds back a key's alerts in later windows for a while.
#[test]
fn cooldown_suppresses_repeats_of_a_key_across_windows() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let toml = crash_toml().replace(
        "count_column = \"crash_count\"",
        "count_column = \"crash_count\"\ncooldown = \"30s\"",
    );
    let rules = rules_dir(&[("crash", &toml, &crash)]);
    let at = |second: u32, user: &str| {
        event(
            &format!("\"2026-01-27T22:{:02}:{:02}Z\"", second / 60, second % 60),
            user,
        )
    };
    let mut lines = Vec::new();
    for (first, user) in [(1, "u1"), (11, "u1"), (12, "u2"), (51, "u1")] {
        lines.extend((0..3).map(|i| at(first + i, user)));
    }
    let input = lines.join("\n");
    let (out, stderr) = replay_rules_stdin(rules.path(), input.as_bytes());
    let got: Vec<(String, String)> = parse_alerts(&out)
        .into_iter()
        .map(|a| (a.window_start[14..19].to_owned(), a.key))
        .collect();
    // u1's alert in [22:00:10, 22:00:20) comes within 30 s of its first window's end.
    assert_eq!(
        got,
        [
            ("00:00".into(), "u1".into()),
            ("00:10".into(), "u2".into()),
            ("00:50".into(), "u1".into())
        ]
    );
    assert!(stderr.contains("alerts 3 (1 more in cooldown)"), "{stderr}");
}

/// A `shadow = true` rule runs beside the rule it names; only differences are reported.
#[test]
fn a_shadow_rule_reports_differences_and_publishes_nothing() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let next = crash_shadow_toml("next.wasm");
    let rules = rules_dir(&[("crash", &crash_toml(), &crash), ("next", &next, &crash)]);
    let at = |second: u32, user: &str| event(&format!("\"2026-01-27T22:00:0{second}Z\""), user);
    let mut lines: Vec<String> = (1..4).map(|s| at(s, "u1")).collect();
    lines.extend((1..5).map(|s| at(s, "u2")));
    let (out, stderr) = replay_rules_stdin(rules.path(), lines.join("\n").as_bytes());
    let alerts = parse_alerts(&out);
    assert!(alerts.iter().all(|a| a.rule == "crash"), "{out}");
    assert_eq!(alerts.len(), 2);
    assert!(
        stderr.contains(
            "rule crash (shadow): does not alert 2026-01-27T22:00:00Z u1 with count 3, crash does"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("(not published), differences 1"),
        "{stderr}"
    );
}

#[test]
fn json_logs_hold_one_object_per_event_with_level_and_position() {
    let sample = workspace().join("examples/data/sample.jsonl");
    let out = rulewatch(
        &["replay", sample.to_str().unwrap(), "--log-format", "json"],
        None,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    // Every line is JSON, the summary included.
    let logs = json_lines(&stderr);
    let summary = logs.last().unwrap()["summary"].as_str().unwrap();
    assert!(summary.contains("rule crash: events"), "{summary}");
    assert!(logs.len() >= 3, "{stderr}");
    let first = &logs[0];
    assert_eq!(first["level"], "WARN");
    assert!(first["timestamp"].is_string());
    let message = first["message"].as_str().unwrap();
    assert!(
        message.contains("sample.jsonl:") && message.contains("(byte "),
        "{message}"
    );
}

/// Hopping windows (`kind = "hopping"`, `size`, `slide`) give the reference's alerts, late
/// and matched counts on disordered data with very late events.
#[test]
fn hopping_windows_match_the_reference() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let dir = tempfile::tempdir().unwrap();
    let path = generate(
        dir.path(),
        "in.jsonl",
        &[
            "--events",
            "60000",
            "--disorder",
            "8",
            "--late-share",
            "0.02",
            "--seed",
            "9",
        ],
    );
    let input = std::fs::read(&path).unwrap();
    for (size, slide, delay) in [("20s", "5s", "10s"), ("10s", "3s", "4s")] {
        let ms = |d: &str| d.trim_end_matches('s').parse::<i64>().unwrap() * 1000;
        let toml = crash_toml()
            .replace(
                "size = \"10s\"",
                &format!("kind = \"hopping\"\nsize = \"{size}\"\nslide = \"{slide}\""),
            )
            .replace("delay = \"10s\"", &format!("delay = \"{delay}\""));
        let rules = rules_dir(&[("crash", &toml, &crash)]);
        let (stdout, stderr) = replay_rules(&path, rules.path());
        let exp = reference(
            &[&input],
            ms(size),
            ms(slide),
            ms(delay),
            "crash",
            &["High", "Critical"],
            2,
        );
        assert!(
            exp.alerts.len() > 100 && exp.late > 0,
            "{size}/{slide}: too easy"
        );
        let mut got = parse_alerts(&stdout);
        got.sort();
        assert_eq!(
            got, exp.alerts,
            "{size}/{slide}: alerts differ from the reference"
        );
        assert_eq!(
            summary_count(&stderr, "late"),
            exp.late,
            "{size}/{slide}: late"
        );
        assert_eq!(
            summary_count(&stderr, "matched"),
            exp.matched,
            "{size}/{slide}: matched"
        );
    }
    // A hopping window without its slide is refused with the fix.
    let toml = crash_toml().replace("size = \"10s\"", "kind = \"hopping\"\nsize = \"10s\"");
    let rules = rules_dir(&[("crash", &toml, &crash)]);
    let out = rulewatch(&["check", rules.path().to_str().unwrap()], None);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!out.status.success());
    assert!(
        stdout.contains("needs window.slide, e.g. slide = \"1m\""),
        "{stdout}"
    );
}

/// Logs and summary without their times (the only part that may differ): each log line's
/// timestamp and the summary's duration and rate.
fn without_timing(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| match (l.find(" in "), l.find(" lines/s)")) {
            (Some(a), Some(b)) if l.starts_with("read ") => format!("{}{}", &l[..a], &l[b..]),
            _ if l.starts_with("20") => l.split_once("  ").map_or(l, |(_, m)| m).to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Workers split the decoding and filtering, never the result: 2 and 4 workers write what
/// one writes, byte for byte — alerts in order, dead letters, late events, logs and summary
/// — over data sets with disorder, late and bad lines, and rules in several modes beside a
/// shadow.
#[test]
fn workers_do_not_change_a_byte_of_the_output() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let hopping = crash_toml()
        .replace(
            "module = \"crash.wasm\"",
            "name = \"hopping\"\nmodule = \"crash.wasm\"",
        )
        .replace(
            "size = \"10s\"",
            "kind = \"hopping\"\nsize = \"20s\"\nslide = \"5s\"",
        )
        .replace("mode = \"append\"", "mode = \"update\"\ncooldown = \"15s\"");
    let shadow = crash_shadow_toml("crash.wasm");
    let rules = rules_dir(&[
        ("crash", &crash_toml(), &crash),
        ("hopping", &hopping, &crash),
        ("shadow", &shadow, &crash),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let sets: [&[&str]; 3] = [
        &[
            "--events",
            "120000",
            "--disorder",
            "5000",
            "--late-share",
            "0.02",
            "--bad",
            "0.01",
        ],
        &[
            "--events",
            "60000",
            "--hot-users",
            "5",
            "--crash-share",
            "0.5",
            "--bad",
            "0.002",
            "--late-share",
            "0.01",
            "--seed",
            "3",
        ],
        &[
            "--events",
            "40000",
            "--bad",
            "0.2",
            "--late-share",
            "0.1",
            "--seed",
            "11",
        ],
    ];
    for (i, args) in sets.iter().enumerate() {
        let input = generate(dir.path(), &format!("in{i}.jsonl"), args);
        let run = |workers: &str| {
            let dead = dir.path().join(format!("dead{i}-{workers}"));
            let late = dir.path().join(format!("late{i}-{workers}"));
            let out = rulewatch(
                &[
                    "replay",
                    input.to_str().unwrap(),
                    "--rules",
                    rules.path().to_str().unwrap(),
                    "--format",
                    "jsonl",
                    "--workers",
                    workers,
                    "--dead-letter",
                    dead.to_str().unwrap(),
                    "--late",
                    late.to_str().unwrap(),
                ],
                None,
            );
            assert!(out.status.success());
            let stderr = without_timing(&String::from_utf8_lossy(&out.stderr));
            let read = |p: &Path| std::fs::read(p).unwrap();
            (out.stdout, read(&dead), read(&late), stderr)
        };
        let one = run("1");
        assert!(
            !one.0.is_empty() && !one.1.is_empty() && !one.2.is_empty(),
            "data set {i} is too easy: {} {} {} bytes",
            one.0.len(),
            one.1.len(),
            one.2.len()
        );
        // From a pipe, a thread of its own reads: the same append-mode alerts (batches, and
        // so each row's watermark and the update-mode rows, follow the pipe's timing, as
        // with one worker).
        let piped = rulewatch(
            &[
                "replay",
                "-",
                "--rules",
                rules.path().to_str().unwrap(),
                "--format",
                "jsonl",
                "--workers",
                "2",
            ],
            Some(&std::fs::read(&input).unwrap()),
        );
        let alerts = |out: &[u8]| {
            let mut a = parse_alerts(&String::from_utf8_lossy(out));
            a.retain(|a| a.rule == "crash");
            a.sort();
            a
        };
        assert_eq!(
            alerts(&one.0),
            alerts(&piped.stdout),
            "data set {i}: alerts differ from a pipe"
        );
        for workers in ["2", "4"] {
            let many = run(workers);
            assert!(
                one.0 == many.0,
                "data set {i}: alerts differ with {workers} workers"
            );
            assert!(
                one.1 == many.1,
                "data set {i}: dead letters differ with {workers}"
            );
            assert!(
                one.2 == many.2,
                "data set {i}: late events differ with {workers}"
            );
            assert_eq!(
                one.3, many.3,
                "data set {i}: logs differ with {workers} workers"
            );
        }
    }
}
