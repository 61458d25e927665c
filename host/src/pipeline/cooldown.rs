//! `[output] cooldown`: once a key alerts, its alerts for windows that start before the end
//! of that window plus the cooldown are suppressed (counted, not emitted). A row about the
//! same window again (update and complete modes re-emit windows) is not a new alert and
//! passes. What each key is cooling down from is per source, so that it is checkpointed,
//! restored and dropped with the source's windows.

use std::collections::HashMap;
use std::time::Duration;

/// The window of a key's last alert, and the source whose windows it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LastAlert {
    start: i64,
    end: i64,
    source: usize,
}

/// One rule's cooldown state.
#[derive(Debug, Default)]
pub(crate) struct Cooldown {
    /// The cooldown in ms; none when the rule has none.
    ms: Option<i64>,
    /// Per key in cooldown.
    last: HashMap<String, LastAlert>,
}

impl Cooldown {
    /// A rule's cooldown state, empty.
    pub(crate) fn new(cooldown: Option<Duration>) -> Self {
        Cooldown {
            ms: cooldown.map(|d| d.as_millis() as i64),
            last: HashMap::new(),
        }
    }

    /// Whether an alert of `key` for window `[start, end)` of `source` goes out; if it
    /// does, the key cools down from it.
    pub(crate) fn admit(&mut self, key: &str, start: i64, end: i64, source: usize) -> bool {
        let Some(ms) = self.ms else { return true };
        match self.last.get(key) {
            Some(l) if l.start != start && start >= l.start && start < l.end + ms => false,
            _ => {
                let last = LastAlert { start, end, source };
                self.last.insert(key.to_owned(), last);
                true
            }
        }
    }

    /// Forgets the keys whose cooldown ended before their source's watermark: they can
    /// suppress nothing more.
    pub(crate) fn expire(&mut self, watermark_of: impl Fn(usize) -> Option<i64>) {
        if let Some(ms) = self.ms {
            self.last
                .retain(|_, l| watermark_of(l.source).is_none_or(|wm| l.end + ms > wm));
        }
    }

    /// The keys in cooldown from `source`'s windows: (key, window start, window end).
    pub(crate) fn of_source(&self, source: usize) -> Vec<(&str, i64, i64)> {
        self.last
            .iter()
            .filter(|(_, l)| l.source == source)
            .map(|(k, l)| (k.as_str(), l.start, l.end))
            .collect()
    }

    /// Replaces `source`'s keys with `entries` (from its checkpoint).
    pub(crate) fn restore(&mut self, source: usize, entries: Vec<(String, i64, i64)>) {
        self.drop_source(source);
        for (key, start, end) in entries {
            self.last.insert(key, LastAlert { start, end, source });
        }
    }

    /// Forgets `source`'s keys.
    pub(crate) fn drop_source(&mut self, source: usize) {
        self.last.retain(|_, l| l.source != source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 10_000;

    #[test]
    fn a_key_is_quiet_until_its_cooldown_ends_but_its_window_may_be_updated() {
        let mut c = Cooldown::new(Some(Duration::from_secs(20)));
        assert!(c.admit("u1", 0, S, 0));
        assert!(
            c.admit("u1", 0, S, 0),
            "the same window again (update mode)"
        );
        assert!(!c.admit("u1", S, 2 * S, 0), "within the cooldown");
        assert!(
            !c.admit("u1", 2 * S, 3 * S, 0),
            "still within it (ends at 30 s)"
        );
        assert!(c.admit("u1", 3 * S, 4 * S, 0), "after it");
        assert!(c.admit("u2", S, 2 * S, 0), "other keys are not affected");
        // A late-closing earlier window is not suppressed by a later one.
        assert!(c.admit("u2", 0, S, 0));
    }

    #[test]
    fn without_a_cooldown_everything_passes_and_nothing_is_kept() {
        let mut c = Cooldown::new(None);
        assert!(c.admit("u1", 0, S, 0) && c.admit("u1", S, 2 * S, 0));
        assert!(c.of_source(0).is_empty());
    }

    #[test]
    fn state_is_per_source_and_expires_behind_the_watermark() {
        let mut c = Cooldown::new(Some(Duration::from_secs(5)));
        assert!(c.admit("a", 0, S, 0));
        assert!(c.admit("b", 0, S, 1));
        assert_eq!(c.of_source(1), vec![("b", 0, S)]);
        c.expire(|source| Some(if source == 0 { S + 5_000 } else { S }));
        assert!(c.of_source(0).is_empty(), "ended at 15 s, watermark there");
        assert_eq!(c.of_source(1).len(), 1);
        c.restore(1, vec![("c".into(), S, 2 * S)]);
        assert_eq!(c.of_source(1), vec![("c", S, 2 * S)]);
        assert!(!c.admit("c", 2 * S, 3 * S, 1), "restored state suppresses");
        c.drop_source(1);
        assert!(c.of_source(1).is_empty());
    }
}
