//! Event-time windows per key, under a watermark: tumbling, or hopping (overlapping).
//!
//! * Windows are `[start, start + size)` with `start` a multiple of `slide`, aligned to the
//!   Unix epoch. Tumbling windows have `slide = size`: each event is in one window. Hopping
//!   windows have `slide < size`: each event is in every window that covers its time
//!   (`size / slide` of them when `slide` divides `size`), as Spark's `window(ts, size,
//!   slide)`.
//! * The watermark is the largest event time seen so far minus the delay (the minimum of
//!   that over the active sources, see [`watermark`]). Every decoded event moves it, counted
//!   or not.
//! * An event is late when its window's end is at or before the watermark as it stood
//!   before that event; a late event is not counted. With hopping windows it is counted in
//!   those of its windows that are still open, and late only when all of them are closed.
//! * A window closes once the watermark reaches its end; its state is then freed.
//!
//! State is one small map per open window, so memory grows with open (window, key) pairs,
//! never with the number of events.

pub mod watermark;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use std::collections::BTreeMap;
use std::time::Duration;
use watermark::Watermark;

/// What happened to an observed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted in its window.
    Counted,
    /// The filter selected it, but its window had already closed.
    Late,
    /// The filter did not select it; it only moved the watermark.
    Skipped,
}

/// One (window, key) count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRow<'a> {
    /// Window start, epoch ms.
    pub start: i64,
    /// Window end (exclusive), epoch ms.
    pub end: i64,
    /// The key.
    pub key: &'a str,
    /// Events counted.
    pub count: u64,
}

#[derive(Clone, Copy)]
struct Count {
    n: u64,
    changed: bool,
}

type Pane = IndexMap<Box<str>, Count, FxBuildHasher>;

/// The windows of one rule.
pub struct Windows {
    size: i64,
    slide: i64,
    watermark: Watermark,
    open: BTreeMap<i64, Pane>,
    /// (window start, index in its pane) of counts changed since the last drain.
    changed: Vec<(i64, usize)>,
}

impl Windows {
    /// Tumbling windows of `size` under a watermark that trails the largest event time by
    /// `delay`.
    pub fn new(size: Duration, delay: Duration) -> Self {
        Self::hopping(size, size, delay)
    }

    /// Windows of `size` starting every `slide` (`0 < slide <= size`).
    pub fn hopping(size: Duration, slide: Duration, delay: Duration) -> Self {
        Windows {
            size: size.as_millis() as i64,
            slide: slide.as_millis() as i64,
            watermark: Watermark::new(delay.as_millis() as i64),
            open: BTreeMap::new(),
            changed: Vec::new(),
        }
    }

    /// Placeholder windows holding nothing (for a stopped rule).
    pub fn empty() -> Self {
        Self::new(Duration::from_millis(1), Duration::ZERO)
    }

    /// The current watermark in epoch ms, once an event has been seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// The per-source progress behind the watermark.
    pub fn source_progress(&self) -> &Watermark {
        &self.watermark
    }

    /// The per-source progress behind the watermark, to mark sources idle.
    pub fn sources(&mut self) -> &mut Watermark {
        &mut self.watermark
    }

    /// The latest window `[start, end)` holding event time `t` (the only one when tumbling).
    pub fn window_of(&self, t: i64) -> (i64, i64) {
        let start = t.div_euclid(self.slide) * self.slide;
        (start, start.saturating_add(self.size))
    }

    /// Observes one decoded event from `source`, in arrival order.
    #[inline]
    pub fn observe(&mut self, source: usize, time: i64, key: &str, selected: bool) -> Verdict {
        let (latest, end) = self.window_of(time);
        let watermark = self.watermark();
        self.watermark.observe(source, time);
        if !selected {
            return Verdict::Skipped;
        }
        // The latest window ends last: if it is closed, all of the event's windows are.
        if watermark.is_some_and(|wm| end <= wm) {
            return Verdict::Late;
        }
        let mut start = latest;
        while start.saturating_add(self.size) > time {
            if watermark.is_none_or(|wm| start.saturating_add(self.size) > wm) {
                self.count(start, key);
            }
            if self.slide == self.size {
                break;
            }
            start -= self.slide;
        }
        Verdict::Counted
    }

    /// Counts one event for `key` in the window starting at `start`.
    #[inline]
    fn count(&mut self, start: i64, key: &str) {
        let pane = self.open.entry(start).or_default();
        let index = match pane.get_full_mut(key) {
            Some((i, _, c)) => {
                c.n += 1;
                if c.changed {
                    return;
                }
                c.changed = true;
                i
            }
            None => {
                pane.insert_full(
                    key.into(),
                    Count {
                        n: 1,
                        changed: true,
                    },
                )
                .0
            }
        };
        self.changed.push((start, index));
    }

    /// Hands out every count changed since the last call (in first-change order).
    pub fn drain_changed(&mut self, mut f: impl FnMut(WindowRow<'_>)) {
        for (start, i) in self.changed.drain(..) {
            if let Some((key, c)) = self.open.get_mut(&start).and_then(|p| p.get_index_mut(i)) {
                c.changed = false;
                f(WindowRow {
                    start,
                    end: start.saturating_add(self.size),
                    key,
                    count: c.n,
                });
            }
        }
    }

    /// Hands out every count still held, oldest window first.
    pub fn for_each(&self, mut f: impl FnMut(WindowRow<'_>)) {
        for (&start, pane) in &self.open {
            for (key, c) in pane {
                f(WindowRow {
                    start,
                    end: start.saturating_add(self.size),
                    key,
                    count: c.n,
                });
            }
        }
    }

    /// Closes the windows the watermark has passed (every window if `all`, at the end of
    /// the input), handing out their final counts and freeing them.
    pub fn close(&mut self, all: bool, mut f: impl FnMut(WindowRow<'_>)) {
        let wm = if all { None } else { self.watermark() };
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(self.size);
            if !all && wm.is_none_or(|wm| end > wm) {
                break;
            }
            for (key, c) in entry.remove() {
                f(WindowRow {
                    start,
                    end,
                    key: &key,
                    count: c.n,
                });
            }
        }
        let open = &self.open;
        self.changed.retain(|(start, _)| open.contains_key(start));
    }

    /// Moves the watermark past every open window, so that the next close takes them all;
    /// events for them that come later are late.
    pub fn advance_past_open(&mut self) {
        if let Some((&last, _)) = self.open.last_key_value() {
            self.watermark.advance_to(last.saturating_add(self.size));
        }
    }

    /// Open (window, key) pairs.
    pub fn open_pairs(&self) -> usize {
        self.open.values().map(|p| p.len()).sum()
    }

    /// The state as a checkpoint reads it back (checkpoints are written from
    /// [`SnapshotRef`], without this copy).
    #[cfg(test)]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            size: self.size,
            slide: Some(self.slide),
            watermark: self.watermark.clone(),
            windows: self
                .open
                .iter()
                .map(|(start, pane)| {
                    let counts = pane.iter().map(|(k, c)| (k.to_string(), c.n)).collect();
                    (*start, counts)
                })
                .collect(),
        }
    }

    /// Windows restored from a checkpoint.
    pub fn restore(snapshot: Snapshot) -> Self {
        Windows {
            size: snapshot.size,
            slide: snapshot.slide.unwrap_or(snapshot.size),
            watermark: snapshot.watermark,
            open: snapshot
                .windows
                .into_iter()
                .map(|(start, counts)| {
                    let pane = counts
                        .into_iter()
                        .map(|(k, n)| (k.into_boxed_str(), Count { n, changed: false }))
                        .collect();
                    (start, pane)
                })
                .collect(),
            changed: Vec::new(),
        }
    }
}

/// The windows as a [`Snapshot`] serialises, without copying them first: checkpoints are
/// written from this, and read back as a [`Snapshot`].
pub struct SnapshotRef<'a>(pub &'a Windows);

impl serde::Serialize for SnapshotRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct PaneRef<'a>(&'a Pane);
        impl serde::Serialize for PaneRef<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(k, c)| (&**k, c.n)))
            }
        }
        let w = self.0;
        let mut out = s.serialize_struct("Snapshot", 4)?;
        out.serialize_field("size", &w.size)?;
        out.serialize_field("slide", &Some(w.slide))?;
        out.serialize_field("watermark", &w.watermark)?;
        let windows: Vec<(i64, PaneRef<'_>)> = w
            .open
            .iter()
            .map(|(&start, pane)| (start, PaneRef(pane)))
            .collect();
        out.serialize_field("windows", &windows)?;
        out.end()
    }
}

/// Checkpointed window state: open windows with their counts, and the watermark.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    size: i64,
    /// Absent in checkpoints from before hopping windows: tumbling.
    #[serde(default)]
    slide: Option<i64>,
    watermark: Watermark,
    windows: Vec<(i64, Vec<(String, u64)>)>,
}

#[cfg(test)]
mod tests {
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
        assert_eq!(w.observe(0, 25_000, "a", true), Verdict::Counted);
        // watermark 15 000: window [0, 10 000) has ended before it.
        assert_eq!(w.watermark(), Some(15_000));
        assert_eq!(w.observe(0, 9_999, "a", true), Verdict::Late);
        // [10 000, 20 000) ends after 15 000: still open.
        assert_eq!(w.observe(0, 10_000, "a", true), Verdict::Counted);
        // An unselected event moves the watermark too...
        assert_eq!(w.observe(0, 30_000, "b", false), Verdict::Skipped);
        assert_eq!(w.watermark(), Some(20_000));
        // ...so [10 000, 20 000) is now late: end 20 000 <= watermark 20 000.
        assert_eq!(w.observe(0, 19_999, "a", true), Verdict::Late);
        // Out of order but not late: the max does not go back.
        assert_eq!(w.observe(0, 21_000, "a", true), Verdict::Counted);
        assert_eq!(w.watermark(), Some(20_000));
    }

    #[test]
    fn windows_close_when_the_watermark_reaches_their_end() {
        let mut w = windows();
        w.observe(0, 1_000, "a", true);
        w.observe(0, 2_000, "a", true);
        w.observe(0, 12_000, "b", true);
        w.observe(0, 19_999, "c", false); // watermark 9 999
        assert!(closed(&mut w, false).is_empty());
        w.observe(0, 20_000, "c", false); // watermark 10 000 = end of [0, 10 000)
        assert_eq!(closed(&mut w, false), vec![(0, "a".into(), 2)]);
        assert_eq!(w.open_pairs(), 1);
        assert_eq!(closed(&mut w, true), vec![(10_000, "b".into(), 1)]);
        assert_eq!(w.open_pairs(), 0);
    }

    #[test]
    fn snapshots_restore_counts_and_watermark() {
        let mut w = windows();
        w.observe(0, 1_000, "a", true);
        w.observe(1, 12_000, "b", true);
        w.observe(0, 2_000, "a", true);
        let snap = w.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let mut r = Windows::restore(serde_json::from_str(&json).unwrap());
        assert_eq!(r.snapshot(), snap);
        assert_eq!(r.watermark(), w.watermark());
        // Counting goes on where it stopped.
        r.observe(0, 3_000, "a", true);
        assert_eq!(closed(&mut r, true)[0], (0, "a".into(), 3));
    }

    #[test]
    fn changes_are_reported_once_per_drain() {
        let mut w = windows();
        w.observe(0, 1_000, "a", true);
        w.observe(0, 1_500, "a", true);
        w.observe(0, 2_000, "b", true);
        let mut seen = Vec::new();
        w.drain_changed(|r| seen.push((r.key.to_owned(), r.count)));
        assert_eq!(seen, vec![("a".into(), 2), ("b".into(), 1)]);
        seen.clear();
        w.drain_changed(|r| seen.push((r.key.to_owned(), r.count)));
        assert!(seen.is_empty());
        w.observe(0, 3_000, "b", true);
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
        assert_eq!(w.observe(0, 12_000, "a", true), Verdict::Counted);
        let mut all = Vec::new();
        w.for_each(|r| all.push((r.start, r.end, r.count)));
        assert_eq!(all, [(5_000, 15_000, 1), (10_000, 20_000, 1)]);
        // Watermark 14 s: [5, 15) is open, an event at 6 s counts there only; [0, 10) is
        // closed, so an event at 3 s (all its windows closed) is late.
        w.observe(0, 24_000, "b", false);
        assert_eq!(w.observe(0, 6_000, "a", true), Verdict::Counted);
        assert_eq!(w.observe(0, 3_000, "a", true), Verdict::Late);
        assert_eq!(closed(&mut w, false), []);
        w.observe(0, 25_000, "b", false);
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
        for (t, key) in [(1_000, "a"), (7_000, "b\"q"), (12_000, "a")] {
            w.observe(t as usize % 2, t, key, true);
        }
        let by_ref = serde_json::to_string(&SnapshotRef(&w)).unwrap();
        assert_eq!(by_ref, serde_json::to_string(&w.snapshot()).unwrap());
        let back: Snapshot = serde_json::from_str(&by_ref).unwrap();
        assert_eq!(back, w.snapshot());
    }
}
