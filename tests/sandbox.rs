//! End-to-end tests of the rule sandbox: modules built from source in tests/rules/ that trap,
//! loop forever, eat memory, reject their params or speak another ABI version. Each is
//! stopped and reported by name while the crash rule beside it keeps running.

mod common;

use common::*;
use std::path::Path;

fn misbehave_toml(fail: &str, limits: &str) -> String {
    format!(
        r#"
module = "bad.wasm"
[window]
key = "user_id"
size = "10s"
[params]
fail = "{fail}"
after = 5000
{limits}
"#
    )
}

/// Runs the crash rule next to a misbehaving rule `bad`; returns (alerts, stderr).
fn run_beside_crash(bad_toml: &str, bad_wasm: &Path, input: &Path) -> (Vec<Alert>, String) {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let rules = rules_dir(&[
        ("crash", &crash_toml(), &crash),
        ("bad", bad_toml, bad_wasm),
    ]);
    let (out, stderr) = replay_rules(input, rules.path());
    (parse_alerts(&out), stderr)
}

fn expected_crash_alerts(input: &Path) -> Vec<Alert> {
    crash_reference(&std::fs::read(input).unwrap()).alerts
}

fn assert_quarantined(stderr: &str, reason: &str) {
    assert!(
        stderr.contains("rule bad (module sha256 ") && stderr.contains("quarantined"),
        "{stderr}"
    );
    assert!(stderr.contains(reason), "expected `{reason}` in: {stderr}");
    assert!(
        stderr.contains("QUARANTINED"),
        "summary should say so: {stderr}"
    );
}

#[test]
fn trapping_looping_and_memory_hungry_rules_are_quarantined() {
    let bad = rule_wasm("rulewatch-rule-misbehave", "misbehave");
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "30000", "--seed", "11"],
    );
    let expected = expected_crash_alerts(&input);
    let cases = [
        (
            misbehave_toml("trap", ""),
            "trapped: wasm trap: wasm `unreachable` instruction executed: panicked at",
        ),
        (
            misbehave_toml("loop", "[limits]\ntime_per_batch = \"200ms\""),
            "ran longer than its time budget of 200ms for one batch",
        ),
        (
            misbehave_toml("memory", "[limits]\nmemory = \"8MiB\""),
            "tried to use more than its memory limit of 8 MiB",
        ),
    ];
    for (toml, reason) in cases {
        let (alerts, stderr) = run_beside_crash(&toml, &bad, &input);
        assert_quarantined(&stderr, reason);
        let mut alerts: Vec<_> = alerts.into_iter().filter(|a| a.rule == "crash").collect();
        alerts.sort();
        assert_eq!(
            alerts, expected,
            "the crash rule must be unaffected ({reason})"
        );
    }
}

#[test]
fn a_well_behaved_module_of_the_same_crate_is_not_quarantined() {
    let bad = rule_wasm("rulewatch-rule-misbehave", "misbehave");
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "20000", "--seed", "12"],
    );
    let (alerts, stderr) = run_beside_crash(&misbehave_toml("none", ""), &bad, &input);
    assert!(!stderr.contains("quarantined"), "{stderr}");
    assert!(alerts.iter().any(|a| a.rule == "bad"));
}

#[test]
fn init_rejection_names_the_file_and_the_reason() {
    let bad = rule_wasm("rulewatch-rule-misbehave", "misbehave");
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "20000", "--seed", "13"],
    );
    let (alerts, stderr) = run_beside_crash(&misbehave_toml("init", ""), &bad, &input);
    assert!(stderr.contains("bad.toml (rule bad): [params]"), "{stderr}");
    assert!(
        stderr.contains("init rejected the params: init refused on purpose"),
        "{stderr}"
    );
    assert!(alerts.iter().all(|a| a.rule == "crash") && !alerts.is_empty());

    // A panic in init comes back with the module's own message.
    let (_, stderr) = run_beside_crash(&misbehave_toml("init-panic", ""), &bad, &input);
    assert!(stderr.contains("panicking in init on purpose"), "{stderr}");

    // A params typo reaches the module's serde and comes back with the field's name.
    let typo = misbehave_toml("none", "").replace("fail =", "fial =");
    let (_, stderr) = run_beside_crash(&typo, &bad, &input);
    assert!(
        stderr.contains("invalid params: unknown field `fial`"),
        "{stderr}"
    );
}

#[test]
fn a_module_of_another_abi_version_is_refused_with_both_versions() {
    let future = rule_wasm("rulewatch-rule-abi-mismatch", "abi_mismatch");
    let rules = rules_dir(&[(
        "future",
        &misbehave_toml("none", "").replace("bad.wasm", "future.wasm"),
        &future,
    )]);
    let out = rulewatch(
        &["replay", "--rules", rules.path().to_str().unwrap()],
        Some(b""),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("built for rulewatch ABI version 99, but this rulewatch speaks version 1"),
        "{stderr}"
    );
    assert!(stderr.contains("no usable rule"), "{stderr}");
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm but not really").unwrap();
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "20000", "--seed", "14"],
    );
    let (alerts, stderr) = run_beside_crash(&misbehave_toml("none", ""), &garbage, &input);
    assert!(stderr.contains("bad.wasm (sha256 "), "{stderr}");
    assert!(
        stderr.contains("invalid module: not a valid WebAssembly module"),
        "{stderr}"
    );
    assert!(!alerts.is_empty());
}

/// `replay INPUT --rules DIR` logging at level info; (alerts, stderr).
fn replay_logging_info(input: &Path, rules: &Path) -> (Vec<Alert>, String) {
    let (input, rules) = (input.to_str().unwrap(), rules.to_str().unwrap());
    let args = ["replay", input, "--format", "jsonl", "--rules", rules];
    let out = rulewatch_logging(&args, None, "info");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (parse_alerts(&String::from_utf8_lossy(&out.stdout)), stderr)
}

#[test]
fn a_go_rule_that_prints_reads_the_clock_loops_or_eats_memory_is_contained() {
    let bad = built_rule(&workspace().join("tests/rules/misbehave-go"));
    let dir = tempfile::tempdir().unwrap();
    let input = generate(
        dir.path(),
        "in.jsonl",
        &["--events", "30000", "--seed", "11"],
    );
    let expected = expected_crash_alerts(&input);
    let crash_only = |alerts: &[Alert]| {
        let mut crash: Vec<Alert> = alerts
            .iter()
            .filter(|a| a.rule == "crash")
            .cloned()
            .collect();
        crash.sort();
        crash
    };
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let folder = |toml: &str| rules_dir(&[("crash", &crash_toml(), &crash), ("bad", toml, &bad)]);

    // Stdout: the rule's log lines, by name, rate-limited; the rule keeps running.
    let rules = folder(&misbehave_toml("stdout", ""));
    let (alerts, stderr) = replay_logging_info(&input, rules.path());
    assert!(!stderr.contains("quarantined"), "{stderr}");
    let said = stderr.matches("rule says: event ").count();
    assert!(
        (1..=2000).contains(&said),
        "{said} lines logged of 25000 written"
    );
    assert!(
        stderr.contains("lines a second: the rest are counted"),
        "{stderr}"
    );
    assert_eq!(crash_only(&alerts), expected);

    // The clock: Go's time.Now and time.Sleep run on the virtual clock, so two runs select
    // the same events. With one worker: this rule also counts the events its instance saw
    // (`after`), which several instances taking batches as they come would make vary — the
    // state across calls that ABI.md asks rules not to depend on.
    let clock = folder(&misbehave_toml("clock", ""));
    let runs: Vec<(Vec<Alert>, String)> = (0..2)
        .map(|_| {
            let (input, rules) = (input.to_str().unwrap(), clock.path().to_str().unwrap());
            let args = ["replay", input, "--format", "jsonl", "--rules", rules];
            let out = rulewatch(&[&args[..], &["--workers", "1"]].concat(), None);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            (parse_alerts(&String::from_utf8_lossy(&out.stdout)), stderr)
        })
        .collect();
    assert!(!runs[0].1.contains("quarantined"), "{}", runs[0].1);
    assert!(runs[0].0.iter().any(|a| a.rule == "bad"));
    assert_eq!(runs[0].0, runs[1].0);

    // A panic, an endless loop, memory without end: quarantined with the reason.
    for (toml, reason) in [
        (
            misbehave_toml("panic", ""),
            "trapped: the module exited with code 2: panic: misbehave: panicking on purpose",
        ),
        (
            misbehave_toml("loop", "[limits]\ntime_per_batch = \"200ms\""),
            "ran longer than its time budget of 200ms for one batch",
        ),
        (
            misbehave_toml("memory", "[limits]\nmemory = \"32MiB\""),
            "tried to use more than its memory limit of 32 MiB",
        ),
    ] {
        let (alerts, stderr) = run_beside_crash(&toml, &bad, &input);
        assert_quarantined(&stderr, reason);
        assert_eq!(crash_only(&alerts), expected, "{reason}");
    }
}

/// Compiled modules are cached on disk (see `host/src/rules/cache.rs`); an entry is only ever
/// a shortcut: a damaged one is compiled again, and a directory others may write into, or
/// `off`, is not used at all.
#[test]
fn the_compiled_module_cache_is_only_a_shortcut() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let sample = workspace().join("examples/data/sample.jsonl");
    let replay = |cache: &Path| {
        let out = rulewatch_env(
            &["replay", sample.to_str().unwrap(), "--format", "jsonl"],
            None,
            &[
                ("RUST_LOG", "debug"),
                ("RULEWATCH_CACHE_DIR", cache.to_str().unwrap()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let entries = |cache: &Path| -> Vec<_> {
        std::fs::read_dir(cache)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let hit = "compiled module from the cache";

    let (alerts, stderr) = replay(&cache);
    assert_eq!(alerts.lines().count(), 12, "{stderr}");
    assert!(!stderr.contains(hit), "{stderr}");
    let cached = entries(&cache);
    assert_eq!(
        cached.len(),
        1,
        "one entry for the built-in rule: {cached:?}"
    );
    let (again, stderr) = replay(&cache);
    assert!(stderr.contains(hit), "{stderr}");
    assert_eq!(again, alerts);

    // Damaged: compiled again, the same alerts, and the entry made whole.
    std::fs::write(&cached[0], b"not compiled code").unwrap();
    let (again, stderr) = replay(&cache);
    assert!(!stderr.contains(hit), "{stderr}");
    assert_eq!(again, alerts);
    assert!(replay(&cache).1.contains(hit));

    // A directory others may write into is not trusted.
    use std::os::unix::fs::PermissionsExt;
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (again, stderr) = replay(&shared);
    assert_eq!(again, alerts);
    assert!(
        stderr.contains("others may write into the directory"),
        "{stderr}"
    );
    assert!(entries(&shared).is_empty());

    // Nor one in a folder where others may replace it (not sticky).
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (again, stderr) = replay(&open.join("cache"));
    assert_eq!(again, alerts);
    assert!(stderr.contains("others may replace folders in"), "{stderr}");
    assert!(entries(&open.join("cache")).is_empty());

    // A link of one's own is followed: the entries are in the real folder.
    let real = dir.path().join("real");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::create_dir(&real).unwrap();
    replay(&link);
    assert_eq!(entries(&real).len(), 1);

    // By default under $XDG_CACHE_HOME; `off` writes nothing there.
    let xdg = dir.path().join("xdg");
    for (setting, made) in [(Some("off"), false), (None, true)] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rulewatch"));
        cmd.args(["replay", sample.to_str().unwrap(), "--format", "jsonl"])
            .env("XDG_CACHE_HOME", &xdg)
            .env_remove("RULEWATCH_CACHE_DIR");
        if let Some(setting) = setting {
            cmd.env("RULEWATCH_CACHE_DIR", setting);
        }
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), alerts);
        let made_here = entries(&xdg.join("rulewatch")).len();
        assert_eq!(made_here, usize::from(made), "{setting:?}");
    }
}
