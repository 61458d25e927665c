//! Tests of the windows: alignment, lateness, closing, per-source watermarks, snapshots
//! and evidence.

use super::*;

fn windows() -> Windows {
    Windows::new(Duration::from_secs(10), Duration::from_secs(10))
}

fn closed(w: &mut Windows, all: bool) -> Vec<(i64, String, u64)> {
    let mut out = Vec::new();
    w.close(all, |r| out.push((r.start, r.key.to_owned(), r.count)));
    out
}

#[test]
fn windows_are_epoch_aligned_including_negative_times() {
    let w = windows();
    assert_eq!(w.window_of(0), (0, 10_000));
    assert_eq!(w.window_of(9_999), (0, 10_000));
    assert_eq!(w.window_of(10_000), (10_000, 20_000));
    assert_eq!(w.window_of(-1), (-10_000, 0));
}

#[test]
fn late_is_judged_against_the_watermark_before_the_event() {
    let mut w = windows();
    assert_eq!(
        w.observe(0, 25_000, "a", true, Pos::default()),
        Verdict::Counted
    );
    // watermark 15 000: window [0, 10 000) has ended before it.
    assert_eq!(w.watermark(), Some(15_000));
    assert_eq!(
        w.observe(0, 9_999, "a", true, Pos::default()),
        Verdict::Late
    );
    // [10 000, 20 000) ends after 15 000: still open.
    assert_eq!(
        w.observe(0, 10_000, "a", true, Pos::default()),
        Verdict::Counted
    );
    // An unselected event moves the watermark too...
    assert_eq!(
        w.observe(0, 30_000, "b", false, Pos::default()),
        Verdict::Skipped
    );
    assert_eq!(w.watermark(), Some(20_000));
    // ...so [10 000, 20 000) is now late: end 20 000 <= watermark 20 000.
    assert_eq!(
        w.observe(0, 19_999, "a", true, Pos::default()),
        Verdict::Late
    );
    // Out of order but not late: the max does not go back.
    assert_eq!(
        w.observe(0, 21_000, "a", true, Pos::default()),
        Verdict::Counted
    );
    assert_eq!(w.watermark(), Some(20_000));
}

#[test]
fn windows_close_when_the_watermark_reaches_their_end() {
    let mut w = windows();
    w.observe(0, 1_000, "a", true, Pos::default());
    w.observe(0, 2_000, "a", true, Pos::default());
    w.observe(0, 12_000, "b", true, Pos::default());
    w.observe(0, 19_999, "c", false, Pos::default()); // watermark 9 999
    assert!(closed(&mut w, false).is_empty());
    w.observe(0, 20_000, "c", false, Pos::default()); // watermark 10 000 = end of [0, 10 000)
    assert_eq!(closed(&mut w, false), vec![(0, "a".into(), 2)]);
    assert_eq!(w.open_pairs(), 1);
    assert_eq!(closed(&mut w, true), vec![(10_000, "b".into(), 1)]);
    assert_eq!(w.open_pairs(), 0);
}

#[test]
fn snapshots_restore_counts_and_watermark_per_source() {
    let mut w = windows();
    w.observe(0, 1_000, "a", true, Pos::default());
    w.observe(1, 12_000, "b", true, Pos::default());
    w.observe(0, 2_000, "a", true, Pos::default());
    let snap = w.snapshot(0);
    let json = serde_json::to_string(&snap).unwrap();
    let mut r = windows();
    r.restore(3, serde_json::from_str(&json).unwrap());
    assert_eq!(r.snapshot(3), snap);
    assert_eq!(r.watermark_of(3), w.watermark_of(0));
    assert_eq!(r.sources().collect::<Vec<_>>(), [3]);
    // Counting goes on where it stopped.
    r.observe(3, 3_000, "a", true, Pos::default());
    assert_eq!(closed(&mut r, true)[0], (0, "a".into(), 3));
}

#[test]
fn each_source_closes_its_windows_by_its_own_watermark() {
    let mut w = windows();
    w.observe(0, 1_000, "a", true, Pos::default());
    w.observe(1, 2_000, "b", true, Pos::default());
    // Source 0 reaches 20 s (watermark 10 s): its [0, 10 s) closes, source 1's does not.
    w.observe(0, 20_000, "c", false, Pos::default());
    assert_eq!(closed(&mut w, false), [(0, "a".to_owned(), 1)]);
    assert_eq!(w.watermark(), Some(-8_000), "the slowest source's");
    // An event of source 1 in that window is still on time there, late in source 0.
    assert_eq!(
        w.observe(1, 3_000, "b", true, Pos::default()),
        Verdict::Counted
    );
    assert_eq!(
        w.observe(0, 3_000, "a", true, Pos::default()),
        Verdict::Late
    );
    // Source 1 goes idle: it holds its place until vouched for, then is moved to the
    // active sources' watermark and closes.
    w.set_idle(1, true);
    assert!(closed(&mut w, false).is_empty());
    let active: Vec<_> = w.watermarks().filter(|&(_, _, idle)| !idle).collect();
    assert_eq!(active, [(0, 10_000, false)], "source 1 left out");
    w.follow(1, 10_000);
    assert_eq!(closed(&mut w, false), [(0, "b".to_owned(), 2)]);
    assert_eq!(w.watermark_of(1), Some(10_000));
    // A dropped source is forgotten, and holds nothing back.
    w.observe(1, 4_000, "b", true, Pos::default());
    w.drop_source(1);
    assert_eq!(w.open_pairs(), 0);
    assert_eq!(w.sources().collect::<Vec<_>>(), [0]);
}

#[test]
fn changes_are_reported_once_per_drain() {
    let mut w = windows();
    w.observe(0, 1_000, "a", true, Pos::default());
    w.observe(0, 1_500, "a", true, Pos::default());
    w.observe(0, 2_000, "b", true, Pos::default());
    let mut seen = Vec::new();
    w.drain_changed(|r| seen.push((r.key.to_owned(), r.count)));
    assert_eq!(seen, vec![("a".into(), 2), ("b".into(), 1)]);
    seen.clear();
    w.drain_changed(|r| seen.push((r.key.to_owned(), r.count)));
    assert!(seen.is_empty());
    w.observe(0, 3_000, "b", true, Pos::default());
    w.drain_changed(|r| seen.push((r.key.to_owned(), r.count)));
    assert_eq!(seen, vec![("b".into(), 2)]);
}

#[test]
fn hopping_windows_count_an_event_in_each_window_covering_it() {
    let mut w = Windows::hopping(
        Duration::from_secs(10),
        Duration::from_secs(5),
        Duration::from_secs(10),
    );
    assert_eq!(
        w.observe(0, 12_000, "a", true, Pos::default()),
        Verdict::Counted
    );
    let mut all = Vec::new();
    w.for_each(|r| all.push((r.start, r.end, r.count)));
    assert_eq!(all, [(5_000, 15_000, 1), (10_000, 20_000, 1)]);
    // Watermark 14 s: [5, 15) is open, an event at 6 s counts there only; [0, 10) is
    // closed, so an event at 3 s (all its windows closed) is late.
    w.observe(0, 24_000, "b", false, Pos::default());
    assert_eq!(
        w.observe(0, 6_000, "a", true, Pos::default()),
        Verdict::Counted
    );
    assert_eq!(
        w.observe(0, 3_000, "a", true, Pos::default()),
        Verdict::Late
    );
    assert_eq!(closed(&mut w, false), []);
    w.observe(0, 25_000, "b", false, Pos::default());
    assert_eq!(closed(&mut w, false), [(5_000, "a".to_owned(), 2)]);
    assert_eq!(closed(&mut w, true), [(10_000, "a".to_owned(), 1)]);
}

#[test]
fn a_snapshot_serialises_the_same_from_a_reference() {
    let mut w = Windows::hopping(
        Duration::from_secs(10),
        Duration::from_secs(5),
        Duration::from_secs(10),
    );
    for (source, t, key) in [(0, 1_000, "a"), (1, 7_000, "b\"q"), (0, 12_000, "a")] {
        w.observe(source, t, key, true, Pos::default());
    }
    for source in [0, 1] {
        let by_ref = serde_json::to_string(&SnapshotRef {
            windows: &w,
            source,
        })
        .unwrap();
        assert_eq!(by_ref, serde_json::to_string(&w.snapshot(source)).unwrap());
        let back: Snapshot = serde_json::from_str(&by_ref).unwrap();
        assert_eq!(back, w.snapshot(source));
    }
}

fn pos(n: u64) -> Pos {
    Pos {
        number: n,
        byte: n * 10,
    }
}

fn closed_evidence(w: &mut Windows) -> Vec<(String, u64, Vec<Pos>)> {
    let mut out = Vec::new();
    w.close(true, |r| {
        out.push((r.key.to_owned(), r.count, r.evidence.to_vec()))
    });
    out
}

#[test]
fn evidence_keeps_the_smallest_positions_whatever_the_order() {
    for order in [[5, 1, 9, 3, 7], [9, 7, 5, 3, 1], [1, 3, 5, 7, 9]] {
        let mut w = windows().with_evidence(3);
        for n in order {
            w.observe(0, 1_000, "a", true, pos(n));
        }
        w.observe(0, 1_000, "b", false, pos(2));
        let want = vec![pos(1), pos(3), pos(5)];
        assert_eq!(closed_evidence(&mut w), [("a".to_owned(), 5, want)]);
    }
    let mut w = windows();
    w.observe(0, 1_000, "a", true, pos(1));
    assert_eq!(closed_evidence(&mut w), [("a".to_owned(), 1, vec![])]);
}

#[test]
fn evidence_survives_a_checkpoint() {
    let mut w = windows().with_evidence(2);
    for n in [4, 2, 8] {
        w.observe(0, 1_000, "a", true, pos(n));
    }
    w.observe(0, 1_500, "b", true, pos(6));
    let written = serde_json::to_string(&SnapshotRef {
        windows: &w,
        source: 0,
    })
    .unwrap();
    let back: Snapshot = serde_json::from_str(&written).unwrap();
    assert_eq!(back, w.snapshot(0));
    let mut restored = windows().with_evidence(2);
    restored.restore(0, back);
    restored.observe(0, 1_200, "a", true, pos(1));
    assert_eq!(
        closed_evidence(&mut restored),
        [
            ("a".to_owned(), 4, vec![pos(1), pos(2)]),
            ("b".to_owned(), 1, vec![pos(6)])
        ]
    );
    // A checkpoint of windows without evidence has no evidence field.
    let mut plain = windows();
    plain.observe(0, 1_000, "a", true, pos(1));
    let written = serde_json::to_string(&SnapshotRef {
        windows: &plain,
        source: 0,
    })
    .unwrap();
    assert!(!written.contains("evidence"), "{written}");
}
