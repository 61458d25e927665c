//! Hostile rules beside the crash rule: replays that must stay contained, and small
//! WebAssembly modules written as text for them.

use super::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a replay did: stdout, stderr, and its peak resident memory in MiB.
pub(crate) struct Replay {
    /// The alerts on stdout.
    pub alerts: Vec<Alert>,
    /// What it logged.
    pub stderr: String,
    /// Its peak resident memory.
    pub peak_mib: u64,
}

/// `replay INPUT --format jsonl --rules DIR` logging warnings, killed (and failed) if it
/// takes over two minutes; measures the peak RSS of it and its children with wait4.
pub(crate) fn replay(input: &Path, rules: &Path) -> Replay {
    replay_logging(input, rules, "warn")
}

/// [`replay`] with the log level `level`.
pub(crate) fn replay_logging(input: &Path, rules: &Path, level: &str) -> Replay {
    replay_with(input, rules, level, &[])
}

/// [`replay`] with the log level `level` and more arguments.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its peak memory
pub(crate) fn replay_with(input: &Path, rules: &Path, level: &str, more: &[&str]) -> Replay {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rulewatch"))
        .args(["replay", input.to_str().unwrap(), "--format", "jsonl"])
        .args(["--rules", rules.to_str().unwrap()])
        .args(more)
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut s = Vec::new();
        out.read_to_end(&mut s).unwrap();
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        err.read_to_end(&mut s).unwrap();
        s
    });
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break (status, usage);
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("replay hung for two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "replay failed ({status}): {}",
        &stderr[..stderr.len().min(4000)]
    );
    let stdout = String::from_utf8(stdout.join().unwrap()).unwrap();
    Replay {
        alerts: parse_alerts(&stdout),
        stderr,
        peak_mib: usage.ru_maxrss as u64 / 1024,
    }
}

/// The crash rule plus the given (file name, bytes) files in one rules folder.
pub(crate) fn folder_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let rules = rules_dir(&[("crash", &crash_toml(), &crash)]);
    for (name, bytes) in files {
        std::fs::write(rules.path().join(name), bytes).unwrap();
    }
    rules
}

pub(crate) fn input(dir: &Path) -> std::path::PathBuf {
    generate(
        dir,
        "in.jsonl",
        &["--events", "20000", "--bad", "0.01", "--seed", "21"],
    )
}

/// The crash rule's alerts are the reference's, and the run stayed small.
pub(crate) fn assert_contained(run: &Replay, input: &Path) {
    let expected = crash_reference(&std::fs::read(input).unwrap()).alerts;
    let mut crash: Vec<Alert> = run
        .alerts
        .iter()
        .filter(|a| a.rule == "crash")
        .cloned()
        .collect();
    crash.sort();
    assert!(!expected.is_empty());
    assert_eq!(crash, expected, "{}", run.stderr);
    assert!(
        run.peak_mib < 400,
        "peak RSS {} MiB: {}",
        run.peak_mib,
        run.stderr
    );
    assert!(
        run.stderr.len() < 64 << 10,
        "stderr of {} bytes",
        run.stderr.len()
    );
    assert!(!run.stderr.contains('\u{1b}'), "raw escape on stderr");
}

/// A minimal rule module in WebAssembly text: declares `fields`, selects nothing and alerts
/// on nothing; `extra` adds module fields (a start function, memories, functions).
pub(crate) fn module(fields: &str, extra: &str) -> Vec<u8> {
    module_importing("", fields, NONE, extra)
}

/// A filter body that selects nothing.
pub(crate) const NONE: &str = "(call $none (local.get 0))";

/// [`module`] with `imports` (which the text format wants before any definition) and the
/// filter's body `filter` (it ends with an answer: `(call $none (local.get 0))`).
pub(crate) fn module_importing(imports: &str, fields: &str, filter: &str, extra: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 130)
  (data (i32.const 1048576) "{fields}")
  (func (export "rulewatch_abi_version") (result i32) (i32.const 1))
  (func (export "rulewatch_fields") (result i64)
    (i64.or (i64.shl (i64.const 1048576) (i64.const 32)) (i64.const {len})))
  (func (export "rulewatch_input") (param i32) (result i32) (i32.const 2097152))
  (func (export "rulewatch_init") (param i32) (result i32) (i32.const 0))
  (func $none (param i32) (result i64)
    (i64.or (i64.shl (i64.const 65536) (i64.const 32))
      (i64.extend_i32_u (i32.div_u (i32.add (i32.load (i32.const 2097152)) (i32.const 7))
        (i32.const 8)))))
  (func (export "rulewatch_filter") (param i32) (result i64) (local i32) {filter})
  (func (export "rulewatch_alert") (param i32) (result i64) (call $none (local.get 0)))
  (func (export "rulewatch_error") (result i64) (i64.const 0))
  {extra}
)"#,
        len = fields.replace("\\n", "\n").len(),
    );
    wat::parse_str(&wat).unwrap()
}

pub(crate) const TOML: &str =
    "module = \"bad.wasm\"\n[window]\nkey = \"user_id\"\nsize = \"10s\"\n";

/// Runs `bad.toml` + `bad.wasm` beside the crash rule; checks containment and that stderr
/// says `reason`.
pub(crate) fn beside_crash(toml: &str, wasm: &[u8], reason: &str) -> Replay {
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    let rules = folder_with(&[("bad.toml", toml.as_bytes()), ("bad.wasm", wasm)]);
    let run = replay(&input, rules.path());
    assert!(
        run.stderr.contains(reason),
        "expected `{reason}` in:\n{}",
        run.stderr
    );
    assert_contained(&run, &input);
    run
}
