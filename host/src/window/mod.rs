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
//! * With evidence on ([`Windows::with_evidence`]), each pair also keeps the input positions
//!   of the N smallest-positioned events counted in it: which N does not depend on the order
//!   they came in, so a pair rebuilt after a restart or re-read keeps the same ones. They are
//!   kept beside the counts, so that a rule without evidence pays nothing for it.

mod settings;
mod snapshot;
pub mod watermark;

pub use crate::source::Pos;
pub use settings::WindowSettings;
pub use snapshot::{Snapshot, SnapshotRef};

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use std::borrow::Cow;
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Positions of the smallest-positioned events counted in it, ascending (with evidence
    /// on; empty otherwise). Owned when the pair is closing: taking it copies nothing.
    pub evidence: Cow<'a, [Pos]>,
}

/// Evidence of each pair of a pane, by the pair's index in it.
type Proofs = Vec<Vec<Pos>>;

/// Keeps `pos` among the `keep` smallest positions of pair `index`.
fn keep_smallest(proofs: &mut Proofs, index: usize, pos: Pos, keep: usize) {
    if proofs.len() <= index {
        proofs.resize_with(index + 1, Vec::new);
    }
    let kept = &mut proofs[index];
    if kept.len() == keep && kept.last().is_some_and(|last| pos >= *last) {
        return;
    }
    if let Err(at) = kept.binary_search(&pos) {
        if kept.len() == keep {
            kept.pop();
        }
        // Room for all of them at once: growing by doubling would leave freed blocks behind.
        kept.reserve_exact(keep - kept.len());
        kept.insert(at, pos);
    }
}

/// The evidence of pair `index` of the pane at `start`.
fn proof_of(proofs: &BTreeMap<i64, Proofs>, start: i64, index: usize) -> &[Pos] {
    proofs
        .get(&start)
        .and_then(|p| p.get(index))
        .map_or(&[], Vec::as_slice)
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
    /// Evidence per open window, with evidence on.
    proofs: BTreeMap<i64, Proofs>,
    /// (window start, index in its pane) of counts changed since the last drain.
    changed: Vec<(i64, usize)>,
}

impl Part {
    fn new(delay: i64) -> Self {
        Part {
            watermark: Watermark::new(delay),
            idle: false,
            open: BTreeMap::new(),
            proofs: BTreeMap::new(),
            changed: Vec::new(),
        }
    }

    /// Counts an event at `time` in each of its windows still open under `watermark`
    /// (`latest` is the last window holding `time`); late if none is. `proof`: its position
    /// and how many to keep, with evidence on.
    #[inline]
    #[allow(clippy::too_many_arguments)] // the hot path: no struct to build per event
    fn count_open(
        &mut self,
        size: i64,
        slide: i64,
        latest: (i64, i64),
        watermark: Option<i64>,
        time: i64,
        key: &str,
        proof: Option<(Pos, usize)>,
    ) -> Verdict {
        // The latest window ends last: if it is closed, all of the event's windows are.
        if watermark.is_some_and(|wm| latest.1 <= wm) {
            return Verdict::Late;
        }
        let mut start = latest.0;
        while start.saturating_add(size) > time {
            if watermark.is_none_or(|wm| start.saturating_add(size) > wm) {
                self.count(start, key, proof);
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
    fn count(&mut self, start: i64, key: &str, proof: Option<(Pos, usize)>) {
        let pane = self.open.entry(start).or_default();
        let (index, first_change) = match pane.get_full_mut(key) {
            Some((i, _, c)) => {
                c.n += 1;
                (i, !std::mem::replace(&mut c.changed, true))
            }
            None => {
                let count = Count {
                    n: 1,
                    changed: true,
                };
                (pane.insert_full(key.into(), count).0, true)
            }
        };
        if let Some((pos, keep)) = proof {
            keep_smallest(self.proofs.entry(start).or_default(), index, pos, keep);
        }
        if first_change {
            self.changed.push((start, index));
        }
    }
}

/// The windows of one rule, per source.
pub struct Windows {
    size: i64,
    slide: i64,
    delay: i64,
    /// Evidence positions kept per pair (0: none).
    evidence: usize,
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
            evidence: 0,
            parts: Vec::new(),
        }
    }

    /// These windows keeping, per pair, the positions of the `n` smallest-positioned events
    /// counted in it (at most [`crate::config::MAX_EVIDENCE`]).
    pub fn with_evidence(mut self, n: usize) -> Self {
        self.evidence = n;
        self
    }

    /// Whether pairs keep evidence.
    pub fn keeps_evidence(&self) -> bool {
        self.evidence > 0
    }

    /// What counting an event at `pos` keeps of it: its position and how many to keep, with
    /// evidence on.
    #[inline]
    fn proof(&self, pos: Pos) -> Option<(Pos, usize)> {
        self.keeps_evidence().then_some((pos, self.evidence))
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

    /// Every source's watermark, once it has data: (source, watermark, idle).
    pub fn watermarks(&self) -> impl Iterator<Item = (usize, i64, bool)> + '_ {
        self.parts()
            .filter_map(|(i, p)| Some((i, p.watermark.current()?, p.idle)))
    }

    /// Moves idle source `source` to `to` — where the active sources stood (see
    /// [`Windows::watermarks`]) — so that its windows close although no data comes (its
    /// reader has just vouched that it has nothing new). Only then: an idle source does not
    /// follow the others' later jumps until it is vouched for again. Never backwards.
    pub fn follow(&mut self, source: usize, to: i64) {
        if let Some(Some(p)) = self.parts.get_mut(source)
            && p.idle
        {
            p.watermark.advance_to(to);
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

    /// Observes one decoded event from `source` at `pos`, in arrival order.
    #[inline]
    pub fn observe(
        &mut self,
        source: usize,
        time: i64,
        key: &str,
        selected: bool,
        pos: Pos,
    ) -> Verdict {
        let (size, slide) = (self.size, self.slide);
        let proof = self.proof(pos);
        let window = self.window_of(time);
        let part = self.part(source);
        part.idle = false;
        let watermark = part.watermark.current();
        part.watermark.observe(time);
        if !selected {
            return Verdict::Skipped;
        }
        part.count_open(size, slide, window, watermark, time, key, proof)
    }

    /// Moves `source`'s watermark by an event at `time` that the rule did not select: what
    /// [`Windows::observe`] does with it, with less to look up.
    #[inline]
    pub fn pass(&mut self, source: usize, time: i64) {
        let part = self.part(source);
        part.idle = false;
        part.watermark.observe(time);
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

    /// Counts an event judged elsewhere in `source`'s windows that are still open, at `pos`
    /// in its input; its time does not move the watermark (see [`Windows::advance_source`]).
    #[inline]
    pub fn count_forwarded(&mut self, source: usize, time: i64, key: &str, pos: Pos) -> Verdict {
        let (size, slide) = (self.size, self.slide);
        let proof = self.proof(pos);
        let window = self.window_of(time);
        let part = self.part(source);
        let watermark = part.watermark.current();
        part.count_open(size, slide, window, watermark, time, key, proof)
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
                        evidence: Cow::Borrowed(proof_of(&part.proofs, start, i)),
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
                for (i, (key, c)) in pane.iter().enumerate() {
                    f(WindowRow {
                        start,
                        end: start.saturating_add(self.size),
                        key,
                        count: c.n,
                        source,
                        watermark,
                        evidence: Cow::Borrowed(proof_of(&part.proofs, start, i)),
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
                let pane = entry.remove();
                let mut proofs = part.proofs.remove(&start).unwrap_or_default();
                for (i, (key, c)) in pane.into_iter().enumerate() {
                    f(WindowRow {
                        start,
                        end,
                        key: &key,
                        count: c.n,
                        source,
                        watermark: wm,
                        evidence: Cow::Owned(
                            proofs.get_mut(i).map(std::mem::take).unwrap_or_default(),
                        ),
                    });
                }
            }
            let open = &part.open;
            part.changed.retain(|(start, _)| open.contains_key(start));
        }
    }

    /// Moves source `source`'s watermark past its open windows, so that the next close takes
    /// them all; events for them that come later are late.
    pub fn advance_past_open(&mut self, source: usize) {
        if let Some(past) = self.past_open(source)
            && let Some(Some(part)) = self.parts.get_mut(source)
        {
            part.watermark.advance_to(past);
        }
    }

    /// The end of source `source`'s last open window: where its watermark must be for all
    /// of them to close.
    pub fn past_open(&self, source: usize) -> Option<i64> {
        let part = self.parts.get(source)?.as_ref()?;
        let (&last, _) = part.open.last_key_value()?;
        Some(last.saturating_add(self.size))
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
mod tests;
