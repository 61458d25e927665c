//! Test harness shared by the end-to-end tests: runs the real `rulewatch` binary, builds real
//! rule modules from the workspace, generates events with `rulewatch loadgen`, and
//! computes expected alerts with an independent reference implementation.

#![allow(dead_code)] // each test binary uses a different part of the harness

#[path = "../../host/build_rule.rs"]
mod build_rule;
pub(crate) mod cluster;
pub(crate) mod engine;
pub(crate) mod hostile;
pub(crate) mod kafka;
pub(crate) mod live;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds a rule crate of the workspace to wasm and returns the module's path.
pub(crate) fn rule_wasm(package: &str, lib: &str) -> PathBuf {
    // Tests of one binary run on threads; let one of them build at a time.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    build_rule::build_rule(&workspace(), package, lib).unwrap()
}

/// Builds the rule in `dir` with `rulewatch build` (any language it knows); the module's
/// path, beside the rule's TOML.
pub(crate) fn built_rule(dir: &Path) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let out = rulewatch(&["build", dir.to_str().unwrap()], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rulewatch build {}: {stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().find_map(|l| l.strip_prefix("built "));
    let path = line.and_then(|l| l.rsplit_once(" (")).map(|(p, _)| p);
    PathBuf::from(path.unwrap_or_else(|| panic!("no `built` line in: {stdout}")))
}

/// A rules folder with the given `(name, toml text, module)` rules.
pub(crate) fn rules_dir(rules: &[(&str, &str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, toml, wasm) in rules {
        std::fs::write(dir.path().join(format!("{name}.toml")), toml).unwrap();
        std::fs::copy(wasm, dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    dir
}

/// The shipped crash rule's config, pointed at `crash.wasm` in the same folder.
pub(crate) fn crash_toml() -> String {
    std::fs::read_to_string(workspace().join("rules/crash/crash.toml")).unwrap()
}

/// A shadow of the crash rule (module `module` beside it) alerting only above 3.
pub(crate) fn crash_shadow_toml(module: &str) -> String {
    crash_toml()
        .replace(
            "module = \"crash.wasm\"",
            &format!("name = \"crash\"\nshadow = true\nmodule = \"{module}\""),
        )
        .replace("threshold = 2", "threshold = 3")
}

/// Generates events with the engine's own `rulewatch loadgen` (`args` are its generator
/// flags: `--events`, `--disorder`, `--late-share`, `--bad`, `--seed`, ...) into `dir/name`.
pub(crate) fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = rulewatch(
        &[&["loadgen", "--output", path.to_str().unwrap()], args].concat(),
        None,
    );
    assert!(
        out.status.success(),
        "rulewatch loadgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Polls `check` until it gives a value, failing with `what` (and what `check` last said
/// is missing) once `timeout` has passed: the one way tests wait for a condition. It polls
/// every 20 ms at first, then less often (up to every 200 ms) the longer the wait.
pub(crate) fn eventually<T>(
    timeout: std::time::Duration,
    what: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    let mut every = std::time::Duration::from_millis(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "not within {timeout:?}: {}",
            what()
        );
        std::thread::sleep(every);
        every = (every * 2).min(std::time::Duration::from_millis(200));
    }
}

/// Fixed waits, each for a reason no condition can be polled for.
pub(crate) mod wait {
    use std::time::Duration;

    /// Watching a running engine to show that something does not happen (nothing read,
    /// alerted or checkpointed twice, no exit): absence has no event to poll for.
    pub(crate) const FOR_NOTHING: Duration = Duration::from_secs(3);

    /// A consumer group notices that a member died: the test broker's session timeout
    /// (6 s, `group.min.session.timeout.ms`) and a rebalance.
    pub(crate) const SESSION_EXPIRES: Duration = Duration::from_secs(8);

    /// A member frozen this long is past its session: when it wakes up it is a zombie.
    pub(crate) const PAST_SESSION: Duration = Duration::from_secs(9);

    /// The group settles after a kill before the next one: the session expires and the
    /// partitions are handed over and restored.
    pub(crate) const GROUP_SETTLES: Duration = Duration::from_secs(10);

    /// A moment that differs from run to run, between `base` and `base + spread`: where a
    /// kill lands (mid-batch, around a checkpoint, during a hand-over).
    pub(crate) fn some_moment(base: Duration, spread: Duration) -> Duration {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let spread = spread.as_millis().max(1) as u64;
        base + Duration::from_millis(u64::from(nanos) % spread)
    }
}

/// `events` generated events in `dir` with disorder (8 s) and 1 % very late events: late
/// data must be judged the same wherever a partition is read.
pub(crate) fn disordered(dir: &Path, events: &str) -> Vec<u8> {
    disordered_with(dir, events, &[])
}

/// [`disordered`] with 1 % bad lines too.
pub(crate) fn hostile_events(dir: &Path, events: &str) -> Vec<u8> {
    disordered_with(dir, events, &["--bad", "0.01"])
}

/// [`disordered`] with more `loadgen` flags, `more`.
fn disordered_with(dir: &Path, events: &str, more: &[&str]) -> Vec<u8> {
    let args = [
        "--events",
        events,
        "--disorder",
        "8",
        "--late-share",
        "0.01",
    ];
    let path = generate(dir, "logs.jsonl", &[&args[..], more].concat());
    std::fs::read(path).unwrap()
}

/// The shipped crash rule alone in a rules folder.
pub(crate) fn crash_rules() -> tempfile::TempDir {
    rules_dir(&[(
        "crash",
        &crash_toml(),
        &rule_wasm("rulewatch-rule-crash", "crash"),
    )])
}

/// Headless Chromium, as root and without network access (see the flags).
pub(crate) fn chromium(args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("chromium runs (Debian package `chromium`; ./test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One JSON value per line of `text` (alerts, dead letters, evidence lines).
pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Runs the rulewatch binary with `args`, feeding `stdin` if given, logging warnings.
pub(crate) fn rulewatch(args: &[&str], stdin: Option<&[u8]>) -> Output {
    rulewatch_logging(args, stdin, "warn")
}

/// [`rulewatch`], logging at `level`.
pub(crate) fn rulewatch_logging(args: &[&str], stdin: Option<&[u8]>, level: &str) -> Output {
    rulewatch_env(args, stdin, &[("RUST_LOG", level)])
}

/// [`rulewatch`] with the environment variables `env` set (`RUST_LOG` among them).
pub(crate) fn rulewatch_env(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rulewatch"))
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input).unwrap());
    }
    child.wait_with_output().unwrap()
}

/// Like [`rulewatch`], but asserts success and returns (stdout, stderr).
pub(crate) fn rulewatch_ok(args: &[&str], stdin: Option<&[u8]>) -> (String, String) {
    let out = rulewatch(args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "rulewatch {args:?} failed: {stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// `replay INPUT --format jsonl --rules DIR`, which must succeed: (stdout, stderr).
pub(crate) fn replay_rules(input: &Path, rules: &Path) -> (String, String) {
    let (input, rules) = (input.to_str().unwrap(), rules.to_str().unwrap());
    rulewatch_ok(
        &["replay", input, "--format", "jsonl", "--rules", rules],
        None,
    )
}

/// `replay --format jsonl --rules DIR` of `input` on stdin, which must succeed.
pub(crate) fn replay_rules_stdin(rules: &Path, input: &[u8]) -> (String, String) {
    let rules = rules.to_str().unwrap();
    rulewatch_ok(
        &["replay", "--format", "jsonl", "--rules", rules],
        Some(input),
    )
}

/// One alert, as the tests compare them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Alert {
    pub rule: String,
    pub window_start: String,
    pub window_end: String,
    pub key: String,
    pub count: u64,
}

/// Parses `--format jsonl` output.
pub(crate) fn parse_alerts(stdout: &str) -> Vec<Alert> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            Alert {
                rule: v["rule"].as_str().unwrap().into(),
                window_start: v["window_start"].as_str().unwrap().into(),
                window_end: v["window_end"].as_str().unwrap().into(),
                key: v["key"].as_str().unwrap().into(),
                count: v["count"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// A number from the run summary on stderr, e.g. `summary_count(stderr, "late")`.
pub(crate) fn summary_count(stderr: &str, label: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("rule "))
        .unwrap_or_else(|| panic!("no rule summary in: {stderr}"));
    let at = line
        .find(&format!(" {label} "))
        .unwrap_or_else(|| panic!("no `{label}` in: {line}"));
    line[at + label.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// What the reference computed for a run of the crash rule.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    /// Append-mode alerts, sorted.
    pub alerts: Vec<Alert>,
    /// Selected events that were late.
    pub late: u64,
    /// Selected events, late included.
    pub matched: u64,
    /// Lines rejected, by reason label.
    pub bad: BTreeMap<&'static str, u64>,
}

/// An independent implementation of the documented semantics for the crash rule (key
/// `user_id`, content contains `keyword` in any case, severity in `severities`, count >
/// `threshold`), written plainly over serde_json and chrono, over one or more inputs (Kafka
/// partitions): lateness is judged against each input's own watermark, and the events that
/// are on time count together, whichever input they came from. Windows of `size_ms` start
/// every `slide_ms` (tumbling when the two are equal).
pub(crate) fn reference(
    inputs: &[&[u8]],
    size_ms: i64,
    slide_ms: i64,
    delay_ms: i64,
    keyword: &str,
    severities: &[&str],
    threshold: u64,
) -> Expected {
    use chrono::{DateTime, NaiveDateTime};
    let mut exp = Expected::default();
    let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
    let mut bad = |reason| *exp.bad.entry(reason).or_insert(0) += 1;
    for input in inputs {
        let mut max_seen: Option<i64> = None;
        let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if lines.last() == Some(&&b""[..]) {
            lines.pop();
        }
        for line in lines {
            let Ok(text) = std::str::from_utf8(line) else {
                bad("not_utf8");
                continue;
            };
            let v: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => {
                    bad("not_json");
                    continue;
                }
            };
            let Some(obj) = v.as_object() else {
                bad("not_object");
                continue;
            };
            let time = match obj.get("timestamp") {
                None => {
                    bad("missing_field");
                    continue;
                }
                Some(serde_json::Value::String(s)) => {
                    let parsed = DateTime::parse_from_rfc3339(s)
                        .map(|t| t.timestamp_millis())
                        .or_else(|_| {
                            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                                .map(|t| t.and_utc().timestamp_millis())
                        });
                    match parsed {
                        Ok(t) => t,
                        Err(_) => {
                            bad("bad_timestamp");
                            continue;
                        }
                    }
                }
                Some(serde_json::Value::Number(n)) => match n.as_i64() {
                    Some(t) => t,
                    None => {
                        bad("bad_timestamp");
                        continue;
                    }
                },
                Some(_) => {
                    bad("wrong_type");
                    continue;
                }
            };
            let key = match obj.get("user_id") {
                None => {
                    bad("missing_field");
                    continue;
                }
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => {
                    bad("wrong_type");
                    continue;
                }
            };
            let mut fields = Vec::new();
            for name in ["severity", "content"] {
                match obj.get(name) {
                    None => {}
                    Some(serde_json::Value::String(s)) => fields.push(s.clone()),
                    Some(_) => fields.push(String::new()),
                }
            }
            match (obj.get("severity"), obj.get("content")) {
                (None, _) | (_, None) => {
                    bad("missing_field");
                    continue;
                }
                (Some(serde_json::Value::String(_)), Some(serde_json::Value::String(_))) => {}
                _ => {
                    bad("wrong_type");
                    continue;
                }
            }
            let (severity, content) = (&fields[0], &fields[1]);
            let watermark = max_seen.map(|m| m - delay_ms);
            max_seen = Some(max_seen.map_or(time, |m| m.max(time)));
            let selected = severities.contains(&severity.as_str())
                && content.to_lowercase().contains(&keyword.to_lowercase());
            if !selected {
                continue;
            }
            exp.matched += 1;
            // The windows covering `time`: starts k * slide with time - size < start <= time.
            let first = (time - size_ms).div_euclid(slide_ms) + 1;
            let last = time.div_euclid(slide_ms);
            let open: Vec<i64> = (first..=last)
                .map(|k| k * slide_ms)
                .filter(|start| watermark.is_none_or(|w| start + size_ms > w))
                .collect();
            if open.is_empty() {
                exp.late += 1;
                continue;
            }
            for start in open {
                *counts.entry((start, key.clone())).or_insert(0) += 1;
            }
        }
    }
    let fmt = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format(if ms % 1000 == 0 {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.3fZ"
            })
            .to_string()
    };
    exp.alerts = counts
        .into_iter()
        .filter(|(_, c)| *c > threshold)
        .map(|((start, key), count)| Alert {
            rule: "crash".into(),
            window_start: fmt(start),
            window_end: fmt(start + size_ms),
            key,
            count,
        })
        .collect();
    exp.alerts.sort();
    exp
}

/// The reference with the shipped crash rule's settings, over partitions.
pub(crate) fn crash_reference_partitions(inputs: &[&[u8]]) -> Expected {
    reference(
        inputs,
        10_000,
        10_000,
        10_000,
        "crash",
        &["High", "Critical"],
        2,
    )
}

/// The reference with the shipped crash rule's settings.
pub(crate) fn crash_reference(input: &[u8]) -> Expected {
    crash_reference_partitions(&[input])
}

/// `GET path` from a running engine's HTTP endpoint: (status code, body).
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// The address in the engine's "status page on http://ADDR/" log line, once it is there.
pub(crate) fn http_addr(log: impl Fn() -> String) -> String {
    let no_endpoint = || format!("no HTTP endpoint in the log:\n{}", log());
    eventually(std::time::Duration::from_secs(30), no_endpoint, || {
        let text = log();
        ["http", "https"].into_iter().find_map(|scheme| {
            let marker = format!("status page on {scheme}://");
            let rest = &text[text.find(&marker)? + marker.len()..];
            Some(rest[..rest.find('/').unwrap()].to_owned())
        })
    })
}

/// The value of one sample in Prometheus text, e.g.
/// `metric(text, r#"rulewatch_rule_matched_total{rule="crash"}"#)`.
pub(crate) fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}
