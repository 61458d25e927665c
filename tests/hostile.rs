//! Hostile rules, configs and input lines, one class at a time, each beside the crash rule:
//! the engine never exits, hangs or grows past a bound because of them, refuses or
//! quarantines them with a reason a user can act on, and the crash rule gives exactly the
//! reference's alerts. The hostile modules are real WebAssembly, written as text here.

mod common;

use common::hostile::*;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn loading_runs_under_the_rules_own_limits() {
    // A start function that asks for 1 GiB.
    let grow = r#"(func $grow (if (i32.eq (memory.grow (i32.const 16384)) (i32.const -1))
        (then unreachable))) (start $grow)"#;
    let run = beside_crash(
        TOML,
        &module("str severity\\n", grow),
        "tried to use more than its memory limit of 64 MiB",
    );
    assert!(run.stderr.contains("bad.toml (rule bad)"), "{}", run.stderr);
    // A start function that never ends.
    let spin = "(func $spin (loop $l (br $l))) (start $spin)";
    let toml = format!("{TOML}[limits]\ntime_per_batch = \"300ms\"\n");
    beside_crash(
        &toml,
        &module("str severity\\n", spin),
        "ran longer than its time budget of 300ms",
    );
}

#[test]
fn module_shapes_that_cost_too_much_are_refused_before_compiling() {
    let memories = (0..9)
        .map(|i| format!("(memory $m{i} 1024)"))
        .collect::<String>();
    let wat = format!("(module {memories})");
    beside_crash(
        TOML,
        &wat::parse_str(&wat).unwrap(),
        "a rule has one linear memory",
    );
    let functions = "(func)".repeat(100_000);
    let started = Instant::now();
    beside_crash(
        TOML,
        &module("str severity\\n", &functions),
        "it has 100008 functions, over the limit of 20000",
    );
    // Refused on its counts, not after compiling (generous: the machine is shared).
    assert!(started.elapsed() < Duration::from_secs(60));
    let fields: String = (0..100_000).map(|i| format!("str f{i}\\n")).collect();
    beside_crash(TOML, &module(&fields, ""), "256");
}

#[test]
fn a_modules_messages_are_bounded_and_escaped() {
    // init refuses with a 50 MB message that starts with a newline and a terminal escape.
    let text = r#"(module
  (memory (export "memory") 900)
  (data (i32.const 1048576) "str severity\n")
  (func (export "rulewatch_abi_version") (result i32) (i32.const 1))
  (func (export "rulewatch_fields") (result i64)
    (i64.or (i64.shl (i64.const 1048576) (i64.const 32)) (i64.const 13)))
  (func (export "rulewatch_input") (param i32) (result i32) (i32.const 2097152))
  (func (export "rulewatch_init") (param i32) (result i32) (i32.const 1))
  (func (export "rulewatch_filter") (param i32) (result i64) (i64.const 0))
  (func (export "rulewatch_alert") (param i32) (result i64) (i64.const 0))
  (func (export "rulewatch_error") (result i64)
    (i64.or (i64.shl (i64.const 4194304) (i64.const 32)) (i64.const 50000000)))
  (func $fill
    (memory.fill (i32.const 4194304) (i32.const 65) (i32.const 50000000))
    (i32.store8 (i32.const 4194304) (i32.const 10))
    (i32.store8 (i32.const 4194305) (i32.const 27)))
  (start $fill)
)"#;
    let run = beside_crash(
        TOML,
        &wat::parse_str(text).unwrap(),
        "init rejected the params: \\n\\u{1b}AAAA",
    );
    assert!(
        run.stderr.contains("... (50000000 bytes in all)"),
        "{}",
        run.stderr
    );
}

#[test]
fn config_numbers_are_checked() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let wasm = std::fs::read(crash).unwrap();
    let base = crash_toml().replace("crash.wasm", "bad.wasm");
    let cases = [
        (
            base.replace("size = \"10s\"", "size = \"18446744073709551s 616ms\""),
            "is too long: at most 100 years",
        ),
        (
            base.replace(
                "size = \"10s\"",
                "kind = \"hopping\"\nsize = \"1h\"\nslide = \"1ms\"",
            ),
            "3600000 windows per event, over the engine's ceiling of 1000",
        ),
        (
            format!("{base}\n[limits]\nmemory = \"4GiB\"\n"),
            "limits.memory = 4096 MiB is over the engine's ceiling of 256 MiB",
        ),
        (
            format!("{base}\n[limits]\ntime_per_batch = \"1h\"\n"),
            "limits.time_per_batch = 1h is over the engine's ceiling of 5s",
        ),
        (
            format!("{base}\n[limits]\nmemory = \"99999999999999GiB\"\n"),
            "invalid size `99999999999999GiB`",
        ),
        (
            base.replace(
                "module = \"bad.wasm\"",
                "module = \"../../../../etc/passwd\"",
            ),
            "outside the rules folder",
        ),
    ];
    for (toml, reason) in cases {
        beside_crash(&toml, &wasm, reason);
    }
}

#[test]
fn rule_files_that_are_not_regular_files_are_refused_by_name() {
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    let rules = folder_with(&[]);
    let d = rules.path();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.toml")).unwrap();
    let fifo = std::ffi::CString::new(d.join("pipe.toml").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::write(
        d.join("fifo-module.toml"),
        TOML.replace("bad.wasm", "pipe.wasm"),
    )
    .unwrap();
    let fifo = std::ffi::CString::new(d.join("pipe.wasm").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let run = replay(&input, d);
    for reason in [
        "zero.toml is a device, not a regular file",
        "pipe.toml is a FIFO (named pipe), not a regular file",
        "pipe.wasm is a FIFO (named pipe), not a regular file",
    ] {
        assert!(
            run.stderr.contains(reason),
            "expected `{reason}` in:\n{}",
            run.stderr
        );
    }
    assert_contained(&run, &input);
}

#[test]
fn a_second_config_cannot_take_a_running_rules_name() {
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    // Sorted before crash.toml, it would have won by the order of files before.
    let hijack = format!(
        "name = \"crash\"\n{}",
        crash_toml().replace("threshold = 2", "threshold = 100")
    );
    let rules = folder_with(&[("a-crash.toml", hijack.as_bytes())]);
    let run = replay(&input, rules.path());
    assert!(
        run.stderr
            .contains("a-crash.toml: claims the name `crash` of the rule in")
            && run.stderr.contains("crash.toml;"),
        "{}",
        run.stderr
    );
    assert_contained(&run, &input);
}

#[test]
fn hostile_lines_are_bad_input_not_a_reason_to_stop_a_rule() {
    let data = tempfile::tempdir().unwrap();
    let normal = std::fs::read(input(data.path())).unwrap();
    let mut lines = Vec::new();
    // Keys of 600 KB: too large for a key, and together far more than a rule's memory.
    let huge = "k".repeat(600_000);
    for i in 0..80 {
        lines.extend_from_slice(
            format!(
                r#"{{"timestamp":"2026-01-27T22:00:0{}Z","severity":"High","user_id":"{huge}{i}","content":"crash"}}"#,
                i % 10
            )
            .as_bytes(),
        );
        lines.push(b'\n');
    }
    // Times at the ends of i64, and just past the year 9999.
    for t in [
        "9223372036854775807",
        "-9223372036854775808",
        "253402300800000",
    ] {
        lines.extend_from_slice(
            format!(r#"{{"timestamp":{t},"severity":"High","user_id":"u","content":"crash"}}"#)
                .as_bytes(),
        );
        lines.push(b'\n');
    }
    lines.extend_from_slice(&normal);
    let path = data.path().join("hostile.jsonl");
    std::fs::write(&path, &lines).unwrap();
    let rules = folder_with(&[]);
    let run = replay(&path, rules.path());
    let expected = crash_reference(&normal);
    let mut crash = run.alerts.clone();
    crash.sort();
    assert_eq!(crash, expected.alerts, "{}", run.stderr);
    let timestamps = expected.bad.get("bad_timestamp").copied().unwrap_or(0) + 3;
    for counted in [
        "too_large 80".to_owned(),
        format!("bad_timestamp {timestamps}"),
    ] {
        assert!(
            run.stderr.contains(&counted),
            "expected `{counted}` in:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("quarantined"), "{}", run.stderr);
    assert!(run.peak_mib < 400, "peak RSS {} MiB", run.peak_mib);
}

/// `wasi_snapshot_preview1.NAME` imported as `$NAME` with the given signature.
fn wasi(name: &str, signature: &str) -> String {
    format!(r#"(import "wasi_snapshot_preview1" "{name}" (func ${name} {signature}))"#)
}

#[test]
fn imports_beyond_the_capability_free_subset_are_refused_by_name() {
    for (import, named) in [
        (
            wasi(
                "path_open",
                "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
            ),
            "imports `wasi_snapshot_preview1::path_open`, which rules may not use: a rule has \
             no files, sockets, arguments or environment",
        ),
        (
            wasi("sock_accept", "(param i32 i32 i32) (result i32)"),
            "`wasi_snapshot_preview1::sock_accept`",
        ),
        (
            r#"(import "env" "seed" (func $seed (result f64)))"#.into(),
            "imports `env::seed`, which rules may not use",
        ),
        (
            r#"(import "env" "abort" (global $g i32))"#.into(),
            "imports `env::abort`, which rules may not use",
        ),
    ] {
        beside_crash(
            TOML,
            &module_importing(&import, "str severity\\n", NONE, ""),
            named,
        );
    }
    // A WASI program (Go built without -buildmode=c-shared) is told how to build a rule.
    let program = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
    beside_crash(
        TOML,
        &wat::parse_str(program).unwrap(),
        "it is a WASI program (it exports `_start`), not a rule module: build Go rules with \
         -buildmode=c-shared",
    );
}

/// A module whose filter writes `text` (WAT-escaped) to `fd`, then selects nothing — or
/// calls `proc_exit(2)` after writing, when `exit`.
fn writing_module(fd: u32, text: &str, exit: bool) -> Vec<u8> {
    let len = text.replace("\\n", "\n").len();
    let imports = wasi("fd_write", "(param i32 i32 i32 i32) (result i32)")
        + &wasi("proc_exit", "(param i32)");
    let then = if exit {
        "(call $proc_exit (i32.const 2))"
    } else {
        ""
    };
    let filter = format!(
        "(drop (call $fd_write (i32.const {fd}) (i32.const 4096) (i32.const 1) (i32.const 4200)))
         {then} {NONE}"
    );
    let data = format!(
        r#"(data (i32.const 4096) "\00\11\00\00") (data (i32.const 4100) "\{:02x}\{:02x}")
  (data (i32.const 4352) "{text}")"#,
        len & 0xff,
        len >> 8
    );
    module_importing(&imports, "str severity\\n", &filter, &data)
}

#[test]
fn what_a_rule_writes_is_logged_by_name_and_rate_limited() {
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    let wasm = writing_module(1, "hello from the rule\\n", false);
    let rules = folder_with(&[("bad.toml", TOML.as_bytes()), ("bad.wasm", &wasm)]);
    let run = replay_logging(&input, rules.path(), "info");
    assert_contained(&run, &input);
    let said = run.stderr.matches("rule says: hello from the rule").count();
    // One line per filter call (five batches or more), at most 20 a second per instance.
    assert!((5..=200).contains(&said), "{said} lines: {}", run.stderr);
    assert!(run.stderr.contains("rule=bad"), "{}", run.stderr);
    assert!(!run.stderr.contains("quarantined"), "{}", run.stderr);
}

#[test]
fn a_rule_that_exits_or_aborts_is_quarantined_with_its_own_words() {
    beside_crash(
        TOML,
        &writing_module(2, "panic: boom\\n\\ngoroutine 1 [running]:\\n", true),
        "trapped: the module exited with code 2: panic: boom",
    );
    // AssemblyScript's abort(message, file, line, column), strings as UTF-16 with their
    // byte length before them.
    let abort = r#"(import "env" "abort" (func $abort (param i32 i32 i32 i32)))"#;
    let strings = r#"(data (i32.const 8188) "\08\00\00\00b\00o\00o\00m\00")
  (data (i32.const 8204) "\10\00\00\00r\00u\00l\00e\00.\00t\00s\00!\00")"#;
    let filter = format!(
        "(call $abort (i32.const 8192) (i32.const 8208) (i32.const 3) (i32.const 7)) {NONE}"
    );
    beside_crash(
        TOML,
        &module_importing(abort, "str severity\\n", &filter, strings),
        "trapped: the module aborted: boom at rule.ts!:3:7",
    );
}

#[test]
fn clocks_and_random_bytes_are_the_same_on_every_run() {
    // The filter selects rows by the bits of (clock read after a one-second poll) xor
    // (random bytes): with the wall clock or real randomness two runs would differ.
    let imports = wasi("clock_time_get", "(param i32 i64 i32) (result i32)")
        + &wasi("random_get", "(param i32 i32) (result i32)")
        + &wasi("poll_oneoff", "(param i32 i32 i32 i32) (result i32)");
    let filter = format!(
        "(i64.store (i32.const 5024) (i64.const 1000000000))
         (drop (call $poll_oneoff (i32.const 5000) (i32.const 5100) (i32.const 1) (i32.const 5200)))
         (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 4096)))
         (drop (call $random_get (i32.const 4104) (i32.const 8)))
         (i64.store (i32.const 4112)
           (i64.xor (i64.load (i32.const 4096)) (i64.load (i32.const 4104))))
         (local.set 1 (i32.const 0))
         (loop $fill
           (i32.store8 (i32.add (i32.const 65536) (local.get 1))
             (i32.load8_u (i32.add (i32.const 4112) (i32.and (local.get 1) (i32.const 7)))))
           (local.set 1 (i32.add (local.get 1) (i32.const 1)))
           (br_if $fill (i32.lt_u (local.get 1) (i32.const 512))))
         {NONE}"
    );
    let wasm = module_importing(&imports, "str severity\\n", &filter, "");
    let data = tempfile::tempdir().unwrap();
    let input = input(data.path());
    let rules = folder_with(&[("bad.toml", TOML.as_bytes()), ("bad.wasm", &wasm)]);
    let runs: Vec<Replay> = (0..2).map(|_| replay(&input, rules.path())).collect();
    let summary = |run: &Replay| {
        let line = run.stderr.lines().find(|l| l.starts_with("rule bad"));
        line.unwrap_or_else(|| panic!("no summary: {}", run.stderr))
            .to_owned()
    };
    let matched = summary_count(&summary(&runs[0]), "matched");
    assert!(
        matched > 0,
        "the rule selected nothing: {}",
        summary(&runs[0])
    );
    assert_eq!(summary(&runs[0]), summary(&runs[1]));
    assert_eq!(runs[0].alerts, runs[1].alerts);
}
