//! End-to-end tests of the live rules folder: files added, changed, renamed and deleted under
//! a running `rulewatch replay -`, with real modules built from the workspace.

mod common;

use common::live::Live;
use common::*;
use std::path::Path;
use std::time::Duration;

fn crash(second: u32, user: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-01-27T22:00:{second:02}Z","severity":"High","user_id":"{user}","content":"App crash"}}"#
    )
}

fn crashes(seconds: std::ops::Range<u32>, user: &str) -> Vec<String> {
    seconds.map(|s| crash(s, user)).collect()
}

fn summary(alerts: &[Alert], rule: &str) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule == rule)
        .map(|a| (a.window_start[11..19].to_owned(), a.key.clone(), a.count))
        .collect();
    v.sort();
    v
}

/// Writes a file the way a careful deploy does: a temporary name, then a rename.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn crash_dir() -> tempfile::TempDir {
    rules_dir(&[(
        "crash",
        &crash_toml(),
        &rule_wasm("rulewatch-rule-crash", "crash"),
    )])
}

#[test]
fn a_new_rule_starts_on_the_events_after_it_arrives() {
    let dir = crash_dir();
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..4, "u1"));
    std::fs::copy(dir.path().join("crash.wasm"), dir.path().join("copy.wasm")).unwrap();
    let copy = crash_toml()
        .replace("crash.wasm", "copy.wasm")
        .replace("threshold = 2", "threshold = 0");
    write_atomically(&dir.path().join("copy.toml"), copy.as_bytes());
    live.wait_log("loaded rule copy", 1);
    live.send(&crashes(4..7, "u2"));
    let (alerts, log) = live.finish();
    assert!(log.contains("rule copy: added"), "{log}");
    assert_eq!(
        summary(&alerts, "crash"),
        [
            ("22:00:00".into(), "u1".into(), 3),
            ("22:00:00".into(), "u2".into(), 3)
        ]
    );
    // The new rule saw only what came after it: u2's three crashes, none of u1's.
    assert_eq!(
        summary(&alerts, "copy"),
        [("22:00:00".into(), "u2".into(), 3)]
    );
}

#[test]
fn new_params_and_new_modules_keep_the_counts() {
    let dir = crash_dir();
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..4, "u1"));
    // Params: threshold 2 -> 3. u1 has 3 (no alert at 3 > 3); one more makes 4.
    let toml = crash_toml().replace("threshold = 2", "threshold = 3");
    write_atomically(&dir.path().join("crash.toml"), toml.as_bytes());
    live.wait_log("loaded rule crash", 1);
    live.send(&crashes(4..5, "u1"));
    live.wait_log("windows kept", 1);
    // Module: the same logic in other bytes (a custom section appended), same windows.
    let mut module = std::fs::read(dir.path().join("crash.wasm")).unwrap();
    module.extend_from_slice(&[0, 4, 3, b'r', b'w', b'x']);
    write_atomically(&dir.path().join("crash.wasm"), &module);
    live.wait_log("loaded rule crash", 2);
    live.send(&crashes(5..6, "u1"));
    let (alerts, log) = live.finish();
    assert_eq!(log.matches("windows kept").count(), 2, "{log}");
    assert!(log.contains("rule changes: added 0, swapped 2,"), "{log}");
    assert_eq!(
        summary(&alerts, "crash"),
        [("22:00:00".into(), "u1".into(), 5)]
    );
}

#[test]
fn new_window_settings_flush_the_old_windows_first() {
    let dir = crash_dir();
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..4, "u1"));
    let toml = crash_toml().replace("size = \"10s\"", "size = \"20s\"");
    write_atomically(&dir.path().join("crash.toml"), toml.as_bytes());
    live.wait_log("loaded rule crash", 1);
    live.send(&crashes(4..8, "u1"));
    let (alerts, log) = live.finish();
    assert!(log.contains("window settings changed"), "{log}");
    let mut got: Vec<_> = alerts
        .iter()
        .map(|a| (a.window_start.clone(), a.window_end.clone(), a.count))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            // Flushed at the change, as at the end of input...
            (
                "2026-01-27T22:00:00Z".into(),
                "2026-01-27T22:00:10Z".into(),
                3
            ),
            // ...then new 20-second windows, from empty.
            (
                "2026-01-27T22:00:00Z".into(),
                "2026-01-27T22:00:20Z".into(),
                4
            ),
        ]
    );
}

#[test]
fn a_deleted_rule_flushes_and_stops() {
    let dir = crash_dir();
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..4, "u1"));
    std::fs::remove_file(dir.path().join("crash.toml")).unwrap();
    live.wait_log("deleted; stopping rule crash", 1);
    live.send(&crashes(4..9, "u2"));
    let (alerts, log) = live.finish();
    assert!(log.contains("rule crash: removed"), "{log}");
    assert_eq!(
        summary(&alerts, "crash"),
        [("22:00:00".into(), "u1".into(), 3)]
    );
}

#[test]
fn a_deleted_rule_can_drop_its_windows_instead() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let toml = crash_toml().replace(
        "count_column = \"crash_count\"",
        "count_column = \"crash_count\"\non_delete = \"drop\"",
    );
    let dir = rules_dir(&[("crash", &toml, &crash)]);
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..4, "u1"));
    std::fs::remove_file(dir.path().join("crash.toml")).unwrap();
    live.wait_log("deleted; stopping rule crash", 1);
    live.send(&crashes(4..5, "u2"));
    let (alerts, log) = live.finish();
    assert!(log.contains("were dropped (on_delete = \"drop\")"), "{log}");
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn broken_changes_are_rejected_and_the_running_version_stays() {
    let dir = crash_dir();
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..3, "u1"));
    let path = dir.path().join("crash.toml");
    // TOML typo.
    write_atomically(&path, crash_toml().replace("delay =", "dealy =").as_bytes());
    live.wait_log("unknown field `dealy`", 1);
    // Not WebAssembly.
    std::fs::write(dir.path().join("junk.wasm"), b"not wasm").unwrap();
    write_atomically(
        &path,
        crash_toml().replace("crash.wasm", "junk.wasm").as_bytes(),
    );
    live.wait_log("not a valid WebAssembly module", 1);
    // Another ABI version.
    let future = rule_wasm("rulewatch-rule-abi-mismatch", "abi_mismatch");
    std::fs::copy(future, dir.path().join("future.wasm")).unwrap();
    write_atomically(
        &path,
        crash_toml().replace("crash.wasm", "future.wasm").as_bytes(),
    );
    live.wait_log("ABI version 99", 1);
    live.send(&crashes(3..5, "u1"));
    let (alerts, log) = live.finish();
    assert_eq!(log.matches("the running version stays").count(), 3, "{log}");
    assert!(
        log.contains("rule changes: added 0, swapped 0, restarted 0, removed 0, rejected 3"),
        "{log}"
    );
    assert!(
        log.contains("crash.toml: TOML parse error at line"),
        "{log}"
    );
    // The original rule counted all four crashes.
    assert_eq!(
        summary(&alerts, "crash"),
        [("22:00:00".into(), "u1".into(), 4)]
    );
}

#[test]
fn rapid_writes_settle_into_one_change_without_errors() {
    let dir = crash_dir();
    let mut live = Live::start(Some(dir.path()), false);
    live.send_processed(&crashes(1..2, "u1"));
    let path = dir.path().join("crash.toml");
    for threshold in 3..20 {
        let toml = crash_toml().replace("threshold = 2", &format!("threshold = {threshold}"));
        std::fs::write(&path, toml).unwrap(); // in place, not atomic
    }
    live.wait_log("loaded rule crash", 1);
    live.send(&crashes(2..4, "u1"));
    let (alerts, log) = live.finish();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(log.matches("loaded rule crash").count() <= 2, "{log}");
    assert!(alerts.is_empty(), "threshold 19 is in force: {alerts:?}");
}

#[test]
fn a_logic_preserving_swap_under_load_gives_the_alerts_of_a_run_from_the_start() {
    let dir = crash_dir();
    let data = tempfile::tempdir().unwrap();
    let input = std::fs::read(generate(
        data.path(),
        "in.jsonl",
        &["--events", "60000", "--seed", "31"],
    ))
    .unwrap();
    let expected = crash_reference(&input).alerts;
    let lines: Vec<String> = String::from_utf8(input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut live = Live::start(Some(dir.path()), false);
    let (first, rest) = lines.split_at(lines.len() / 3);
    let (during, after) = rest.split_at(rest.len() / 2);
    live.send_processed(first);
    let mut module = std::fs::read(dir.path().join("crash.wasm")).unwrap();
    module.extend_from_slice(&[0, 4, 3, b'r', b'w', b'x']);
    write_atomically(&dir.path().join("crash.wasm"), &module);
    // Events keep coming while the new module is compiled...
    for chunk in during.chunks(200) {
        live.send(chunk);
        std::thread::sleep(Duration::from_millis(2));
    }
    // ...and it takes over at a batch boundary before the input ends.
    live.wait_log("loaded rule crash", 1);
    for chunk in after.chunks(200) {
        live.send(chunk);
    }
    let (mut alerts, log) = live.finish();
    assert!(
        log.contains("windows kept"),
        "the swap happened during the input: {log}"
    );
    alerts.sort();
    assert_eq!(alerts, expected);
}

#[test]
fn check_validates_a_folder_offline() {
    let dir = crash_dir();
    let (out, _) = rulewatch_ok(&["check", dir.path().to_str().unwrap()], None);
    assert!(
        out.starts_with("ok     ") && out.contains("rule crash (module sha256 "),
        "{out}"
    );
    assert!(out.contains("reads severity: str, content: str"), "{out}");

    let typo = crash_toml().replace("size =", "sise =");
    std::fs::write(dir.path().join("typo.toml"), typo).unwrap();
    let result = rulewatch(&["check", dir.path().to_str().unwrap()], None);
    let out = String::from_utf8_lossy(&result.stdout);
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{out}{err}");
    assert!(
        out.contains("error  ") && out.contains("typo.toml: TOML parse error at line"),
        "{out}"
    );
    assert!(err.contains("1 rule(s) in"), "{err}");
}

/// A Kubernetes ConfigMap volume: the visible files are symlinks through `..data`, and an
/// update swaps `..data` to a new hidden folder. The swap is a rule change.
#[test]
fn a_configmap_style_symlink_swap_is_a_rule_change() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let version = |n: u32, threshold: u32| {
        let folder = dir.path().join(format!("..2026_11_26_0{n}"));
        std::fs::create_dir(&folder).unwrap();
        let toml = crash_toml().replace("threshold = 2", &format!("threshold = {threshold}"));
        std::fs::write(folder.join("crash.toml"), toml).unwrap();
        std::fs::copy(&crash, folder.join("crash.wasm")).unwrap();
        folder
    };
    let first = version(1, 2);
    symlink(first.file_name().unwrap(), dir.path().join("..data")).unwrap();
    symlink("..data/crash.toml", dir.path().join("crash.toml")).unwrap();
    symlink("..data/crash.wasm", dir.path().join("crash.wasm")).unwrap();
    let mut live = Live::start(Some(dir.path()), false);
    // Four crashes of u1 in the first window, closed by a later event: an alert at
    // threshold 2.
    live.send_processed(&[crashes(0..4, "u1"), crashes(25..26, "u3")].concat());
    let second = version(2, 5);
    symlink(second.file_name().unwrap(), dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    live.wait_log("loaded rule crash", 1);
    // Four crashes of u2 in a later window: no alert at threshold 5.
    live.send(&crashes(30..34, "u2"));
    let (alerts, log) = live.finish();
    assert_eq!(
        summary(&alerts, "crash"),
        [("22:00:00".into(), "u1".into(), 4)],
        "{log}"
    );
}
