//! The module side of the ABI, called from the functions [`crate::export_rule!`] generates.
//! Not for direct use.

use std::cell::UnsafeCell;

use crate::abi::{self, Batch};
use crate::{Event, Rule, WindowCount};

/// A global cell. WebAssembly modules built for `wasm32-unknown-unknown` run on one thread,
/// and the host never calls into a module re-entrantly. Each slot is borrowed by one
/// function at a time: the exports take `IO`, the panic hook only `PANIC`.
pub struct Slot<T>(UnsafeCell<Option<T>>);

// SAFETY: see the type's doc: one thread, no re-entrant calls.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot(UnsafeCell::new(None))
    }

    #[allow(clippy::mut_from_ref)]
    fn get(&self) -> &mut Option<T> {
        // SAFETY: single-threaded and never re-entered (see `Slot`).
        unsafe { &mut *self.0.get() }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Buffers shared by all exports: the input the host writes, the bitmap the module answers
/// with, the last error and the field declaration. Only the exports touch it, each taking
/// it once ([`io`]) and holding it until it returns.
#[derive(Default)]
struct Io {
    input: Vec<u8>,
    output: Vec<u8>,
    error: String,
    fields: String,
}

static IO: Slot<Io> = Slot::new();

/// A panic's message, kept apart from [`IO`]: the panic hook runs while an export holds
/// `IO`, so it must not take it too. `rulewatch_error`, which the host calls after the
/// trap that follows a panic, moves it into `IO`.
static PANIC: Slot<String> = Slot::new();

fn io() -> &'static mut Io {
    IO.get().get_or_insert_with(|| {
        std::panic::set_hook(Box::new(|info| {
            *PANIC.get() = Some(info.to_string().replace('\n', " "));
        }));
        Io::default()
    })
}

fn packed(bytes: &[u8]) -> u64 {
    abi::pack(bytes.as_ptr() as usize as u32, bytes.len() as u32)
}

/// `rulewatch_fields`: the field declaration, see [`abi::declare_fields`].
pub fn fields<R: Rule>() -> u64 {
    let io = io();
    if io.fields.is_empty() {
        io.fields = abi::declare_fields(R::FIELDS);
    }
    packed(io.fields.as_bytes())
}

/// `rulewatch_input`: a buffer of at least `len` bytes for the host to write into.
pub fn input(len: u32) -> u32 {
    let io = io();
    io.input.resize(len as usize, 0);
    io.input.as_mut_ptr() as usize as u32
}

/// `rulewatch_error`: the last error message (from `init` or a panic).
pub fn error() -> u64 {
    let io = io();
    if let Some(message) = PANIC.get().take() {
        io.error = message;
    }
    packed(io.error.as_bytes())
}

/// `rulewatch_init`: params as JSON in the input buffer; 0 on success.
pub fn init<R: Rule>(slot: &Slot<R>, len: u32) -> u32 {
    let io = io();
    let result = serde_json::from_slice::<R::Params>(&io.input[..len as usize])
        .map_err(|e| format!("invalid params: {e}"))
        .and_then(R::init);
    match result {
        Ok(rule) => {
            *slot.get() = Some(rule);
            0
        }
        Err(message) => {
            io.error = message;
            1
        }
    }
}

fn answer(
    len: u32,
    (count, kind): (usize, impl Fn(usize) -> u32),
    each: impl Fn(&Batch<'_>, usize) -> bool,
    io: &'static mut Io,
) -> Result<u64, String> {
    let input = &io.input[..len as usize];
    let batch = Batch::parse_as(input, count, kind).map_err(|e| e.to_string())?;
    abi::bitmap(&batch, &mut io.output, each);
    Ok(packed(&io.output))
}

/// Answers the batch of `len` bytes in the input buffer, whose columns are expected to be
/// `kinds` (how many, and the kind of each), with `each` row's answer.
fn run(
    len: u32,
    kinds: (usize, impl Fn(usize) -> u32),
    each: impl Fn(&Batch<'_>, usize) -> bool,
) -> u64 {
    let io = io();
    match answer(len, kinds, each, io) {
        Ok(v) => v,
        Err(message) => panic!("{message}"),
    }
}

/// `rulewatch_filter`: an event batch in the input buffer; returns the selection bitmap.
pub fn filter<R: Rule>(slot: &Slot<R>, len: u32) -> u64 {
    let rule = slot.get().as_ref().expect("rulewatch_init was not called");
    let kinds = (abi::EVENT_FIXED_COLUMNS + R::FIELDS.len(), |c| {
        abi::event_kind(R::FIELDS, c)
    });
    run(len, kinds, |batch, row| {
        rule.filter(&Event {
            batch,
            fields: R::FIELDS,
            row,
        })
    })
}

/// `rulewatch_alert`: a window batch in the input buffer; returns the alert bitmap.
pub fn alert<R: Rule>(slot: &Slot<R>, len: u32) -> u64 {
    let rule = slot.get().as_ref().expect("rulewatch_init was not called");
    let kinds = (abi::WINDOW_KINDS.len(), |c| abi::WINDOW_KINDS[c]);
    run(len, kinds, |batch, row| {
        rule.alert(&WindowCount {
            start_ms: batch.i64(abi::WINDOW_START, row),
            end_ms: batch.i64(abi::WINDOW_END, row),
            key: batch.str(abi::WINDOW_KEY, row),
            count: batch.i64(abi::WINDOW_COUNT, row).max(0) as u64,
        })
    })
}
