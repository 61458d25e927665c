//! End to end, what a new rule author does, in each language: scaffold a rule with
//! `rulewatch new --lang`, run its unit tests natively, build it with `rulewatch build`,
//! check it with `rulewatch test` (which must also fail, readably, on a wrong expectation),
//! and hot-load it into a running engine.

mod common;

use common::live::Live;
use common::*;
use std::path::Path;
use std::process::Command;

/// Shared by every scaffold build, so that dependencies compile once.
fn scaffold_target() -> std::path::PathBuf {
    workspace().join("target/scaffold")
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || program.ends_with("rulewatch"),
        "{program} {args:?}: {text}"
    );
    out
}

#[test]
fn scaffold_build_test_and_hot_load_a_new_rust_rule() {
    author_a_rule("rust", &["Cargo.toml", "src/lib.rs"], "2 passed");
}

#[test]
fn scaffold_build_test_and_hot_load_a_new_go_rule() {
    author_a_rule("go", &["go.mod", "rule.go", "rule_test.go"], "ok");
}

#[test]
fn scaffold_build_test_and_hot_load_a_new_typescript_rule() {
    author_a_rule("ts", &["package.json", "assembly/index.ts"], "passed");
}

#[test]
fn scaffold_build_test_and_hot_load_a_new_c_rule() {
    // C has no unit tests natively: `make test` is the sample events through the module.
    author_a_rule("c", &["Makefile", "rule.c"], "ok");
}

/// The commands `rulewatch new` printed after "next:", in order, without their comments.
fn printed_commands(stdout: &str) -> Vec<String> {
    let next = stdout
        .split_once("next:\n")
        .expect("`new` prints what to do next")
        .1;
    next.lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(|l| l.split(" # ").next().unwrap().trim().to_owned())
        .collect()
}

/// Runs `commands` in order in one shell in `dir`, with this rulewatch first on the PATH, as
/// a user who copies them would; their output.
fn run_as_printed(dir: &Path, commands: &[String]) -> String {
    let rulewatch = Path::new(env!("CARGO_BIN_EXE_rulewatch"));
    let path = format!(
        "{}:{}",
        rulewatch.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -ex\n{}\n", commands.join("\n"));
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", scaffold_target())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{commands:#?}:\n{text}");
    text
}

/// The whole workflow for `lang`: the scaffold has `files`; the commands `new` printed run
/// in order and succeed, the unit tests' output saying `passed`.
fn author_a_rule(lang: &str, files: &[&str], passed: &str) {
    let rulewatch = env!("CARGO_BIN_EXE_rulewatch");
    let home = tempfile::tempdir().unwrap();
    let out = run_in(
        home.path(),
        rulewatch,
        &["new", "slow-requests", "--lang", lang],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rule = home.path().join("slow-requests");
    let shared = [
        "slow-requests.toml",
        "events.jsonl",
        "expected.jsonl",
        "README.md",
    ];
    for file in files.iter().chain(&shared) {
        assert!(rule.join(file).exists(), "{file}");
    }
    // A second scaffold over it is refused.
    let again = run_in(
        home.path(),
        rulewatch,
        &["new", "slow-requests", "--lang", lang],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // What `new` said to do next, copied in order: unit tests, build, test.
    let commands = printed_commands(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(commands.len(), 4, "{commands:?}");
    let said = run_as_printed(home.path(), &commands);
    assert!(said.contains(passed), "{said}");
    assert!(said.contains("ok      alerts"), "{said}");

    // One command builds the module beside the TOML.
    let built = run_in(&rule, rulewatch, &["build"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(rule.join("slow_requests.wasm").exists());

    // The real module over the sample events meets the shipped expectations.
    let args = [
        "test",
        "slow-requests.toml",
        "--events",
        "events.jsonl",
        "--expect",
        "expected.jsonl",
        "--late",
        "late.jsonl",
        "--bad",
        "bad.jsonl",
    ];
    let ok = run_in(&rule, rulewatch, &args);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("ok      alerts: 2 as expected"), "{stdout}");
    assert!(
        stdout.contains("ok      late events: 1 as expected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok      bad input: 1 as expected"),
        "{stdout}"
    );

    // A wrong expectation fails with a readable difference and exit code 1.
    let expected = std::fs::read_to_string(rule.join("expected.jsonl")).unwrap();
    std::fs::write(
        rule.join("expected.jsonl"),
        expected.replacen("\"count\":3", "\"count\":4", 1),
    )
    .unwrap();
    let failed = run_in(&rule, rulewatch, &args);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED  alerts: 2 expected"), "{stdout}");
    assert!(stdout.contains(r#"  - {"window_start":"2026-01-27T22:00:00Z","window_end":"2026-01-27T22:01:00Z","key":"alice","count":4}    (expected, not produced)"#), "{stdout}");
    assert!(
        stdout.contains(r#""key":"alice","count":3}    (produced, not expected)"#),
        "{stdout}"
    );
    // --write brings the expectation back in line with the rule.
    assert!(
        run_in(&rule, rulewatch, &[&args[..], &["--write"]].concat())
            .status
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(rule.join("expected.jsonl")).unwrap(),
        expected
    );

    // Hot-load: dropped into the folder of a running engine, it runs on the events after it.
    let folder = tempfile::tempdir().unwrap();
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    std::fs::write(folder.path().join("crash.toml"), crash_toml()).unwrap();
    std::fs::copy(&crash, folder.path().join("crash.wasm")).unwrap();
    let mut live = Live::start(Some(folder.path()), false);
    std::fs::copy(
        rule.join("slow_requests.wasm"),
        folder.path().join("slow_requests.wasm"),
    )
    .unwrap();
    let toml = std::fs::read(rule.join("slow-requests.toml")).unwrap();
    std::fs::write(folder.path().join("new.tmp"), toml).unwrap();
    std::fs::rename(
        folder.path().join("new.tmp"),
        folder.path().join("slow-requests.toml"),
    )
    .unwrap();
    live.wait_log("loaded rule slow-requests", 1);
    live.feed(&std::fs::read(rule.join("events.jsonl")).unwrap());
    let (alerts, log) = live.finish();
    let mut got: Vec<(String, u64)> = alerts
        .iter()
        .filter(|a| a.rule == "slow-requests")
        .map(|a| (a.key.clone(), a.count))
        .collect();
    got.sort();
    assert_eq!(got, [("alice".into(), 3), ("carol".into(), 3)], "{log}");
}
