//! Write rules for [rulewatch](https://github.com/rulewatch/rulewatch).
//!
//! A rule is a small WebAssembly module with two decisions in it:
//!
//! * [`Rule::filter`]: does this event count? (for example: content mentions "crash" and the
//!   severity is High or Critical)
//! * [`Rule::alert`]: does this window count make an alert? (for example: more than 2)
//!
//! Everything else — reading Kafka or files, parsing JSON, event time, windows, watermarks,
//! late data, output — is done by the host and configured in the rule's TOML file. The host
//! parses each event once, natively, and hands the rule only the fields it declared in
//! [`Rule::FIELDS`], a batch at a time.
//!
//! ```
//! use rulewatch_sdk::{Event, Field, Rule, WindowCount};
//!
//! #[derive(serde::Deserialize)]
//! struct Params { word: String, threshold: u64 }
//!
//! struct Mentions(Params);
//!
//! impl Rule for Mentions {
//!     type Params = Params;
//!     const FIELDS: &'static [Field] = &[Field::str("content")];
//!
//!     fn init(params: Params) -> Result<Self, String> {
//!         Ok(Mentions(params))
//!     }
//!     fn filter(&self, event: &Event) -> bool {
//!         rulewatch_sdk::contains_ignore_ascii_case(event.str("content"), &self.0.word)
//!     }
//!     fn alert(&self, window: &WindowCount) -> bool {
//!         window.count > self.0.threshold
//!     }
//! }
//! rulewatch_sdk::export_rule!(Mentions);
//!
//! // Rules are plain Rust, so they can be tested natively with `cargo test`:
//! use rulewatch_sdk::testing;
//! let rule = Mentions::init(Params { word: "crash".into(), threshold: 2 }).unwrap();
//! let events = [testing::event(0, "user_1", &[("content", "App CRASHED".into())])];
//! assert_eq!(testing::filter(&rule, &events), [true]);
//! ```
//!
//! Build it with `cargo build --profile rule --target wasm32-unknown-unknown` (the workspace
//! defines the `rule` profile) and put the `.wasm` next to its `.toml` in the rules folder.

pub mod abi;
#[doc(hidden)]
pub mod guest;
pub mod testing;

use abi::{Batch, EVENT_FIXED_COLUMNS, EVENT_KEY, EVENT_TIME};
pub use abi::{Field, FieldType};

/// A rule: a filter over events and an alert decision over window counts.
///
/// The host calls [`Rule::init`] once per load (and again when the params in the TOML
/// change), then [`Rule::filter`] for every event and [`Rule::alert`] for every window
/// count it reports, in batches.
pub trait Rule: Sized + 'static {
    /// The rule's `[params]` table from its TOML file, deserialized with serde; a missing
    /// or mistyped param is reported to the user with serde's message.
    type Params: serde::de::DeserializeOwned;

    /// The event fields the rule reads. Events in which one of them is missing or of
    /// another type are rejected as bad input before the rule sees them.
    const FIELDS: &'static [Field];

    /// Builds the rule from its params, or says why they are not acceptable.
    fn init(params: Self::Params) -> Result<Self, String>;

    /// Whether the event counts towards its window.
    fn filter(&self, event: &Event<'_>) -> bool;

    /// Whether a window's count is an alert.
    fn alert(&self, window: &WindowCount<'_>) -> bool;
}

/// One event of a batch: its time, its key and the declared fields.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch<'a>,
    fields: &'static [Field],
    row: usize,
}

impl<'a> Event<'a> {
    /// Event time in milliseconds since the Unix epoch (UTC).
    #[inline]
    pub fn time_ms(&self) -> i64 {
        self.batch.i64(EVENT_TIME, self.row)
    }

    /// The value of the rule's key field (for example the `user_id`).
    #[inline]
    pub fn key(&self) -> &'a str {
        self.batch.str(EVENT_KEY, self.row)
    }

    /// The string field `name`.
    ///
    /// # Panics
    /// If `name` is not a string field in [`Rule::FIELDS`]: the rule would otherwise read
    /// a field the host never sent.
    #[inline]
    pub fn str(&self, name: &str) -> &'a str {
        self.batch.str(self.column(name, FieldType::Str), self.row)
    }

    /// The number field `name`.
    ///
    /// # Panics
    /// If `name` is not a number field in [`Rule::FIELDS`].
    #[inline]
    pub fn num(&self, name: &str) -> f64 {
        self.batch.f64(self.column(name, FieldType::Num), self.row)
    }

    #[inline]
    fn column(&self, name: &str, ty: FieldType) -> usize {
        match self
            .fields
            .iter()
            .position(|f| f.name == name && f.ty == ty)
        {
            Some(i) => EVENT_FIXED_COLUMNS + i,
            None => panic!(
                "field `{name}` ({}) is not declared in Rule::FIELDS",
                ty.as_str()
            ),
        }
    }
}

/// The count of one key in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCount<'a> {
    /// Window start, ms since the Unix epoch (inclusive).
    pub start_ms: i64,
    /// Window end, ms since the Unix epoch (exclusive).
    pub end_ms: i64,
    /// The key (for example the user id).
    pub key: &'a str,
    /// How many events passed the filter in this window for this key.
    pub count: u64,
}

/// Whether `haystack` contains `needle`, ignoring ASCII case; no allocation.
///
/// Candidates for the needle's first byte are found eight bytes at a time (SWAR), then
/// checked: few loop iterations per byte, which matters most inside WebAssembly, where every
/// loop iteration also checks the host's time budget.
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    let last = h.len() - n.len();
    let at = |i: usize| h[i..i + n.len()].eq_ignore_ascii_case(n);
    // Letters compare with bit 0x20 set (lowercase); other bytes exactly.
    let fold = if first.is_ascii_alphabetic() {
        ONES * 0x20
    } else {
        0
    };
    let pattern = ONES * u64::from(first.to_ascii_lowercase());
    let mut i = 0;
    while i + 8 <= last + 1 {
        let word = u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes")) | fold;
        let x = word ^ pattern;
        // High bit set in each byte of x that is zero (plus, rarely, a false candidate).
        let mut candidates = x.wrapping_sub(ONES) & !x & HIGH;
        while candidates != 0 {
            if at(i + candidates.trailing_zeros() as usize / 8) {
                return true;
            }
            candidates &= candidates - 1;
        }
        i += 8;
    }
    (i..=last).any(|i| h[i].eq_ignore_ascii_case(&first) && at(i))
}

/// Exports a [`Rule`] type as a rulewatch module (ABI [`abi::VERSION`]).
///
/// Use it once per rule crate. On targets other than wasm32 it expands to nothing, so the
/// same crate builds natively for unit tests.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        // An anonymous const sees the caller's names, and its items stay private.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            static RULE: $crate::guest::Slot<$rule> = $crate::guest::Slot::new();

            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_abi_version() -> u32 {
                $crate::abi::VERSION
            }
            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_fields() -> u64 {
                $crate::guest::fields::<$rule>()
            }
            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_input(len: u32) -> u32 {
                $crate::guest::input(len)
            }
            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_init(len: u32) -> u32 {
                $crate::guest::init(&RULE, len)
            }
            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_filter(len: u32) -> u64 {
                $crate::guest::filter(&RULE, len)
            }
            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_alert(len: u32) -> u64 {
                $crate::guest::alert(&RULE, len)
            }
            #[unsafe(no_mangle)]
            extern "C" fn rulewatch_error() -> u64 {
                $crate::guest::error()
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_ignores_ascii_case() {
        assert!(contains_ignore_ascii_case("App CRASH on start", "crash"));
        assert!(contains_ignore_ascii_case("crashed", "Crash"));
        assert!(contains_ignore_ascii_case("x", ""));
        assert!(!contains_ignore_ascii_case("cras", "crash"));
        assert!(!contains_ignore_ascii_case("c r a s h", "crash"));
        assert!(contains_ignore_ascii_case("ééCrAsH", "crash"));
        assert!(contains_ignore_ascii_case(
            "a long line where the CRASH is late",
            "crash"
        ));
        assert!(contains_ignore_ascii_case("0123456789[x]", "[X]"));
        assert!(!contains_ignore_ascii_case("0123456789{x}", "[x]"));
    }

    #[test]
    fn contains_agrees_with_the_plain_definition() {
        let plain = |h: &str, n: &str| h.to_ascii_lowercase().contains(&n.to_ascii_lowercase());
        let alphabet = [
            "a", "A", "b", "c", "C", "@", "`", "[", "{", "é", " ", "crash", "CrA",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize % m
        };
        for _ in 0..20_000 {
            let h: String = (0..next(40))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let n: String = (0..next(4))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            assert_eq!(
                contains_ignore_ascii_case(&h, &n),
                plain(&h, &n),
                "{h:?} {n:?}"
            );
        }
    }
}
