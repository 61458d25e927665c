//! The settings a rule's window state depends on. Checkpointed state is restored only into
//! a rule whose settings are equal; they are written as one line of text, e.g.
//! `size=10s slide=10s delay=5s key=user_id time=timestamp`, ending in ` repartitioned`
//! when the rule counts through a repartition topic (its state is then per internal
//! partition, not per input partition).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// What a rule's windows are, as far as its state is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSettings {
    /// Window length.
    pub size: Duration,
    /// Distance between window starts (`size` when tumbling).
    pub slide: Duration,
    /// How far the watermark trails the largest event time.
    pub delay: Duration,
    /// The group-by field.
    pub key: String,
    /// The event-time field.
    pub time_field: String,
    /// Counted through a repartition topic.
    pub repartitioned: bool,
}

const REPARTITIONED: &str = " repartitioned";

impl fmt::Display for WindowSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "size={:?} slide={:?} delay={:?} key={} time={}{}",
            self.size,
            self.slide,
            self.delay,
            self.key,
            self.time_field,
            if self.repartitioned {
                REPARTITIONED
            } else {
                ""
            }
        )
    }
}

impl WindowSettings {
    /// Reads the text [`Display`](fmt::Display) writes; `None` if it is not that.
    pub fn parse(text: &str) -> Option<Self> {
        let (text, repartitioned) = match text.strip_suffix(REPARTITIONED) {
            Some(t) => (t, true),
            None => (text, false),
        };
        let rest = text.strip_prefix("size=")?;
        let (size, rest) = rest.split_once(" slide=")?;
        let (slide, rest) = rest.split_once(" delay=")?;
        let (delay, rest) = rest.split_once(" key=")?;
        let (key, time_field) = rest.rsplit_once(" time=")?;
        Some(WindowSettings {
            size: parse_duration(size)?,
            slide: parse_duration(slide)?,
            delay: parse_duration(delay)?,
            key: key.to_owned(),
            time_field: time_field.to_owned(),
            repartitioned,
        })
    }
}

/// Reads a duration as `Debug` writes it: `10s`, `1.5s`, `250ms`, `3µs`, `0ns`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = [
        ("ns", 1u128),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
    ]
    .into_iter()
    .find_map(|(suffix, unit)| Some((text.strip_suffix(suffix)?, unit)))?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || fraction.len() > 9 {
        return None;
    }
    let mut nanos = whole.parse::<u128>().ok()? * unit;
    if !fraction.is_empty() {
        let scale = 10u128.pow(fraction.len() as u32);
        nanos += fraction.parse::<u128>().ok()? * unit / scale;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

impl Serialize for WindowSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Text that does not read as settings (written by no version of rulewatch) reads as
/// settings no rule has — zero-sized windows, keyed by that text — so that the rule starts
/// empty there, as when its settings changed, instead of the whole record being refused.
impl<'de> Deserialize<'de> for WindowSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(WindowSettings::parse(&text).unwrap_or(WindowSettings {
            size: Duration::ZERO,
            slide: Duration::ZERO,
            delay: Duration::ZERO,
            key: text,
            time_field: String::new(),
            repartitioned: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_reads_back_as_the_same_settings_as_earlier_versions_wrote_it() {
        let ms = Duration::from_millis;
        for (size, slide, delay) in [
            (ms(10_000), ms(10_000), ms(5_000)),
            (ms(60_000), ms(1_500), Duration::ZERO),
            (ms(250), ms(250), ms(1)),
            (Duration::from_secs(86_400 * 400), ms(3_600_000), ms(999)),
        ] {
            for repartitioned in [false, true] {
                let w = WindowSettings {
                    size,
                    slide,
                    delay,
                    key: "user id time=x".into(),
                    time_field: "ts".into(),
                    repartitioned,
                };
                // The form checkpoints of earlier versions hold.
                let old = format!(
                    "size={size:?} slide={slide:?} delay={delay:?} key={} time={}{}",
                    w.key,
                    w.time_field,
                    if repartitioned { " repartitioned" } else { "" }
                );
                assert_eq!(w.to_string(), old);
                assert_eq!(WindowSettings::parse(&old), Some(w.clone()));
                let json = serde_json::to_string(&w).unwrap();
                assert_eq!(serde_json::from_str::<WindowSettings>(&json).unwrap(), w);
            }
        }
        assert_eq!(WindowSettings::parse("10000/10000/user_id"), None);
        let unreadable = serde_json::from_str::<WindowSettings>("\"size=1x\"").unwrap();
        assert_eq!(unreadable.size, Duration::ZERO, "settings no rule has");
    }
}
