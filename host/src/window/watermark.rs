//! The watermark of one input source (a Kafka partition; a file is one): the largest event
//! time seen in it minus the delay. It never goes back.
//!
//! Each partition's windows close by that partition's own watermark, as Kafka Streams
//! judges grace per task: what a partition's windows hold then depends only on that
//! partition's records, never on how partitions interleave or which instance reads them, so
//! a partition restored on another instance gives the same results. An idle partition is
//! moved along by its instance's active partitions (see [`super::Windows::set_idle`]).

use serde::{Deserialize, Serialize};

/// Event-time progress of one source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Watermark {
    delay: i64,
    /// Largest event time seen.
    max: Option<i64>,
    current: Option<i64>,
}

impl Watermark {
    /// A watermark trailing event time by `delay_ms`.
    pub fn new(delay_ms: i64) -> Self {
        Watermark {
            delay: delay_ms,
            max: None,
            current: None,
        }
    }

    /// The watermark in epoch ms, once it exists.
    #[inline]
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// Records an event time.
    #[inline]
    pub fn observe(&mut self, time: i64) {
        if self.max.is_some_and(|m| m >= time) {
            return;
        }
        self.max = Some(time);
        self.advance_to(time.saturating_sub(self.delay));
    }

    /// Moves the watermark to at least `to`, whatever the events say.
    pub fn advance_to(&mut self, to: i64) {
        self.current = Some(self.current.map_or(to, |c| c.max(to)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_the_largest_event_time_and_never_goes_back() {
        let mut w = Watermark::new(10);
        assert_eq!(w.current(), None);
        w.observe(100);
        assert_eq!(w.current(), Some(90));
        w.observe(50);
        assert_eq!(w.current(), Some(90));
        w.advance_to(200);
        w.observe(150);
        assert_eq!(w.current(), Some(200), "advanced past the data: stays");
        w.observe(250);
        assert_eq!(w.current(), Some(240));
    }
}
