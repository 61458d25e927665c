//! Event-time windows per key, under a watermark: tumbling, or hopping (overlapping).
//!
//! * Windows are `[start, start + size)` with `start` a multiple of `slide`, aligned to the
//!   Unix epoch. Tumbling windows have `slide = size`: each event is in one window. Hopping
//!   windows have `slide < size`: each event is in every window that covers its time
//!   (`size / slide` of them when `slide` divides `size`), as Spark's `window(ts, size,
//!   slide)`.
//! * State is kept per input source (Kafka partition): its own open windows and its own
//!   watermark, the largest event time seen in it minus the delay (see [`watermark`]).
//!   Every decoded event moves it, counted or not. Keyed input puts all events of a key in
//!   one partition, so per-partition counts are the counts; and a partition's state can be
//!   checkpointed, dropped and restored on its own when it moves to another instance.
//! * An event is late when its window's end is at or before its source's watermark as it
//!   stood before that event; a late event is not counted. With hopping windows it is
//!   counted in those of its windows that are still open, and late only when all of them
//!   are closed.
//! * A window closes once its source's watermark reaches its end; its state is then freed.
//!   An idle source is moved along to the watermark of the active ones.
//!
//! Memory grows with open (window, key) pairs, never with the number of events.

mod settings;
mod snapshot;
pub mod watermark;

pub use settings::WindowSettings;
pub use snapshot::{Snapshot, SnapshotRef};

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
    /// The source whose events these are.
    pub source: usize,
    /// That source's watermark.
    pub watermark: Option<i64>,
}

#[derive(Clone, Copy)]
struct Count {
    n: u64,
    changed: bool,
}

type Pane = IndexMap<Box<str>, Count, FxBuildHasher>;

/// The windows of one source.
struct Part {
    watermark: Watermark,
    idle: bool,
    open: BTreeMap<i64, Pane>,
    /// (window start, index in its pane) of counts changed since the last drain.
    changed: Vec<(i64, usize)>,
}

impl Part {
    fn new(delay: i64) -> Self {
        Part {
            watermark: Watermark::new(delay),
            idle: false,
            open: BTreeMap::new(),
            changed: Vec::new(),
        }
    }

    /// Counts an event at `time` in each of its windows still open under `watermark`
    /// (`latest` is the last window holding `time`); late if none is.
    #[inline]
    fn count_open(
        &mut self,
        size: i64,
        slide: i64,
        latest: (i64, i64),
        watermark: Option<i64>,
        time: i64,
        key: &str,
    ) -> Verdict {
        // The latest window ends last: if it is closed, all of the event's windows are.
        if watermark.is_some_and(|wm| latest.1 <= wm) {
            return Verdict::Late;
        }
        let mut start = latest.0;
        while start.saturating_add(size) > time {
            if watermark.is_none_or(|wm| start.saturating_add(size) > wm) {
                self.count(start, key);
            }
            if slide == size {
                break;
            }
            start -= slide;
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
}

/// The windows of one rule, per source.
pub struct Windows {
    size: i64,
    slide: i64,
    delay: i64,
    /// By source index; `None` for sources without state here (no data yet, or revoked).
    parts: Vec<Option<Part>>,
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
            delay: delay.as_millis() as i64,
            parts: Vec::new(),
        }
    }

    /// Placeholder windows holding nothing (for a stopped rule).
    pub fn empty() -> Self {
        Self::new(Duration::from_millis(1), Duration::ZERO)
    }

    fn parts(&self) -> impl Iterator<Item = (usize, &Part)> {
        self.parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.as_ref()?)))
    }

    /// The rule's watermark on this instance: the slowest active source's (the fastest idle
    /// one's when all are idle), once a source has data.
    pub fn watermark(&self) -> Option<i64> {
        let active = self
            .parts()
            .filter(|(_, p)| !p.idle)
            .filter_map(|(_, p)| p.watermark.current())
            .min();
        active.or_else(|| {
            self.parts()
                .filter_map(|(_, p)| p.watermark.current())
                .max()
        })
    }

    /// Source `source`'s watermark, once it has data.
    pub fn watermark_of(&self, source: usize) -> Option<i64> {
        self.parts.get(source)?.as_ref()?.watermark.current()
    }

    /// Marks source `source` idle (no data for a while) or not; data wakes it up. An idle
    /// source holds its place until its reader vouches for it again ([`Windows::follow`]).
    pub fn set_idle(&mut self, source: usize, idle: bool) {
        if let Some(Some(p)) = self.parts.get_mut(source) {
            p.idle = idle;
        }
    }

    /// Moves idle source `source` to the active sources' watermark as it stands now, so
    /// that its windows close although no data comes (its reader has just vouched that it
    /// has nothing new). Only then: an idle source does not follow the others' later jumps
    /// until it is vouched for again.
    pub fn follow(&mut self, source: usize) {
        let active = self
            .parts()
            .filter(|(_, p)| !p.idle)
            .filter_map(|(_, p)| p.watermark.current())
            .min();
        if let (Some(active), Some(Some(p))) = (active, self.parts.get_mut(source))
            && p.idle
        {
            p.watermark.advance_to(active);
        }
    }

    fn part(&mut self, source: usize) -> &mut Part {
        if source >= self.parts.len() {
            self.parts.resize_with(source + 1, || None);
        }
        let delay = self.delay;
        self.parts[source].get_or_insert_with(|| Part::new(delay))
    }

    /// The latest window `[start, end)` holding event time `t` (the only one when tumbling).
    pub fn window_of(&self, t: i64) -> (i64, i64) {
        let start = t.div_euclid(self.slide) * self.slide;
        (start, start.saturating_add(self.size))
    }

    /// Observes one decoded event from `source`, in arrival order.
    #[inline]
    pub fn observe(&mut self, source: usize, time: i64, key: &str, selected: bool) -> Verdict {
        let (size, slide) = (self.size, self.slide);
        let window = self.window_of(time);
        let part = self.part(source);
        part.idle = false;
        let watermark = part.watermark.current();
        part.watermark.observe(time);
        if !selected {
            return Verdict::Skipped;
        }
        part.count_open(size, slide, window, watermark, time, key)
    }

    /// Moves `source`'s watermark by an event at `time` without counting it; whether one
    /// of its windows was still open (it is on time). For events counted elsewhere.
    #[inline]
    pub fn judge(&mut self, source: usize, time: i64) -> bool {
        let (_, end) = self.window_of(time);
        let part = self.part(source);
        part.idle = false;
        let watermark = part.watermark.current();
        part.watermark.observe(time);
        watermark.is_none_or(|wm| end > wm)
    }

    /// Counts an event judged elsewhere in `source`'s windows that are still open; its
    /// time does not move the watermark (see [`Windows::advance_source`]).
    #[inline]
    pub fn count_forwarded(&mut self, source: usize, time: i64, key: &str) -> Verdict {
        let (size, slide) = (self.size, self.slide);
        let window = self.window_of(time);
        let part = self.part(source);
        let watermark = part.watermark.current();
        part.count_open(size, slide, window, watermark, time, key)
    }

    /// Moves `source`'s watermark to at least `to`.
    pub fn advance_source(&mut self, source: usize, to: i64) {
        self.part(source).watermark.advance_to(to);
    }

    /// Hands out every count changed since the last call (per source, in first-change order).
    pub fn drain_changed(&mut self, mut f: impl FnMut(WindowRow<'_>)) {
        let size = self.size;
        for (source, part) in self.parts.iter_mut().enumerate() {
            let Some(part) = part else { continue };
            let watermark = part.watermark.current();
            for (start, i) in part.changed.drain(..) {
                if let Some((key, c)) = part.open.get_mut(&start).and_then(|p| p.get_index_mut(i)) {
                    c.changed = false;
                    f(WindowRow {
                        start,
                        end: start.saturating_add(size),
                        key,
                        count: c.n,
                        source,
                        watermark,
                    });
                }
            }
        }
    }

    /// Hands out every count still held, oldest window first per source.
    pub fn for_each(&self, mut f: impl FnMut(WindowRow<'_>)) {
        for (source, part) in self.parts() {
            let watermark = part.watermark.current();
            for (&start, pane) in &part.open {
                for (key, c) in pane {
                    f(WindowRow {
                        start,
                        end: start.saturating_add(self.size),
                        key,
                        count: c.n,
                        source,
                        watermark,
                    });
                }
            }
        }
    }

    /// Closes the windows their source's watermark has passed (every window if `all`, at
    /// the end of the input), handing out their final counts and freeing them. Idle sources
    /// are first moved to the active sources' watermark.
    pub fn close(&mut self, all: bool, mut f: impl FnMut(WindowRow<'_>)) {
        let size = self.size;
        for (source, part) in self.parts.iter_mut().enumerate() {
            let Some(part) = part else { continue };
            let wm = if all { None } else { part.watermark.current() };
            while let Some(entry) = part.open.first_entry() {
                let start = *entry.key();
                let end = start.saturating_add(size);
                if !all && wm.is_none_or(|wm| end > wm) {
                    break;
                }
                for (key, c) in entry.remove() {
                    f(WindowRow {
                        start,
                        end,
                        key: &key,
                        count: c.n,
                        source,
                        watermark: wm,
                    });
                }
            }
            let open = &part.open;
            part.changed.retain(|(start, _)| open.contains_key(start));
        }
    }

    /// Moves every source's watermark past its open windows, so that the next close takes
    /// them all; events for them that come later are late.
    pub fn advance_past_open(&mut self) {
        let size = self.size;
        for part in self.parts.iter_mut().flatten() {
            if let Some((&last, _)) = part.open.last_key_value() {
                part.watermark.advance_to(last.saturating_add(size));
            }
        }
    }

    /// Open (window, key) pairs.
    pub fn open_pairs(&self) -> usize {
        self.parts()
            .map(|(_, p)| p.open.values().map(|p| p.len()).sum::<usize>())
            .sum()
    }

    /// Sources with state here.
    #[cfg(test)]
    pub fn sources(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts().map(|(i, _)| i)
    }

    /// Drops source `source`'s state (its partition went to another instance).
    pub fn drop_source(&mut self, source: usize) {
        if let Some(p) = self.parts.get_mut(source) {
            *p = None;
        }
    }
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
    fn snapshots_restore_counts_and_watermark_per_source() {
        let mut w = windows();
        w.observe(0, 1_000, "a", true);
        w.observe(1, 12_000, "b", true);
        w.observe(0, 2_000, "a", true);
        let snap = w.snapshot(0);
        let json = serde_json::to_string(&snap).unwrap();
        let mut r = windows();
        r.restore(3, serde_json::from_str(&json).unwrap());
        assert_eq!(r.snapshot(3), snap);
        assert_eq!(r.watermark_of(3), w.watermark_of(0));
        assert_eq!(r.sources().collect::<Vec<_>>(), [3]);
        // Counting goes on where it stopped.
        r.observe(3, 3_000, "a", true);
        assert_eq!(closed(&mut r, true)[0], (0, "a".into(), 3));
    }

    #[test]
    fn each_source_closes_its_windows_by_its_own_watermark() {
        let mut w = windows();
        w.observe(0, 1_000, "a", true);
        w.observe(1, 2_000, "b", true);
        // Source 0 reaches 20 s (watermark 10 s): its [0, 10 s) closes, source 1's does not.
        w.observe(0, 20_000, "c", false);
        assert_eq!(closed(&mut w, false), [(0, "a".to_owned(), 1)]);
        assert_eq!(w.watermark(), Some(-8_000), "the slowest source's");
        // An event of source 1 in that window is still on time there, late in source 0.
        assert_eq!(w.observe(1, 3_000, "b", true), Verdict::Counted);
        assert_eq!(w.observe(0, 3_000, "a", true), Verdict::Late);
        // Source 1 goes idle: it holds its place until vouched for, then is moved to the
        // active sources' watermark and closes.
        w.set_idle(1, true);
        assert!(closed(&mut w, false).is_empty());
        w.follow(1);
        assert_eq!(closed(&mut w, false), [(0, "b".to_owned(), 2)]);
        assert_eq!(w.watermark_of(1), Some(10_000));
        // A dropped source is forgotten, and holds nothing back.
        w.observe(1, 4_000, "b", true);
        w.drop_source(1);
        assert_eq!(w.open_pairs(), 0);
        assert_eq!(w.sources().collect::<Vec<_>>(), [0]);
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
        for (source, t, key) in [(0, 1_000, "a"), (1, 7_000, "b\"q"), (0, 12_000, "a")] {
            w.observe(source, t, key, true);
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
}
