//! The sandbox every rule module runs in: one shared wasmtime engine with epoch
//! interruption (a background thread ticks the epoch), and per-store limits on memory — all
//! of a module's memories together — tables and instances.

use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::{Config, Engine, ResourceLimiter};

/// How often the epoch advances; execution budgets are counted in these ticks.
pub const TICK: Duration = Duration::from_millis(5);

/// The process-wide engine. Compiled modules can be shared by every rule that uses them.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        // Epoch checks cost a load and compare at loop heads; fuel would cost far more.
        config.epoch_interruption(true);
        // One linear memory per module: the cap is then simply the memory's size.
        config.wasm_multi_memory(false);
        let engine = Engine::new(&config).expect("a valid wasmtime configuration");
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("rulewatch-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawn the epoch thread");
        engine
    })
}

/// Epoch ticks for a time budget (at least one).
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

/// What a rule's store holds: its limits and the state behind its imports.
pub struct Guest {
    /// Memory accounting (the store's resource limiter).
    pub limits: Limits,
    /// Clocks, random state and log lines of the current call.
    pub wasi: super::wasi::State,
}

/// Most table elements a store may hold.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Per-store limits: caps linear memory and remembers whether the module hit the cap, so
/// that the trap that follows (Rust's allocator aborts) can be reported as what it is.
pub struct Limits {
    /// Largest linear memory in bytes, all memories of the store together.
    pub memory: usize,
    /// Bytes of linear memory the store holds now.
    pub used: usize,
    /// Set when a memory.grow past `memory` was refused.
    pub memory_exceeded: bool,
}

impl Limits {
    /// Limits of `memory` bytes, nothing used yet.
    pub fn new(memory: u64) -> Self {
        Limits {
            memory: usize::try_from(memory).unwrap_or(usize::MAX),
            used: 0,
            memory_exceeded: false,
        }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        let ok = total <= self.memory;
        if ok {
            self.used = total;
        }
        self.memory_exceeded |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}
