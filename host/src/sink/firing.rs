//! The alerts an Alertmanager sink has sent that are still firing (their `endsAt` ahead of
//! the wall clock), sent again every `resend_interval` as Prometheus does: Alertmanager keeps
//! alerts in memory only, so one that restarted, or a new member of an HA pair, learns them
//! again. At most [`MAX_FIRING`] are kept, those that end soonest given up first.

use super::deliver::Item;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most alerts kept for sending again.
pub(super) const MAX_FIRING: usize = 10_000;

/// Alerts sent and still firing, by id: when each ends (epoch ms) and its body.
pub(super) struct Firing {
    alerts: BTreeMap<String, (i64, Vec<u8>)>,
    every: Duration,
    last: Instant,
}

impl Firing {
    /// Sending again every `every`.
    pub(super) fn new(every: Duration) -> Self {
        Firing {
            alerts: BTreeMap::new(),
            every,
            last: Instant::now(),
        }
    }

    /// Alert `id` was sent with `body`, firing until `ends_ms`; a later row of the same
    /// alert replaces it.
    pub(super) fn fired(&mut self, id: String, ends_ms: i64, body: Vec<u8>) {
        self.alerts.insert(id, (ends_ms, body));
        if self.alerts.len() > MAX_FIRING {
            let soonest = (self.alerts.iter())
                .min_by_key(|(_, (ends, _))| *ends)
                .map(|(id, _)| id.clone());
            if let Some(id) = soonest {
                self.alerts.remove(&id);
            }
        }
    }

    /// When a resend is due: the alerts still firing at `now_ms` (those ended are
    /// forgotten); otherwise nothing.
    pub(super) fn due(&mut self, now_ms: i64) -> Vec<Item> {
        if self.last.elapsed() < self.every {
            return Vec::new();
        }
        self.last = Instant::now();
        self.alerts.retain(|_, (ends, _)| *ends > now_ms);
        (self.alerts.iter())
            .map(|(id, (_, body))| Item {
                id: id.clone(),
                body: body.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_alerts_are_due_again_each_interval_until_they_end() {
        let mut f = Firing::new(Duration::ZERO);
        f.fired("a".into(), 1_000, b"{}".to_vec());
        f.fired("b".into(), 2_000, b"{}".to_vec());
        f.fired("a".into(), 3_000, b"{\"n\":2}".to_vec());
        let ids = |items: Vec<Item>| items.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(f.due(500)), ["a", "b"]);
        assert_eq!(ids(f.due(2_500)), ["a"]);
        assert!(f.due(3_000).is_empty());
        let mut slow = Firing::new(Duration::from_secs(3600));
        slow.fired("a".into(), i64::MAX, Vec::new());
        assert!(slow.due(0).is_empty(), "not due before the interval");
    }

    #[test]
    fn at_most_max_firing_are_kept_the_soonest_ending_given_up() {
        let mut f = Firing::new(Duration::ZERO);
        for i in 0..=MAX_FIRING as i64 {
            f.fired(format!("{i:06}"), 1_000 + i, Vec::new());
        }
        let due = f.due(0);
        assert_eq!(due.len(), MAX_FIRING);
        assert_eq!(due[0].id, "000001");
    }
}
