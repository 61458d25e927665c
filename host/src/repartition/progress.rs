//! What an internal partition knows of each input partition, and the watermark that follows.
//!
//! An internal partition's watermark is the smallest of its input partitions' (each from its
//! latest marker). An idle input partition stands at a *floor* that only its reader's
//! markers raise: each marker in which the broker vouched for it anew lifts it to where the
//! other input partitions stood [`VOUCH_EVERY`](crate::source::idle::VOUCH_EVERY) before (as heard here), not to where they
//! stand — records produced to several partitions in event-time order do not land at once,
//! and data landing in the idle partition up to a second after the others' must be on time
//! (as for locally counted rules, `pipeline/lifecycle.rs`). The clock is passed in.

use crate::source::idle::Stood;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::MARKER_EVERY;

/// What an internal partition knows of one input partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Upstream {
    /// The next input offset expected: records below it were seen (replays are dropped).
    pub next: i64,
    /// Its watermark, from its latest marker.
    pub watermark: Option<i64>,
    /// Idle as of its latest marker.
    pub idle: bool,
    /// While idle: the watermark it stands at, taken from the other input partitions each
    /// time its reader said it is idle. Only its reader's markers raise it, so a partition
    /// whose reader is gone (killed, cut off, being handed over) is *unowned*: it holds the
    /// windows back at the last point its reader vouched for, instead of letting them close
    /// while its data goes unread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<i64>,
    /// When its last record (marker or event) came here; not checkpointed.
    #[serde(skip)]
    pub heard: Option<Instant>,
    /// Where its markers put its watermark lately, by when they were heard; not
    /// checkpointed (a restored partition lets idle ones follow a second later).
    #[serde(skip)]
    stood: Stood,
}

impl Upstream {
    /// The watermark it holds the internal partition at.
    fn effective(&self) -> Option<i64> {
        if self.idle {
            self.watermark.max(self.floor)
        } else {
            self.watermark
        }
    }

    /// What an idle partition beside it may follow at `now`: where it stood [`VOUCH_EVERY`](crate::source::idle::VOUCH_EVERY)
    /// before if it is active (`None` while that is not known), its floor if it is idle.
    fn lagged(&self, now: Instant) -> Option<i64> {
        if self.idle {
            return self.effective();
        }
        self.stood.before(now)
    }
}

/// What an input partition's marker says: its watermark (none before its first event),
/// whether it is idle, and the next offset it will read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Its watermark, epoch ms.
    pub watermark: Option<i64>,
    /// Its next offset.
    pub next: i64,
    /// Idle: read to the end, nothing new for a while.
    pub idle: bool,
    /// Idle, and vouched for by the broker just now: it may stand where the others stood a
    /// vouching period before this marker.
    pub vouched: bool,
    /// Vouched for just now as read to its end with nothing new for `quiet_close`: it may
    /// stand past every window open here as of this marker.
    pub quiet: bool,
}

/// Per internal partition, the input partitions' progress; the internal partition's
/// watermark follows from it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// By input partition name.
    pub upstream: BTreeMap<String, Upstream>,
}

impl Progress {
    /// Whether an event at input `offset` of `from` is new here (and notes it).
    pub(crate) fn accept_event(&mut self, from: &str, offset: i64) -> bool {
        let u = self.entry(from);
        if offset < u.next {
            return false;
        }
        u.next = offset + 1;
        u.idle = false;
        u.floor = None;
        u.heard = Some(Instant::now());
        true
    }

    /// Applies a marker heard at `now` unless it is older than what was seen from `from`;
    /// `inputs` are all input partitions (a vouched idle marker raises its floor to where
    /// the others stood a vouching period before); `past_open` is where the watermark must
    /// be for every window open here to close (a quiet marker raises its floor to it).
    pub(crate) fn apply_marker(
        &mut self,
        from: &str,
        marker: Marker,
        inputs: &[String],
        past_open: Option<i64>,
        now: Instant,
    ) {
        let Marker {
            watermark,
            next,
            idle,
            vouched,
            quiet,
        } = marker;
        if next < self.entry(from).next {
            return;
        }
        let others = if idle && vouched {
            self.lagged_over(inputs, from, now)
        } else {
            None
        };
        let past = if quiet { past_open } else { None };
        let u = self.entry(from);
        u.next = next;
        // Quiet stands where idle would: only its reader's markers move it.
        u.idle = idle || quiet;
        u.heard = Some(now);
        if let Some(w) = watermark {
            let w = u.watermark.map_or(w, |x| x.max(w));
            u.watermark = Some(w);
            u.stood.note(now, w);
        }
        u.floor = if u.idle {
            u.floor.max(others).max(past)
        } else {
            None
        };
    }

    fn entry(&mut self, from: &str) -> &mut Upstream {
        if !self.upstream.contains_key(from) {
            self.upstream.insert(from.to_owned(), Upstream::default());
        }
        self.upstream.get_mut(from).expect("inserted above")
    }

    /// The watermark over `inputs` (every input partition): the smallest of their
    /// watermarks, an idle one counting at its floor; none while one of them has none.
    pub(crate) fn watermark(&self, inputs: &[String]) -> Option<i64> {
        let mut min: Option<i64> = None;
        for name in inputs {
            let w = self.upstream.get(name)?.effective()?;
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        min
    }

    /// What input `from`, vouched idle at `now`, may follow: the smallest of where the other
    /// inputs stood ([`Upstream::lagged`]); none while one of them is not known.
    fn lagged_over(&self, inputs: &[String], from: &str, now: Instant) -> Option<i64> {
        let mut min: Option<i64> = None;
        for name in inputs.iter().filter(|n| *n != from) {
            let w = self.upstream.get(name)?.lagged(now)?;
            min = Some(min.map_or(w, |m| m.min(w)));
        }
        min
    }

    /// The input partition holding this internal partition's watermark back while nothing
    /// has come from it for longer than a few markers' time — its reader is gone, cut off or
    /// being replaced — and for how long.
    pub(crate) fn held_by<'a>(&self, inputs: &'a [String]) -> Option<(&'a str, Duration)> {
        let (name, u) = inputs
            .iter()
            .filter_map(|n| Some((n.as_str(), self.upstream.get(n)?)))
            .min_by_key(|(_, u)| u.effective())?;
        let silent = u.heard?.elapsed();
        (silent > 3 * MARKER_EVERY).then_some((name, silent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A marker; idle ones vouched for.
    fn marker(watermark: Option<i64>, next: i64, idle: bool) -> Marker {
        Marker {
            watermark,
            next,
            idle,
            vouched: idle,
            quiet: false,
        }
    }

    /// `marker` from input `from`, heard `at`, with no window open here.
    fn hear(p: &mut Progress, from: &str, marker: Marker, at: Instant) {
        let inputs = ["logs/0".to_owned(), "logs/1".to_owned()];
        p.apply_marker(from, marker, &inputs, None, at);
    }

    /// A clock: `at(s)` is `s` seconds after the start.
    fn clock() -> impl Fn(f64) -> Instant {
        let start = Instant::now();
        move |s| start + Duration::from_secs_f64(s)
    }

    #[test]
    fn replays_are_dropped_and_the_slowest_active_input_sets_the_watermark() {
        let (inputs, at) = (["logs/0".to_owned(), "logs/1".to_owned()], clock());
        let mut p = Progress::default();
        assert!(p.accept_event("logs/0", 10));
        assert!(!p.accept_event("logs/0", 10), "a replayed event");
        assert!(p.accept_event("logs/0", 11));
        hear(&mut p, "logs/0", marker(Some(500), 12, false), at(0.0));
        assert_eq!(p.watermark(&inputs), None, "logs/1 has not reported");
        hear(&mut p, "logs/1", marker(Some(300), 3, false), at(0.0));
        assert_eq!(p.watermark(&inputs), Some(300));
        // An old marker (a replay) changes nothing; an idle input stops holding back.
        hear(&mut p, "logs/1", marker(Some(100), 1, true), at(1.0));
        assert_eq!(p.watermark(&inputs), Some(300));
        hear(&mut p, "logs/1", marker(Some(300), 3, true), at(1.0));
        assert_eq!(p.watermark(&inputs), Some(500));
        // Data wakes it up.
        assert!(p.accept_event("logs/1", 3));
        assert_eq!(p.watermark(&inputs), Some(300));
    }

    #[test]
    fn an_idle_input_whose_reader_is_gone_holds_the_windows_where_it_was_vouched_for() {
        let (inputs, at) = (["logs/0".to_owned(), "logs/1".to_owned()], clock());
        let mut p = Progress::default();
        hear(&mut p, "logs/0", marker(Some(500), 10, false), at(0.0));
        hear(&mut p, "logs/1", marker(Some(300), 3, true), at(1.0));
        assert_eq!(
            p.watermark(&inputs),
            Some(500),
            "idle where the other stood"
        );
        // logs/0 moves on; logs/1's reader says nothing more (it died): held at 500.
        hear(&mut p, "logs/0", marker(Some(900), 20, false), at(1.5));
        assert_eq!(p.watermark(&inputs), Some(500));
        // Idle markers that do not vouch anew hold it where it stands.
        let holding = Marker {
            vouched: false,
            ..marker(Some(300), 3, true)
        };
        hear(&mut p, "logs/1", holding, at(3.0));
        assert_eq!(p.watermark(&inputs), Some(500));
        // A live idle reader vouches again and follows.
        hear(&mut p, "logs/1", marker(Some(300), 3, true), at(3.0));
        assert_eq!(p.watermark(&inputs), Some(900));
        // All idle: they stand at the fastest.
        hear(&mut p, "logs/0", marker(Some(900), 20, true), at(4.0));
        assert_eq!(p.watermark(&inputs), Some(900));
        // Whose silence holds the windows: none while markers come.
        assert_eq!(p.held_by(&inputs), None);
        p.upstream.get_mut("logs/1").unwrap().heard =
            Instant::now().checked_sub(Duration::from_secs(60));
        p.upstream.get_mut("logs/1").unwrap().floor = Some(400);
        let (name, silent) = p.held_by(&inputs).unwrap();
        assert!(name == "logs/1" && silent >= Duration::from_secs(60));
    }

    #[test]
    fn data_landing_in_an_idle_input_just_after_the_others_is_on_time() {
        let (inputs, at) = (["logs/0".to_owned(), "logs/1".to_owned()], clock());
        let mut p = Progress::default();
        hear(&mut p, "logs/0", marker(Some(1_000), 10, false), at(0.0));
        hear(&mut p, "logs/1", marker(Some(1_000), 5, false), at(0.0));
        // logs/0's reader reads a minute ahead while logs/1's records of that minute have
        // not landed yet, and the broker vouches logs/1 idle in the same moment: it stands
        // where logs/0 stood a second before, not a minute ahead.
        hear(&mut p, "logs/0", marker(Some(61_000), 90, false), at(5.0));
        hear(&mut p, "logs/1", marker(Some(1_000), 5, true), at(5.0));
        assert_eq!(
            p.watermark(&inputs),
            Some(1_000),
            "its records are still on time"
        );
        // Still idle a second later: now it follows.
        hear(&mut p, "logs/1", marker(Some(1_000), 5, true), at(6.0));
        assert_eq!(p.watermark(&inputs), Some(61_000));
    }

    #[test]
    fn quiet_closes_the_windows_only_once_every_input_vouched_for_it() {
        let (inputs, at) = (["logs/0".to_owned(), "logs/1".to_owned()], clock());
        let quiet = |watermark, next| Marker {
            quiet: true,
            ..marker(Some(watermark), next, false)
        };
        let mut p = Progress::default();
        hear(&mut p, "logs/0", marker(Some(500), 10, false), at(0.0));
        hear(&mut p, "logs/1", marker(Some(300), 3, false), at(0.0));
        // Windows open here up to 2000. logs/0 is quiet; logs/1's reader says nothing (it
        // died, or has not noticed yet): held at logs/1's watermark.
        p.apply_marker("logs/0", quiet(500, 10), &inputs, Some(2000), at(1.0));
        assert_eq!(p.watermark(&inputs), Some(300));
        // Its reader vouches for it too: every window open then may close.
        p.apply_marker("logs/1", quiet(300, 3), &inputs, Some(2000), at(1.0));
        assert_eq!(p.watermark(&inputs), Some(2000));
        // A window opened later (by events logs/1 forwards) waits for logs/0 to vouch again.
        assert!(p.accept_event("logs/1", 3));
        p.apply_marker("logs/1", quiet(2500, 4), &inputs, Some(3000), at(2.0));
        assert_eq!(p.watermark(&inputs), Some(2000));
        p.apply_marker("logs/0", quiet(500, 10), &inputs, Some(3000), at(2.0));
        assert_eq!(p.watermark(&inputs), Some(3000));
    }
}
