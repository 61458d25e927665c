//! The built-in crash rule: `rules/crash`, compiled to WebAssembly by build.rs and embedded,
//! with `rules/crash/crash.toml` as its configuration.

use crate::config::RuleConfig;

/// The crash rule's module.
pub const CRASH_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/crash.wasm"));

/// The crash rule's configuration text.
pub const CRASH_TOML: &str = include_str!("../../../rules/crash/crash.toml");

/// The crash rule's configuration.
pub fn crash_config() -> RuleConfig {
    RuleConfig::parse(CRASH_TOML, "built-in crash.toml").expect("the shipped crash.toml is valid")
}
