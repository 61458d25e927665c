//! Repeated failed logins per user: more than `threshold` events whose `content` mentions one
//! of `phrases` (any case) within 5 minutes, checked every minute (a hopping window, set in
//! `failed-logins.toml`).

use rulewatch_sdk::{Event, Field, Rule, WindowCount, contains_ignore_ascii_case};
use serde::Deserialize;

/// The `[params]` of `failed-logins.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Phrases that mark a failed login, matched ignoring case.
    pub phrases: Vec<String>,
    /// Alert when a user's count in a window is greater than this.
    pub threshold: u64,
}

/// The rule.
pub struct FailedLogins(Params);

impl Rule for FailedLogins {
    type Params = Params;
    const FIELDS: &'static [Field] = &[Field::str("content")];

    fn init(params: Params) -> Result<Self, String> {
        if params.phrases.is_empty() || params.phrases.iter().any(String::is_empty) {
            return Err("params.phrases must hold at least one non-empty phrase".into());
        }
        Ok(FailedLogins(params))
    }

    fn filter(&self, event: &Event) -> bool {
        let content = event.str("content");
        self.0
            .phrases
            .iter()
            .any(|p| contains_ignore_ascii_case(content, p))
    }

    fn alert(&self, window: &WindowCount) -> bool {
        window.count > self.0.threshold
    }
}

rulewatch_sdk::export_rule!(FailedLogins);

#[cfg(test)]
mod tests {
    use super::*;
    use rulewatch_sdk::testing::{self, event};

    #[test]
    fn matches_any_phrase_in_any_case() {
        let rule = FailedLogins::init(Params {
            phrases: vec!["login failed".into(), "invalid password".into()],
            threshold: 3,
        })
        .unwrap();
        let e = |c: &str| event(0, "alice", &[("content", c.into())]);
        let events = [
            e("LOGIN FAILED for alice"),
            e("Invalid password"),
            e("User logged in"),
        ];
        assert_eq!(testing::filter(&rule, &events), [true, true, false]);
        assert!(
            FailedLogins::init(Params {
                phrases: vec![],
                threshold: 3
            })
            .is_err()
        );
    }
}
