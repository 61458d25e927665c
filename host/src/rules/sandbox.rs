//! The sandbox every rule module runs in: one shared wasmtime engine with epoch
//! interruption (a background thread ticks the epoch), and per-store memory limits.

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

/// Per-store limits: caps linear memory and remembers whether the module hit the cap, so
/// that the trap that follows (Rust's allocator aborts) can be reported as what it is.
pub struct Limits {
    /// Largest linear memory in bytes.
    pub memory: usize,
    /// Set when a memory.grow past `memory` was refused.
    pub memory_exceeded: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory;
        self.memory_exceeded |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
