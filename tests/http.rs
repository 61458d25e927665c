//! End-to-end tests of a running engine's HTTP endpoint: `/metrics` and `/api/status` after a
//! known input, a quarantined rule and a rejected change in `/api/rules`, health and
//! readiness, and the live status page rendered in headless Chromium.

mod common;

use common::live::Live;
use common::*;
use std::time::Duration;

/// GET `path` from the engine's endpoint.
fn http(live: &Live, path: &str) -> (u16, String) {
    http_get(live.addr.as_deref().unwrap(), path)
}

/// GET `path` as JSON.
fn json(live: &Live, path: &str) -> serde_json::Value {
    let (code, body) = http(live, path);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until the published status has seen `lines` lines, and returns it.
fn wait_for_lines(live: &mut Live, lines: u64) -> serde_json::Value {
    let stuck = std::cell::Cell::new(0);
    let at = || format!("status stuck at {} of {lines} lines", stuck.get());
    eventually(Duration::from_secs(60), at, || {
        let status = json(live, "/api/status");
        stuck.set(status["totals"]["events"].as_u64().unwrap_or(0));
        live.assert_running();
        (status["totals"]["events"] == lines).then_some(status)
    })
}

fn lines_in(input: &[u8]) -> u64 {
    input.iter().filter(|&&b| b == b'\n').count() as u64
}

#[test]
fn metrics_after_a_known_input_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let path = generate(
        dir.path(),
        "in.jsonl",
        &[
            "--events",
            "30000",
            "--bad",
            "0.02",
            "--late-share",
            "0.01",
            "--disorder",
            "8",
            "--seed",
            "5",
        ],
    );
    let input = std::fs::read(&path).unwrap();
    let expected = crash_reference(&input);
    let mut live = Live::start(None, true);
    live.feed(&input);
    let status = wait_for_lines(&mut live, lines_in(&input));
    let (code, text) = http(&live, "/metrics");
    assert_eq!(code, 200);
    let get = |sample: &str| metric(&text, sample).unwrap_or_else(|| panic!("{sample}:\n{text}"));

    assert_eq!(get("rulewatch_events_total"), lines_in(&input) as f64);
    assert_eq!(
        get(r#"rulewatch_rule_matched_total{rule="crash"}"#),
        expected.matched as f64
    );
    assert_eq!(
        get(r#"rulewatch_rule_late_total{rule="crash"}"#),
        expected.late as f64
    );
    assert!(expected.late > 0 && expected.bad.len() >= 4, "{expected:?}");
    for (reason, n) in &expected.bad {
        let sample = format!(r#"rulewatch_events_bad_total{{reason="{reason}"}}"#);
        assert_eq!(get(&sample), *n as f64, "{reason}");
    }
    // Append mode: every alert of a closed window has been printed by now, and counted.
    let printed = live.alerts_so_far().len() as f64;
    assert!(printed > 0.0);
    assert_eq!(get(r#"rulewatch_alerts_total{rule="crash"}"#), printed);
    assert_eq!(status["totals"]["alerts"], printed as u64);
    assert_eq!(status["alerts"][0]["rule"], "crash");
    // Windows near the end of the input are still open: the input has not ended.
    assert!(get(r#"rulewatch_rule_open_pairs{rule="crash"}"#) > 0.0);
    let batches = get(r#"rulewatch_rule_batch_seconds_count{rule="crash"}"#);
    assert!(batches >= 1.0);
    assert_eq!(
        get(r#"rulewatch_rule_batch_seconds_bucket{le="+Inf",rule="crash"}"#),
        batches
    );
    let watermark = get(r#"rulewatch_rule_watermark_seconds{rule="crash"}"#);
    assert_eq!(
        (watermark * 1000.0).round() as i64,
        status["rules"][0]["watermark_ms"].as_i64().unwrap()
    );
    assert_eq!(get("rulewatch_ready"), 1.0);
    assert_eq!(get(r#"rulewatch_rule_quarantined{rule="crash"}"#), 0.0);
    assert_eq!(http(&live, "/healthz").0, 200);
    assert_eq!(http(&live, "/readyz").0, 200);
    live.finish();
}

/// The rule called `name` in an `/api/rules` answer.
fn rule(api: &serde_json::Value, name: &str) -> serde_json::Value {
    api.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {api}"))
        .clone()
}

#[test]
fn api_rules_shows_a_quarantined_rule_and_a_rejected_change() {
    let crash = rule_wasm("rulewatch-rule-crash", "crash");
    let bad = rule_wasm("rulewatch-rule-misbehave", "misbehave");
    let bad_toml = "module = \"bad.wasm\"\n[window]\nkey = \"user_id\"\nsize = \"10s\"\n\
                    [params]\nfail = \"trap\"\nafter = 5000\n";
    let rules = rules_dir(&[("crash", &crash_toml(), &crash), ("bad", bad_toml, &bad)]);
    let dir = tempfile::tempdir().unwrap();
    let input = std::fs::read(generate(dir.path(), "in.jsonl", &["--events", "20000"])).unwrap();
    let mut live = Live::start(Some(rules.path()), true);
    live.feed(&input);
    wait_for_lines(&mut live, lines_in(&input));

    let api = json(&live, "/api/rules");
    let (bad, good) = (rule(&api, "bad"), rule(&api, "crash"));
    assert_eq!(bad["state"], "quarantined");
    assert!(
        bad["last_error"].as_str().unwrap().contains("trapped"),
        "{bad}"
    );
    assert_eq!(good["state"], "running");
    assert_eq!(good["version"], 1);
    assert_eq!(good["params"]["threshold"], 2);
    assert_eq!(good["sha256"].as_str().unwrap().len(), 64);
    let (_, text) = http(&live, "/metrics");
    assert_eq!(
        metric(&text, r#"rulewatch_rule_quarantined{rule="bad"}"#),
        Some(1.0)
    );
    // One running rule is enough to be ready.
    assert_eq!(http(&live, "/readyz").0, 200);

    // A broken edit of crash.toml is rejected: the running version stays, and says why.
    let toml = rules.path().join("crash.toml");
    std::fs::write(
        rules.path().join("tmp"),
        "module = \"crash.wasm\"\n[window\n",
    )
    .unwrap();
    std::fs::rename(rules.path().join("tmp"), &toml).unwrap();
    let log = live.log_reader();
    let error = eventually(Duration::from_secs(20), log, || {
        let crash = rule(&json(&live, "/api/rules"), "crash");
        let error = crash["last_error"].as_str().map(str::to_owned);
        // Changes are applied between batches: keep a trickle of input going.
        live.feed(&input[..input.iter().position(|&b| b == b'\n').unwrap() + 1]);
        error
    });
    assert!(error.contains("crash.toml"), "{error}");
    let (_, text) = http(&live, "/metrics");
    assert_eq!(
        metric(&text, r#"rulewatch_rule_changes_total{change="rejected"}"#),
        Some(1.0)
    );
    assert_eq!(
        rule(&json(&live, "/api/rules"), "crash")["state"],
        "running"
    );
    live.finish();
}

#[test]
fn the_status_page_shows_rules_and_alerts_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let input = std::fs::read(generate(dir.path(), "in.jsonl", &["--events", "30000"])).unwrap();
    let mut live = Live::start(None, true);
    live.feed(&input);
    wait_for_lines(&mut live, lines_in(&input));
    let newest = live.alerts_so_far().pop().expect("alerts so far");
    let url = format!("http://{}/", live.addr.as_deref().unwrap());

    let dom = chromium(&["--dump-dom", &url]);
    assert!(dom.contains(r#"data-rule="crash""#), "{dom}");
    assert!(
        dom.contains(&format!(r#"data-key="{}""#, newest.key)),
        "{dom}"
    );
    assert!(
        dom.contains("crash_count"),
        "the rule's count column: {dom}"
    );

    // Kept as a CI artefact, to look at.
    let shot = workspace().join("target/status-page.png");
    chromium(&[&format!("--screenshot={}", shot.display()), &url]);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    live.finish();
}
