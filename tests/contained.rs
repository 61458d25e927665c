//! The second hostile battery's classes, each beside the crash rule: work a module makes the
//! host do inside one call, compilation that costs too much, a damaged compiled-module cache
//! entry, counts and strings past their ceilings, and outside text (keys, file names, rule
//! names) that would forge lines or drive a terminal wherever it is printed.

mod common;

use common::hostile::*;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Imports of WASI functions as the hostile modules call them.
const IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))"#;

/// A filter body that lays out 65 536 buffers at 7 MiB, each the first 4 MiB of memory,
/// then runs `then`.
fn with_buffers(then: &str) -> String {
    format!(
        r#"(local.set 1 (i32.const 0))
    (loop $fill
      (i32.store (i32.add (i32.const 7340032) (i32.shl (local.get 1) (i32.const 3))) (i32.const 0))
      (i32.store (i32.add (i32.const 7340036) (i32.shl (local.get 1) (i32.const 3)))
        (i32.const 4194304))
      (local.set 1 (i32.add (local.get 1) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get 1) (i32.const 65536))))
    {then}
    (call $none (local.get 0))"#
    )
}

#[test]
fn work_inside_host_calls_is_bounded_and_charged_to_the_batch() {
    // One call of each kind that asked the host for minutes of work before: each is refused
    // with EINVAL (28) at once, and the rule goes on (it traps if it is not).
    let refused = |call: &str| format!("(if (i32.ne {call} (i32.const 28)) (then unreachable))");
    let once = [
        "(call $fd_write (i32.const 1) (i32.const 7340032) (i32.const 65536) (i32.const 8126464))",
        "(call $random_get (i32.const 0) (i32.const 8388608))",
        "(call $poll (i32.const 0) (i32.const 0) (i32.const 100000) (i32.const 8126464))",
    ]
    .map(refused)
    .concat();
    let started = Instant::now();
    let run = beside_crash(
        TOML,
        &module_importing(IMPORTS, "str severity\\n", &with_buffers(&once), ""),
        "rule bad: events",
    );
    assert!(!run.stderr.contains("quarantined"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(90));

    // Calls the host again and again, each as much as one call may take (1024 buffers of
    // 4 MiB): stopped by its time budget like an endless loop.
    let again = "(loop $again (drop (call $fd_write (i32.const 1) (i32.const 7340032) \
                 (i32.const 1024) (i32.const 8126464))) (br $again))";
    let toml = format!("{TOML}[limits]\ntime_per_batch = \"300ms\"\n");
    let started = Instant::now();
    beside_crash(
        &toml,
        &module_importing(IMPORTS, "str severity\\n", &with_buffers(again), ""),
        "ran longer than its time budget of 300ms",
    );
    assert!(started.elapsed() < Duration::from_secs(90));
}

/// A module with one function that keeps `values` values live at once (each pushed, then
/// all summed at the end): within the per-function code ceiling, and costly to allocate
/// registers for.
fn live_values(values: usize) -> Vec<u8> {
    let body = format!(
        "(func $live (param i32) (result i32) {} {})",
        "(i32.popcnt (local.get 0))".repeat(values),
        "i32.add ".repeat(values - 1)
    );
    module("str severity\\n", &body)
}

#[test]
fn compiling_is_bounded_in_memory_and_time() {
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    let config = data.path().join("rulewatch.toml");
    std::fs::write(&config, "[sandbox]\nmax_compile_memory = \"160MiB\"\n").unwrap();
    let rules = folder_with(&[
        ("bad.toml", TOML.as_bytes()),
        ("bad.wasm", &live_values(450_000)),
    ]);
    let started = Instant::now();
    let run = replay_with(
        &input,
        rules.path(),
        "warn",
        &["--config", config.to_str().unwrap()],
    );
    let took = started.elapsed();
    assert!(
        run.stderr
            .contains("compiling it took more than 160 MiB of memory"),
        "{}",
        run.stderr
    );
    // The engine and the compiler together stayed near the bound, and the rest ran.
    assert_contained(&run, &input);
    assert!(run.peak_mib < 300, "peak {} MiB", run.peak_mib);
    assert!(took < Duration::from_secs(90), "{took:?}");
}

/// Replays the built-in rule with the compiled-module cache in `cache`: its alerts and log.
fn replay_cached(cache: &Path, input: &Path) -> (Vec<Alert>, String) {
    let out = rulewatch_env(
        &["replay", input.to_str().unwrap(), "--format", "jsonl"],
        None,
        &[
            ("RUST_LOG", "warn,rulewatch=debug"),
            ("RULEWATCH_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        parse_alerts(&stdout),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_damaged_cache_entry_is_compiled_again_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "in.jsonl", &["--events", "20000"]);
    let cache = dir.path().join("cache");
    let (expected, _) = replay_cached(&cache, &input);
    assert!(!expected.is_empty());
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("an entry for the built-in rule");
    let whole = std::fs::read(&entry).unwrap();
    // Its code zeroed with its headers intact; one byte flipped; cut short; empty.
    let mut zeroed = whole.clone();
    zeroed[whole.len() / 4..whole.len() * 3 / 4].fill(0);
    let mut flipped = whole.clone();
    flipped[whole.len() / 2] ^= 1;
    let damages = [
        zeroed,
        flipped,
        whole[..whole.len() / 2].to_vec(),
        Vec::new(),
    ];
    for damaged in damages {
        std::fs::write(&entry, &damaged).unwrap();
        let (alerts, log) = replay_cached(&cache, &input);
        assert_eq!(alerts, expected, "{log}");
        assert!(log.contains("is damaged"), "{log}");
        // Replaced by a whole entry, which the next start uses.
        let (_, log) = replay_cached(&cache, &input);
        assert!(log.contains("compiled module from the cache"), "{log}");
        assert_eq!(std::fs::read(&entry).unwrap(), whole);
    }
}

/// `rulewatch ARGS`: it failed with exit code 2, saying `says`, quickly.
fn refused(args: &[&str], says: &str) {
    let started = Instant::now();
    let out = rulewatch(args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(says),
        "{args:?}: expected `{says}` in {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{args:?}");
}

#[test]
fn every_count_and_string_has_a_ceiling_that_names_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(dir.path(), "in.jsonl", &["--events", "100"]);
    let input = input.to_str().unwrap();
    refused(
        &["replay", input, "--workers", "100000"],
        "workers = 100000 is over the ceiling of 256",
    );
    refused(
        &["replay", input, "--max-line-bytes", "99999999999"],
        "max-line-bytes = 99999999999 is over the ceiling",
    );
    refused(
        &["loadgen", "--events", "1", "--pad", "4000000000"],
        "pad = 4000000000 is over the ceiling",
    );
    let config = |text: &str| {
        let path = dir.path().join("rulewatch.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let cases = [
        (
            "[engine]\nworkers = 100000\n",
            "[engine] workers = 100000 is over the ceiling of 256",
        ),
        (
            "[sandbox]\nmax_memory = \"1000GiB\"\n",
            "[sandbox] max_memory = 1073741824000",
        ),
        (
            "[sandbox]\nmax_functions = 4000000000\n",
            "[sandbox] max_functions = 4000000000",
        ),
        (
            "[kafka]\nmax_message_bytes = 99999999999\n",
            "[kafka] max_message_bytes",
        ),
        (
            "[kafka]\ntopics = [\"a\\nb\"]\n",
            "`a\\nb` is not a Kafka topic name",
        ),
        (
            &format!("[kafka]\ngroup_id = \"{}\"\n", "g".repeat(70_000)),
            "[kafka] group_id is 70000 bytes long, over the limit of 255 bytes",
        ),
    ];
    for (text, says) in cases {
        // `run` refuses before it reaches for a broker.
        refused(&["run", "--config", &config(text)], says);
    }
    refused(
        &[
            "replay",
            input,
            "--config",
            &config("[sandbox]\nmax_key_bytes = 99999999\n"),
        ],
        "[sandbox] max_key_bytes = 99999999",
    );

    // A rule's strings: a 64 KiB key field would be copied into every dead-letter record.
    let long_key = crash_toml().replace(
        "key = \"user_id\"",
        &format!("key = \"{}\"", "k".repeat(65_536)),
    );
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let rules = rules_dir(&[("crash", &long_key, &crash)]);
    refused(
        &["replay", input, "--rules", rules.path().to_str().unwrap()],
        "window.key is 65536 bytes long, over the limit of 256 bytes",
    );
}

/// Events of one user whose id forges a log line and drives the terminal: enough crashes
/// in one window to alert.
fn hostile_key_events() -> (String, String) {
    let key = "u\u{1b}]0;owned\u{7}\u{1b}[2J\n2026-01-01T00:00:00Z ERROR forged";
    let line = |ms: u32| {
        serde_json::json!({
            "timestamp": format!("2026-01-27T22:00:0{}.{ms:03}Z", ms % 5),
            "severity": "Critical",
            "user_id": key,
            "content": "App crash",
        })
        .to_string()
    };
    let lines: Vec<String> = (0..4).map(line).collect();
    (key.to_owned(), lines.join("\n") + "\n")
}

/// No raw control character but line feeds, and no line that starts as a forged one.
fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what} holds a raw control character: {text:?}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR forged")),
        "{what} holds a forged line: {text}"
    );
}

#[test]
fn keys_are_escaped_in_tables_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (key, events) = hostile_key_events();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, &events).unwrap();
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let toml = crash_toml().replace("[output]", "[output]\nevidence = 3");
    let rules = rules_dir(&[("crash", &toml, &crash)]);
    let rules = rules.path().to_str().unwrap();
    let table = rulewatch(
        &[
            "replay",
            input.to_str().unwrap(),
            "--format",
            "table",
            "--rules",
            rules,
        ],
        None,
    );
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let shown = String::from_utf8(table.stdout).unwrap();
    assert!(shown.contains("|u\\u{1b}]0;owned"), "{shown}");
    assert_clean("the table", &shown);

    let jsonl = rulewatch(
        &[
            "replay",
            input.to_str().unwrap(),
            "--format",
            "jsonl",
            "--rules",
            rules,
        ],
        None,
    );
    let alerts = String::from_utf8(jsonl.stdout).unwrap();
    assert_eq!(json_lines(&alerts)[0]["key"], key.as_str());
    let evidence = rulewatch(
        &["evidence", "--input", input.to_str().unwrap()],
        Some(alerts.as_bytes()),
    );
    let (out, err) = (
        String::from_utf8(evidence.stdout).unwrap(),
        String::from_utf8(evidence.stderr).unwrap(),
    );
    assert!(evidence.status.success(), "{err}");
    assert_clean("evidence's header", &err);
    assert_clean("evidence's lines", &out);
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn evidence_reads_no_line_longer_than_max_line_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB with no newline, and an alert whose evidence points at its first byte.
    let input = dir.path().join("huge.jsonl");
    let file = std::fs::File::create(&input).unwrap();
    file.set_len(64 << 20).unwrap();
    let alert = r#"{"rule":"crash","key":"k","count":3,"window_start":"a","window_end":"b","alert_id":"x","evidence":[{"line":1,"byte":0}]}"#;
    let started = Instant::now();
    let out = rulewatch(
        &["evidence", "--input", input.to_str().unwrap()],
        Some(alert.as_bytes()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("longer than --max-line-bytes (1048576)"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(started.elapsed() < Duration::from_secs(30));

    // The alerts themselves are read a capped line at a time.
    let out = rulewatch(&["evidence"], Some(&vec![b'{'; 3 << 20]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 1: longer than --max-line-bytes (1048576)"),
        "{err}"
    );
}

#[test]
fn file_and_rule_names_are_checked_and_never_printed_raw() {
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "20000", "--seed", "5"],
    );
    let forged = "x\n2026-01-01T00:00:00Z ERROR forged\u{1b}[2J";
    let quoted = crash_toml().replacen("module = ", "name = 'x\"} 12345'\nmodule = ", 1);
    let rules = folder_with(&[
        (&format!("{forged}.toml"), crash_toml().as_bytes()),
        ("quoted.toml", quoted.as_bytes()),
    ]);
    let run = replay(&input, rules.path());
    assert!(
        run.stderr.contains(
            "its file name `x\\n2026-01-01T00:00:00Z ERROR forged\\u{1b}[2J` is not a rule name"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("name: `x\"} 12345` is not a rule name"),
        "{}",
        run.stderr
    );
    assert_clean("the log", &run.stderr);
    assert_contained(&run, &input);

    let check = rulewatch(&["check", rules.path().to_str().unwrap()], None);
    assert_eq!(check.status.code(), Some(2));
    assert_clean("check's report", &String::from_utf8_lossy(&check.stdout));
    assert_clean("check's log", &String::from_utf8_lossy(&check.stderr));
}
