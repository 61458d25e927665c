//! When a partition counts as idle, vouched and quiet: a pure policy over what its reader
//! knows of it, with the clock passed in (`now`), so that every case of the README's
//! guarantees is a unit test that moves a fake clock instead of sleeping.
//!
//! The invariant: **idleness is declared, never inferred from silence**. A partition is idle
//! only when its reader has it assigned, the broker said (when last asked) that it was read to
//! its end, no newer data is known since (the cached end has not moved past what was read),
//! and nothing came for `idle_timeout` since its last message or since it was assigned. It is
//! *vouched* only in the round the broker confirmed that just now — only then may it be moved
//! along with the other partitions — and *quiet* only when vouched and nothing came for
//! `quiet_close`. The reader performs the asking ([`Watch::due`] says when); this module only
//! decides.

use super::Reading;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often an idle partition is vouched for again (asking the broker whether it still
/// has nothing new): how often it may be moved along with the others.
pub(crate) const VOUCH_EVERY: Duration = Duration::from_secs(1);

/// When a partition with nothing new counts as idle, and as quiet (`[watermark]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quiet {
    /// `idle_timeout`.
    pub(crate) idle: Duration,
    /// `quiet_close`, if set.
    pub(crate) close: Option<Duration>,
}

impl Quiet {
    /// After how long with nothing new the broker is first asked: the shorter of the two
    /// timeouts (each decides for itself from there).
    fn first_ask(&self) -> Duration {
        self.close.map_or(self.idle, |c| c.min(self.idle))
    }
}

/// What a reader knows of one partition's activity, and of what the broker last said of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    /// When its last message (or its assignment) came.
    last_seen: Instant,
    /// The broker said, when last asked, that it was read to its end, and nothing came since.
    at_end: bool,
    /// When the broker was last asked for its end while nothing came.
    asked: Option<Instant>,
}

impl Watch {
    /// A partition first seen (or assigned) at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Watch {
            last_seen: now,
            at_end: false,
            asked: None,
        }
    }

    /// A message came, or it was (re)assigned, at `now`: whatever the broker said is stale.
    pub(crate) fn seen(&mut self, now: Instant) {
        *self = Watch::new(now);
    }

    /// How long nothing came, as of `now`.
    pub(crate) fn quiet_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen)
    }

    /// Whether the broker should be asked for this partition's end at `now`: assigned,
    /// nothing new for the shorter timeout, and not asked for a while (a second while it is
    /// at its end, to vouch again; the timeout while it was not, so that a lagging partition
    /// does not cost a request a second).
    pub(crate) fn due(&self, assigned: bool, quiet: Quiet, now: Instant) -> bool {
        let timeout = quiet.first_ask();
        if !assigned || self.quiet_for(now) < timeout {
            return false;
        }
        let every = if self.at_end { VOUCH_EVERY } else { timeout };
        self.asked
            .is_none_or(|at| now.saturating_duration_since(at) >= every)
    }

    /// The broker answered at `now`: `at_end`, whether it was read to its end (an error or
    /// no answer is `false`: silence is not an end).
    pub(crate) fn answered(&mut self, at_end: bool, now: Instant) {
        self.asked = Some(now);
        self.at_end = at_end;
    }

    /// What the reader says of the partition at `now`. `assigned`: read here now;
    /// `lag`: unread messages by the cached end of the last fetch answer, if known;
    /// `answered`: the broker confirmed its end this round.
    pub(crate) fn reading(
        &self,
        assigned: bool,
        lag: Option<i64>,
        answered: bool,
        quiet: Quiet,
        now: Instant,
    ) -> Reading {
        let quiet_for = self.quiet_for(now);
        if !assigned || quiet_for < quiet.first_ask() {
            return Reading {
                assigned,
                ..Reading::default()
            };
        }
        // Data that landed since the broker was asked ends idleness before it is read.
        let at_end = self.at_end && lag.is_none_or(|l| l == 0);
        let idle = at_end && quiet_for >= quiet.idle;
        let vouched = answered && self.at_end;
        Reading {
            assigned,
            idle,
            vouched: vouched && idle,
            quiet: vouched && at_end && quiet.close.is_some_and(|c| quiet_for >= c),
        }
    }
}

/// Where a watermark stood lately: (when, the watermark) as it moved, oldest first, pruned
/// to the newest sample at least [`VOUCH_EVERY`] old (the clock passed in). A vouched idle
/// partition follows where the others stood that long before, not where they stand: records
/// produced in event-time order to several partitions do not land at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Stood(VecDeque<(Instant, i64)>);

impl Stood {
    /// Notes that the watermark is `watermark` at `now`.
    pub(crate) fn note(&mut self, now: Instant, watermark: i64) {
        let old_enough = |at: Instant| now.saturating_duration_since(at) >= VOUCH_EVERY;
        if self.0.back().is_none_or(|&(_, last)| last != watermark) {
            self.0.push_back((now, watermark));
        }
        while self.0.get(1).is_some_and(|&(at, _)| old_enough(at)) {
            self.0.pop_front();
        }
    }

    /// Where it stood [`VOUCH_EVERY`] before `now`; `None` while that is not known.
    pub(crate) fn before(&self, now: Instant) -> Option<i64> {
        let old_enough =
            |&&(at, _): &&(Instant, i64)| now.saturating_duration_since(at) >= VOUCH_EVERY;
        self.0
            .iter()
            .rev()
            .find(old_enough)
            .map(|&(_, stood)| stood)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);
    const QUIET: Quiet = Quiet {
        idle: IDLE,
        close: None,
    };

    /// A fake clock: an origin and the time moved since.
    struct Clock(Instant, Duration);

    impl Clock {
        fn new() -> Self {
            Clock(Instant::now(), Duration::ZERO)
        }
        fn advance(&mut self, by: Duration) -> Instant {
            self.1 += by;
            self.now()
        }
        fn now(&self) -> Instant {
            self.0 + self.1
        }
    }

    /// One round of a reader: asks the broker if due (it answers `at_end`), then reads.
    fn round(w: &mut Watch, at_end: bool, lag: Option<i64>, quiet: Quiet, now: Instant) -> Reading {
        let asked = w.due(true, quiet, now);
        if asked {
            w.answered(at_end, now);
        }
        w.reading(true, lag, asked, quiet, now)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_partition_not_read_here_is_never_idle() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        let now = clock.advance(secs(3600));
        assert!(
            !w.due(false, QUIET, now),
            "nobody asks for a partition not read here"
        );
        w.answered(true, now);
        let r = w.reading(false, Some(0), true, QUIET, now);
        assert!(!r.assigned && !r.idle && !r.vouched && !r.quiet);
    }

    #[test]
    fn silence_alone_is_not_idleness() {
        let mut clock = Clock::new();
        let w = Watch::new(clock.now());
        let now = clock.advance(secs(3600));
        // Nothing came for an hour, but the broker was never asked (or never answered).
        let r = w.reading(true, Some(0), false, QUIET, now);
        assert!(r.assigned && !r.idle && !r.vouched);
    }

    #[test]
    fn idle_once_the_broker_confirms_the_end_after_the_timeout() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        let before = clock.advance(IDLE - secs(1));
        assert!(!w.due(true, QUIET, before), "not asked before the timeout");
        assert!(!round(&mut w, true, Some(0), QUIET, before).idle);
        let now = clock.advance(secs(1));
        let r = round(&mut w, true, Some(0), QUIET, now);
        assert!(r.idle && r.vouched, "{r:?}");
        assert!(!r.quiet, "quiet_close is off");
    }

    #[test]
    fn an_idle_partition_is_vouched_about_once_a_second_and_idle_in_between() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        assert!(round(&mut w, true, Some(0), QUIET, clock.advance(IDLE)).vouched);
        let r = round(&mut w, true, Some(0), QUIET, clock.advance(secs(0)));
        assert!(
            r.idle && !r.vouched,
            "not vouched again in the same second: {r:?}"
        );
        let r = round(&mut w, true, Some(0), QUIET, clock.advance(VOUCH_EVERY / 2));
        assert!(r.idle && !r.vouched);
        let r = round(&mut w, true, Some(0), QUIET, clock.advance(VOUCH_EVERY / 2));
        assert!(r.idle && r.vouched, "vouched again a second later: {r:?}");
    }

    #[test]
    fn a_partition_behind_its_end_is_not_idle_and_asked_again_only_after_the_timeout() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        // Its consumer is stuck (a slow fetch): the broker's end is past what was read.
        let r = round(&mut w, false, Some(5), QUIET, clock.advance(IDLE));
        assert!(!r.idle && !r.vouched);
        assert!(!w.due(true, QUIET, clock.advance(VOUCH_EVERY)));
        assert!(w.due(true, QUIET, clock.advance(IDLE)));
    }

    #[test]
    fn data_landing_ends_idleness_before_it_is_read() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        assert!(round(&mut w, true, Some(0), QUIET, clock.advance(IDLE)).idle);
        // A fetch answer's end moved past what was read: not idle, even between vouchings.
        let r = round(&mut w, true, Some(3), QUIET, clock.advance(ms(100)));
        assert!(!r.idle && !r.vouched, "{r:?}");
        // Nor when the broker is asked again and its cached end still says data waits.
        let r = round(&mut w, true, Some(3), QUIET, clock.advance(VOUCH_EVERY));
        assert!(!r.idle && !r.vouched, "{r:?}");
    }

    #[test]
    fn a_message_or_a_new_assignment_starts_the_timeout_again() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        assert!(round(&mut w, true, Some(0), QUIET, clock.advance(IDLE)).idle);
        w.seen(clock.advance(secs(1)));
        let r = round(&mut w, true, Some(0), QUIET, clock.advance(IDLE - secs(1)));
        assert!(
            !r.idle,
            "the broker's old answer is stale after a message: {r:?}"
        );
        assert!(round(&mut w, true, Some(0), QUIET, clock.advance(secs(1))).idle);
    }

    #[test]
    fn an_unknown_lag_does_not_stop_a_confirmed_end() {
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        // No fetch answer cached yet (just assigned): the broker's own answer decides.
        let r = round(&mut w, true, None, QUIET, clock.advance(IDLE));
        assert!(r.idle && r.vouched, "{r:?}");
    }

    #[test]
    fn quiet_needs_the_broker_just_now_and_quiet_close_of_nothing() {
        let quiet = Quiet {
            idle: IDLE,
            close: Some(secs(5)),
        };
        let mut clock = Clock::new();
        let mut w = Watch::new(clock.now());
        // The broker is first asked after the shorter timeout, quiet_close.
        let r = round(&mut w, true, Some(0), quiet, clock.advance(secs(5)));
        assert!(r.quiet && !r.idle && !r.vouched, "quiet before idle: {r:?}");
        let r = round(&mut w, true, Some(0), quiet, clock.advance(ms(500)));
        assert!(!r.quiet, "not vouched this round, so not quiet: {r:?}");
        let r = round(&mut w, true, Some(0), quiet, clock.advance(ms(500)));
        assert!(r.quiet, "vouched again a second later: {r:?}");
        // The broker answers that it is not at its end (or does not answer): not quiet.
        let r = round(&mut w, false, Some(0), quiet, clock.advance(VOUCH_EVERY));
        assert!(!r.quiet && !r.idle, "{r:?}");
    }

    #[test]
    fn a_clock_that_goes_back_does_not_panic_or_declare_idleness() {
        let clock = Clock::new();
        let w = Watch::new(clock.now() + secs(10));
        assert_eq!(w.quiet_for(clock.now()), Duration::ZERO);
        assert!(!w.due(true, QUIET, clock.now()));
    }
}
