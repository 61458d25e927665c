//! `rulewatch loadgen`: the same seed gives the same bytes, every knob shows in the output,
//! and `--rate` is honoured.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

fn loadgen(args: &[&str]) -> String {
    let mut all = vec!["loadgen", "--events", "20000"];
    all.extend_from_slice(args);
    // Bad lines include bytes that are not UTF-8.
    let out = rulewatch(&all, None);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The events that parse, in order.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("user_id").is_some() && v.get("seq").is_some())
        .collect()
}

fn time_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

fn share(events: &[Value], pred: impl Fn(&Value) -> bool) -> f64 {
    events.iter().filter(|v| pred(v)).count() as f64 / events.len() as f64
}

fn is_crash(v: &Value) -> bool {
    v["content"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("crash")
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = loadgen(&["--seed", "5", "--bad", "0.05", "--pad", "10"]);
    assert_eq!(a, loadgen(&["--seed", "5", "--bad", "0.05", "--pad", "10"]));
    assert_ne!(a, loadgen(&["--seed", "6", "--bad", "0.05", "--pad", "10"]));
    assert_eq!(a.lines().count(), 20_000);
}

#[test]
fn every_knob_shows_in_the_output() {
    let base = events(&loadgen(&[]));
    assert_eq!(base.len(), 20_000, "no malformed lines by default");

    let users = |e: &[Value]| {
        e.iter()
            .map(|v| v["user_id"].as_str().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert!(
        (950..=1000).contains(&users(&base)),
        "--users defaults to 1000"
    );
    assert_eq!(users(&events(&loadgen(&["--users", "50"]))), 50);

    let crash = share(&base, is_crash);
    assert!((0.07..0.09).contains(&crash), "default crash share {crash}");
    let half = share(&events(&loadgen(&["--crash-share", "0.5"])), is_crash);
    assert!(
        (0.47..0.53).contains(&half),
        "--crash-share 0.5 gave {half}"
    );

    // Hot users: the top three take far more of the crashes with hot users than without.
    let top3 = |args: &[&str]| {
        let e = events(&loadgen(args));
        let mut per_user = std::collections::BTreeMap::<String, usize>::new();
        let crashes: Vec<&Value> = e.iter().filter(|v| is_crash(v)).collect();
        for v in &crashes {
            *per_user
                .entry(v["user_id"].as_str().unwrap().into())
                .or_default() += 1;
        }
        let mut counts: Vec<usize> = per_user.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        counts.iter().take(3).sum::<usize>() as f64 / crashes.len() as f64
    };
    assert!(top3(&["--hot-users", "3"]) > 0.3);
    assert!(top3(&["--hot-users", "0"]) < 0.05);

    let critical = events(&loadgen(&[
        "--severity-mix",
        "0,0,0,1",
        "--crash-share",
        "0",
    ]));
    assert!(critical.iter().all(|v| v["severity"] == "Critical"));
    let low = share(&base, |v| v["severity"] == "Low");
    assert!((0.42..0.52).contains(&low), "default mix: Low {low}");

    // Event time: --start-ms, --event-rate, --disorder, --late-share/--late-by.
    let ordered = events(&loadgen(&[
        "--disorder",
        "0",
        "--late-share",
        "0",
        "--event-rate",
        "100",
        "--start-ms",
        "0",
    ]));
    assert_eq!(ordered[0]["timestamp"], "1970-01-01T00:00:00.000Z");
    assert!(ordered.windows(2).all(|w| time_ms(&w[0]) <= time_ms(&w[1])));
    assert!((199_000..=200_000).contains(&time_ms(ordered.last().unwrap())));
    let behind = |e: &[Value]| -> Vec<i64> {
        let mut max = i64::MIN;
        e.iter()
            .map(|v| {
                let t = time_ms(v);
                max = max.max(t);
                max - t
            })
            .collect()
    };
    let disordered = behind(&events(&loadgen(&["--disorder", "5", "--late-share", "0"])));
    let worst = *disordered.iter().max().unwrap();
    assert!(
        (3_000..=5_000).contains(&worst),
        "--disorder 5: at most {worst} ms behind"
    );
    let late = behind(&events(&loadgen(&[
        "--late-share",
        "0.1",
        "--late-by",
        "60",
        "--event-rate",
        "10",
    ])));
    let very_late = late.iter().filter(|&&b| b >= 60_000).count() as f64 / late.len() as f64;
    assert!(
        (0.08..0.12).contains(&very_late),
        "--late-share 0.1: {very_late}"
    );

    let bad = loadgen(&["--bad", "0.1"]);
    let usable = events(&bad).len() as f64 / 20_000.0;
    assert!(
        (0.87..0.93).contains(&usable),
        "--bad 0.1 left {usable} usable"
    );

    let padded = events(&loadgen(&["--pad", "100"]));
    assert!(
        padded
            .iter()
            .all(|v| v["trace"].as_str().unwrap() == "x".repeat(100))
    );
}

#[test]
fn the_rate_is_honoured() {
    // 200 000 events at 20 000/s: 10 s from the first line to the last.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rulewatch"))
        .args(["loadgen", "--events", "200000", "--rate", "20000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap();
    let first = Instant::now();
    let mut n = 1;
    let mut at_half = None;
    for line in lines {
        line.unwrap();
        n += 1;
        if n == 100_000 {
            at_half = Some(first.elapsed().as_secs_f64());
        }
    }
    let secs = first.elapsed().as_secs_f64();
    assert!(child.wait().unwrap().success());
    assert_eq!(n, 200_000);
    assert!(
        (9.5..=10.5).contains(&secs),
        "200 000 events at 20 000/s took {secs:.2} s"
    );
    let half = at_half.unwrap();
    assert!(
        (4.75..=5.25).contains(&half),
        "half of them after {half:.2} s"
    );
}
