//! `rulewatch-baselines FILE [ROUNDS]`: the bare native JSON parses `rulewatch replay` is held
//! to, on the same lines. Each line is parsed by serde_json and by sonic-rs into a struct of
//! the crash rule's four fields (borrowed strings, copied only when escaped) and the crash
//! filter is applied, so that no parse can be optimised away; the file is read into memory
//! first (not timed). Prints, per parser, the best of ROUNDS (default 3).
//!
//! Built as the parsers' authors benchmark them: the workspace's `peer` profile (fat LTO, one
//! codegen unit; `cargo build --profile peer -p rulewatch-baselines`), not the engine's
//! release profile — a baseline handicapped by the build would flatter the engine.

use std::borrow::Cow;
use std::time::Instant;

/// The four fields of an event, as the crash rule reads them.
#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    #[allow(dead_code)] // parsed, as the engine parses it, but not filtered on
    timestamp: Cow<'a, str>,
    #[serde(borrow)]
    severity: Cow<'a, str>,
    #[serde(borrow)]
    #[allow(dead_code)] // the key: parsed, not filtered on
    user_id: Cow<'a, str>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

impl Event<'_> {
    /// The crash rule's filter: High or Critical, and "crash" in any case in the content.
    fn selected(&self) -> bool {
        let severe = self.severity == "High" || self.severity == "Critical";
        let crash = |w: &[u8]| w.eq_ignore_ascii_case(b"crash");
        severe && self.content.as_bytes().windows(5).any(crash)
    }
}

type Parse = fn(&[u8]) -> Option<bool>;

fn serde(line: &[u8]) -> Option<bool> {
    serde_json::from_slice::<Event<'_>>(line)
        .ok()
        .map(|e| e.selected())
}

fn sonic(line: &[u8]) -> Option<bool> {
    sonic_rs::from_slice::<Event<'_>>(line)
        .ok()
        .map(|e| e.selected())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: rulewatch-baselines FILE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args
        .next()
        .map_or(3, |r| r.parse().expect("ROUNDS: a number"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let parsers: [(&str, Parse); 2] = [("serde_json", serde), ("sonic-rs", sonic)];
    for (name, parse) in parsers {
        let mut best = f64::MAX;
        let (mut parsed, mut selected) = (0, 0);
        for _ in 0..rounds.max(1) {
            let started = Instant::now();
            (parsed, selected) = (0, 0);
            for line in data.split(|&b| b == b'\n') {
                if let Some(hit) = parse(line) {
                    parsed += 1;
                    selected += usize::from(hit);
                }
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{name} lines {lines} parsed {parsed} selected {selected} seconds {best:.3} lines/s {:.0}",
            lines as f64 / best
        );
    }
}
