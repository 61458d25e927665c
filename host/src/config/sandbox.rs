//! `[sandbox]` in rulewatch.toml: the engine-wide ceilings every rule lives within, whatever
//! its files say. A rule's `[limits]` may lower the memory and time ceilings, never raise
//! them; a module, a TOML or an input line that goes past one is refused with both numbers.
//!
//! The ceilings are set once, before the first rule loads ([`set_ceilings`]), and read
//! wherever a rule is loaded or fed ([`ceilings`]); without a config file they are the
//! defaults below.

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The engine-wide ceilings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Most linear memory (all of a module's memories together) a rule may use.
    #[serde(default = "default_max_memory", deserialize_with = "super::byte_size")]
    pub max_memory: u64,
    /// Longest a rule may run for one batch.
    #[serde(default = "default_max_time", deserialize_with = "super::duration")]
    pub max_time_per_batch: Duration,
    /// Largest module file, and largest TOML file (its 1/16th), read.
    #[serde(default = "default_max_module", deserialize_with = "super::byte_size")]
    pub max_module_bytes: u64,
    /// Most functions a module may define (each is compiled to machine code).
    #[serde(default = "default_max_functions")]
    pub max_functions: u32,
    /// Most fields a module may declare.
    #[serde(default = "default_max_fields")]
    pub max_fields: usize,
    /// Most windows one event may count in (hopping windows: `size / slide`).
    #[serde(default = "default_max_windows")]
    pub max_windows_per_event: u64,
    /// Longest key value, in bytes; events with longer keys are rejected as `too_large`.
    #[serde(default = "default_max_key", deserialize_with = "super::byte_size")]
    pub max_key_bytes: u64,
    /// Folders besides a rule's own that its `module` may be read from (the image's
    /// `/usr/share/rulewatch/rules`, say); `RULEWATCH_MODULE_DIRS` (`:`-separated) overrides.
    #[serde(default)]
    pub module_dirs: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_memory: default_max_memory(),
            max_time_per_batch: default_max_time(),
            max_module_bytes: default_max_module(),
            max_functions: default_max_functions(),
            max_fields: default_max_fields(),
            max_windows_per_event: default_max_windows(),
            max_key_bytes: default_max_key(),
            module_dirs: Vec::new(),
        }
    }
}

fn default_max_memory() -> u64 {
    256 << 20
}
fn default_max_time() -> Duration {
    Duration::from_secs(5)
}
fn default_max_module() -> u64 {
    16 << 20
}
fn default_max_functions() -> u32 {
    20_000
}
fn default_max_fields() -> usize {
    256
}
fn default_max_windows() -> u64 {
    1000
}
fn default_max_key() -> u64 {
    1 << 10
}

static CEILINGS: OnceLock<SandboxConfig> = OnceLock::new();

/// Sets the ceilings for this process; only the first call counts (call it before loading
/// rules). Refuses values that would disable the sandbox. `RULEWATCH_MODULE_DIRS`, when
/// set, replaces `module_dirs`.
pub fn set_ceilings(config: SandboxConfig) -> anyhow::Result<()> {
    let config = with_env(config);
    if config.max_memory < 1 << 16 || config.max_time_per_batch.is_zero() {
        anyhow::bail!(
            "[sandbox] max_memory must be at least 64KiB and max_time_per_batch positive"
        );
    }
    if config.max_fields == 0 || config.max_windows_per_event == 0 || config.max_key_bytes == 0 {
        anyhow::bail!(
            "[sandbox] max_fields, max_windows_per_event and max_key_bytes must be positive"
        );
    }
    let _ = CEILINGS.set(config);
    Ok(())
}

/// The ceilings in force.
pub fn ceilings() -> &'static SandboxConfig {
    CEILINGS.get_or_init(|| with_env(SandboxConfig::default()))
}

/// `config` with `RULEWATCH_MODULE_DIRS` applied.
fn with_env(mut config: SandboxConfig) -> SandboxConfig {
    if let Some(dirs) = std::env::var_os("RULEWATCH_MODULE_DIRS") {
        config.module_dirs = std::env::split_paths(&dirs)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    config
}
