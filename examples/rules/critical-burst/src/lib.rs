//! A burst of events of one severity per app: more than `threshold` `Critical` events of one
//! `app` in a minute (window and key in `critical-burst.toml`).

use rulewatch_sdk::{Event, Field, Rule, WindowCount};
use serde::Deserialize;

/// The `[params]` of `critical-burst.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The severity that counts, exactly as producers write it.
    pub severity: String,
    /// Alert when an app's count in a window is greater than this.
    pub threshold: u64,
}

/// The rule.
pub struct CriticalBurst(Params);

impl Rule for CriticalBurst {
    type Params = Params;
    const FIELDS: &'static [Field] = &[Field::str("severity")];

    fn init(params: Params) -> Result<Self, String> {
        if params.severity.is_empty() {
            return Err("params.severity is empty: no event could match".into());
        }
        Ok(CriticalBurst(params))
    }

    fn filter(&self, event: &Event) -> bool {
        event.str("severity") == self.0.severity
    }

    fn alert(&self, window: &WindowCount) -> bool {
        window.count > self.0.threshold
    }
}

rulewatch_sdk::export_rule!(CriticalBurst);

#[cfg(test)]
mod tests {
    use super::*;
    use rulewatch_sdk::testing::{self, event};

    #[test]
    fn counts_only_the_severity_given_and_alerts_above_the_threshold() {
        let rule = CriticalBurst::init(Params {
            severity: "Critical".into(),
            threshold: 30,
        })
        .unwrap();
        let e = |s: &str| event(0, "web", &[("severity", s.into())]);
        let events = [e("Critical"), e("critical"), e("High")];
        assert_eq!(testing::filter(&rule, &events), [true, false, false]);
        let w = |count| WindowCount {
            start_ms: 0,
            end_ms: 60_000,
            key: "web",
            count,
        };
        assert_eq!(testing::alert(&rule, &[w(30), w(31)]), [false, true]);
    }
}
