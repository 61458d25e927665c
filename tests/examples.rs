//! The example rules under examples/rules/ meet their shipped expectations (`rulewatch
//! test`), and the crash rule written in C (against the documented ABI, without an SDK), in
//! Go and in TypeScript (with their SDKs) alerts exactly as the built-in Rust crash rule.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    workspace().join("examples/rules").join(name)
}

/// `rulewatch test` of the rule `toml` (with `wasm` beside it, in a scratch folder) against
/// the expectation files of `dir`; returns its report.
fn rule_test(dir: &Path, toml: &str, wasm: &Path, events: &Path) -> String {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join(toml), scratch.path().join(toml)).unwrap();
    std::fs::copy(wasm, scratch.path().join(wasm.file_name().unwrap())).unwrap();
    let mut args: Vec<String> = vec![
        "test".into(),
        scratch.path().join(toml).display().to_string(),
        "--events".into(),
        events.display().to_string(),
        "--expect".into(),
        dir.join("expected.jsonl").display().to_string(),
    ];
    for (flag, file) in [("--late", "late.jsonl"), ("--bad", "bad.jsonl")] {
        if dir.join(file).exists() {
            args.extend([flag.into(), dir.join(file).display().to_string()]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rulewatch(&args, None);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{report}");
    report
}

#[test]
fn rust_examples_meet_their_expectations() {
    let cases = [
        (
            "critical-burst",
            "rulewatch-example-critical-burst",
            "critical_burst",
            5,
        ),
        (
            "failed-logins",
            "rulewatch-example-failed-logins",
            "failed_logins",
            9,
        ),
    ];
    for (name, package, lib, alerts) in cases {
        let dir = example(name);
        let wasm = rule_wasm(package, lib);
        let report = rule_test(
            &dir,
            &format!("{name}.toml"),
            &wasm,
            &dir.join("events.jsonl"),
        );
        assert!(
            report.contains(&format!("ok      alerts: {alerts} as expected")),
            "{report}"
        );
    }
}

/// Builds the C rule with its build script (clang + wasm-ld).
fn build_c_rule() -> PathBuf {
    let out = workspace().join("target/rules/crash-c");
    let status = Command::new("sh")
        .arg(example("crash-c").join("build.sh"))
        .arg(&out)
        .status()
        .expect("sh runs build.sh");
    assert!(
        status.success(),
        "build.sh failed (needs clang and lld; ./test.sh installs them)"
    );
    out.join("crash-c.wasm")
}

#[test]
fn the_c_rule_meets_its_expectations_and_alerts_as_the_rust_rule() {
    meets_expectations_and_alerts_as_the_rust_rule("crash-c", &build_c_rule());
}

#[test]
fn the_go_rule_meets_its_expectations_and_alerts_as_the_rust_rule() {
    meets_expectations_and_alerts_as_the_rust_rule("crash-go", &built_rule(&example("crash-go")));
}

#[test]
fn the_typescript_rule_meets_its_expectations_and_alerts_as_the_rust_rule() {
    meets_expectations_and_alerts_as_the_rust_rule("crash-ts", &built_rule(&example("crash-ts")));
}

/// The example `name` (its module `wasm`) meets its expectations on the sample events, and
/// gives the built-in crash rule's alerts, matched, late and bad counts on 100 k generated
/// events with disorder, very late and bad lines.
fn meets_expectations_and_alerts_as_the_rust_rule(name: &str, wasm: &Path) {
    let dir = example(name);
    let toml = format!("{name}.toml");
    let sample = workspace().join("examples/data/sample.jsonl");
    let report = rule_test(&dir, &toml, wasm, &sample);
    assert!(
        report.contains("ok      alerts: 12 as expected"),
        "{report}"
    );

    // Same alerts as the built-in crash rule on disordered, late and malformed events.
    let scratch = tempfile::tempdir().unwrap();
    let input = generate(
        scratch.path(),
        "in.jsonl",
        &[
            "--events",
            "100000",
            "--disorder",
            "8",
            "--late-share",
            "0.02",
            "--bad",
            "0.02",
            "--seed",
            "7",
        ],
    );
    let rules = rules_dir(&[(
        "crash",
        &std::fs::read_to_string(dir.join(&toml)).unwrap(),
        wasm,
    )]);
    std::fs::rename(
        rules.path().join("crash.wasm"),
        rules.path().join(wasm.file_name().unwrap()),
    )
    .unwrap();
    let (c, c_log) = replay_rules(&input, rules.path());
    let path = input.to_str().unwrap();
    let (rust, rust_log) = rulewatch_ok(&["replay", path, "--format", "jsonl"], None);
    let (c, rust) = (parse_alerts(&c), parse_alerts(&rust));
    assert!(rust.len() > 100);
    assert_eq!(c, rust, "{name} alerts differently from the Rust rule");
    for label in ["matched", "late", "bad"] {
        assert_eq!(
            summary_count(&c_log, label),
            summary_count(&rust_log, label),
            "{label}"
        );
    }
}
