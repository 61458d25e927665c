//! The watermark of one rule over several input sources (Kafka partitions; a file is one).
//!
//! Each source's own watermark is the largest event time seen in it minus the delay. The
//! rule's watermark is the minimum over sources that are not idle, and never goes back:
//! a slow partition holds it back, an idle one does not, and one that wakes up with old
//! data does not rewind it. A known source that has seen no data yet holds it back too,
//! until it is idle.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Source {
    /// Largest event time seen.
    max: Option<i64>,
    /// No data for a while: left out of the minimum.
    #[serde(skip)]
    idle: bool,
}

/// Per-source event-time progress and the watermark derived from it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Watermark {
    delay: i64,
    sources: Vec<Source>,
    current: Option<i64>,
}

impl Watermark {
    /// A watermark trailing event time by `delay_ms`.
    pub fn new(delay_ms: i64) -> Self {
        Watermark {
            delay: delay_ms,
            sources: Vec::new(),
            current: None,
        }
    }

    /// The watermark in epoch ms, once it exists.
    #[inline]
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// One source's own watermark: the largest event time it showed minus the delay.
    pub fn of_source(&self, source: usize) -> Option<i64> {
        Some(self.sources.get(source)?.max?.saturating_sub(self.delay))
    }

    /// Whether a source is idle.
    #[cfg(test)]
    pub fn is_idle(&self, source: usize) -> bool {
        self.sources.get(source).is_some_and(|s| s.idle)
    }

    fn source(&mut self, source: usize) -> &mut Source {
        if source >= self.sources.len() {
            self.sources.resize_with(source + 1, Source::default);
        }
        &mut self.sources[source]
    }

    /// Records an event time seen in `source`.
    #[inline]
    pub fn observe(&mut self, source: usize, time: i64) {
        let s = self.source(source);
        let was_idle = std::mem::replace(&mut s.idle, false);
        if s.max.is_some_and(|m| m >= time) && !was_idle {
            return;
        }
        s.max = Some(s.max.map_or(time, |m| m.max(time)));
        self.advance();
    }

    /// Marks a source idle (its data stopped for a while) or not.
    pub fn set_idle(&mut self, source: usize, idle: bool) {
        if self.source(source).idle != idle {
            self.sources[source].idle = idle;
            if idle {
                self.advance();
            }
        }
    }

    /// Moves the watermark to at least `to`, whatever the sources say.
    pub fn advance_to(&mut self, to: i64) {
        self.current = Some(self.current.map_or(to, |c| c.max(to)));
    }

    /// Recomputes the minimum over active sources; never moves back.
    fn advance(&mut self) {
        let mut min: Option<i64> = None;
        for s in self.sources.iter().filter(|s| !s.idle) {
            match s.max {
                // An active source that has seen nothing holds everything back.
                None => return,
                Some(m) => min = Some(min.map_or(m, |x| x.min(m))),
            }
        }
        if let Some(m) = min {
            let wm = m.saturating_sub(self.delay);
            self.current = Some(self.current.map_or(wm, |c| c.max(wm)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_active_source_sets_the_watermark() {
        let mut w = Watermark::new(10);
        w.observe(0, 100);
        assert_eq!(w.current(), Some(90));
        w.observe(1, 50);
        // A second source joins behind: the watermark does not go back.
        assert_eq!(w.current(), Some(90));
        w.observe(1, 150);
        w.observe(0, 120);
        assert_eq!(w.current(), Some(110));
    }

    #[test]
    fn idle_sources_stop_holding_the_watermark_back_and_rejoin() {
        let mut w = Watermark::new(0);
        w.observe(0, 100);
        w.observe(1, 10);
        assert_eq!(w.current(), Some(100), "a late joiner does not rewind it");
        let mut w = Watermark::new(0);
        w.set_idle(1, false); // known source, no data yet: holds back
        w.observe(0, 100);
        assert_eq!(w.current(), None);
        w.set_idle(1, true);
        assert_eq!(w.current(), Some(100));
        w.observe(0, 200);
        assert_eq!(w.current(), Some(200));
        // Source 1 wakes up with old data: counted as active again, but no rewind.
        w.observe(1, 150);
        assert!(!w.is_idle(1));
        assert_eq!(w.current(), Some(200));
        w.observe(0, 300);
        assert_eq!(
            w.current(),
            Some(200),
            "held back by source 1 at 150, but never rewound"
        );
        w.observe(1, 260);
        assert_eq!(w.current(), Some(260));
    }
}
