//! A rule that behaves like the crash rule's filter (content mentions "crash") until it
//! has seen `after` events, then does what `fail` says: `trap` (panics), `loop` (never
//! returns) or `memory` (allocates without end). `fail = "none"` never misbehaves;
//! `fail = "init"` rejects its params; `fail = "init-panic"` panics (traps) in `init`.

use rulewatch_sdk::{Event, Field, Rule, WindowCount, contains_ignore_ascii_case};
use std::cell::Cell;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub fail: String,
    #[serde(default)]
    pub after: u64,
}

pub struct Misbehave {
    params: Params,
    seen: Cell<u64>,
    hoard: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl Rule for Misbehave {
    type Params = Params;
    const FIELDS: &'static [Field] = &[Field::str("content")];

    fn init(params: Params) -> Result<Self, String> {
        match params.fail.as_str() {
            "none" | "trap" | "loop" | "memory" => Ok(Misbehave {
                params,
                seen: Cell::new(0),
                hoard: Default::default(),
            }),
            "init" => Err("init refused on purpose (fail = \"init\")".into()),
            "init-panic" => panic!("misbehave: panicking in init on purpose"),
            other => Err(format!("unknown fail mode `{other}`")),
        }
    }

    fn filter(&self, event: &Event) -> bool {
        self.seen.set(self.seen.get() + 1);
        if self.seen.get() > self.params.after {
            match self.params.fail.as_str() {
                "trap" => panic!("misbehave: trapping on purpose"),
                "loop" => loop {
                    std::hint::black_box(self.seen.get());
                },
                "memory" => loop {
                    self.hoard.borrow_mut().push(vec![1u8; 1 << 20]);
                },
                _ => {}
            }
        }
        contains_ignore_ascii_case(event.str("content"), "crash")
    }

    fn alert(&self, window: &WindowCount) -> bool {
        window.count > 0
    }
}

rulewatch_sdk::export_rule!(Misbehave);
