//! The default rule: events whose `content` mentions a keyword ("crash", any case) and whose
//! `severity` is one of a list (High, Critical), alerting when a key has more than
//! `threshold` of them in a window. Window, key and output are set in `crash.toml`.

use rulewatch_sdk::{Event, Field, Rule, WindowCount, contains_ignore_ascii_case};
use serde::Deserialize;

/// The `[params]` of `crash.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Word to look for in `content`, ignoring case.
    pub keyword: String,
    /// Severities that count.
    pub severities: Vec<String>,
    /// Alert when a window's count is greater than this.
    pub threshold: u64,
}

/// The crash rule.
pub struct Crash(Params);

impl Rule for Crash {
    type Params = Params;
    const FIELDS: &'static [Field] = &[Field::str("severity"), Field::str("content")];

    fn init(params: Params) -> Result<Self, String> {
        if params.keyword.is_empty() {
            return Err("params.keyword is empty: every event would match".into());
        }
        if params.severities.is_empty() {
            return Err("params.severities is empty: no event could match".into());
        }
        Ok(Crash(params))
    }

    fn filter(&self, event: &Event) -> bool {
        let severity = event.str("severity");
        self.0.severities.iter().any(|s| s == severity)
            && contains_ignore_ascii_case(event.str("content"), &self.0.keyword)
    }

    fn alert(&self, window: &WindowCount) -> bool {
        window.count > self.0.threshold
    }
}

rulewatch_sdk::export_rule!(Crash);

#[cfg(test)]
mod tests {
    use super::*;
    use rulewatch_sdk::testing::{self, event};

    fn rule() -> Crash {
        Crash::init(Params {
            keyword: "crash".into(),
            severities: vec!["High".into(), "Critical".into()],
            threshold: 2,
        })
        .unwrap()
    }

    #[test]
    fn counts_high_and_critical_crashes_in_any_case() {
        let e = |sev: &str, content: &str| {
            event(
                0,
                "u",
                &[("severity", sev.into()), ("content", content.into())],
            )
        };
        let events = [
            e("High", "App crash on startup"),
            e("Critical", "CRASH in renderer"),
            e("Critical", "crashed while saving"),
            e("Medium", "App crash on startup"),
            e("high", "App crash"),
            e("High", "Settings saved"),
        ];
        assert_eq!(
            testing::filter(&rule(), &events),
            [true, true, true, false, false, false]
        );
    }

    #[test]
    fn alerts_above_the_threshold() {
        let w = |count| WindowCount {
            start_ms: 0,
            end_ms: 10_000,
            key: "u",
            count,
        };
        assert_eq!(testing::alert(&rule(), &[w(2), w(3)]), [false, true]);
    }

    #[test]
    fn rejects_empty_params() {
        let p = Params {
            keyword: String::new(),
            severities: vec!["High".into()],
            threshold: 2,
        };
        assert!(Crash::init(p).is_err());
    }
}
