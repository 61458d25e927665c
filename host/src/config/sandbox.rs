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
pub(crate) struct SandboxConfig {
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
    /// Most memory compiling one module may take (the compiler runs in a child process
    /// limited to it).
    #[serde(
        default = "default_max_compile_memory",
        deserialize_with = "super::byte_size"
    )]
    pub max_compile_memory: u64,
    /// Longest compiling one module may take, in CPU time and in wall-clock time.
    #[serde(
        default = "default_max_compile_time",
        deserialize_with = "super::duration"
    )]
    pub max_compile_time: Duration,
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
            max_compile_memory: default_max_compile_memory(),
            max_compile_time: default_max_compile_time(),
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
fn default_max_compile_memory() -> u64 {
    256 << 20
}
fn default_max_compile_time() -> Duration {
    Duration::from_secs(20)
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
pub(crate) fn set_ceilings(config: SandboxConfig) -> anyhow::Result<()> {
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
    let c = &config;
    let why = "a ceiling this high leaves the engine unprotected";
    let checks: [(&str, u64, u64); 9] = [
        ("[sandbox] max_memory", c.max_memory, 4 << 30),
        ("[sandbox] max_module_bytes", c.max_module_bytes, 1 << 30),
        ("[sandbox] max_functions", c.max_functions.into(), 1_000_000),
        ("[sandbox] max_fields", c.max_fields as u64, 65_536),
        (
            "[sandbox] max_windows_per_event",
            c.max_windows_per_event,
            1_000_000,
        ),
        ("[sandbox] max_key_bytes", c.max_key_bytes, 1 << 20),
        (
            "[sandbox] max_compile_memory",
            c.max_compile_memory,
            64 << 30,
        ),
        (
            "[sandbox] max_compile_time (seconds)",
            c.max_compile_time.as_secs(),
            3600,
        ),
        (
            "[sandbox] max_time_per_batch (seconds)",
            c.max_time_per_batch.as_secs(),
            3600,
        ),
    ];
    for (setting, value, max) in checks {
        super::at_most(setting, value, max, why)?;
    }
    if c.max_compile_memory < 64 << 20 || c.max_compile_time < Duration::from_secs(1) {
        anyhow::bail!(
            "[sandbox] max_compile_memory must be at least 64MiB and max_compile_time at \
             least 1s (compiling even a small module needs them)"
        );
    }
    for dir in &c.module_dirs {
        super::capped(
            "[sandbox] module_dirs",
            &dir.to_string_lossy(),
            super::MAX_TEXT,
        )?;
    }
    let _ = CEILINGS.set(config);
    Ok(())
}

/// The ceilings in force.
pub(crate) fn ceilings() -> &'static SandboxConfig {
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
