//! The rule registry: finds rule configs (`*.toml`) in a rules folder, loads the module each
//! names, and validates both — or uses the built-in crash rule.

use crate::config::RuleConfig;
use crate::pipeline::LoadedRule;
use crate::rules::{RuleModule, builtin};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest module accepted, in bytes.
pub const MAX_MODULE_BYTES: u64 = 32 << 20;

/// The built-in crash rule.
pub fn builtin() -> anyhow::Result<LoadedRule> {
    let config = builtin::crash_config();
    let module = RuleModule::compile(builtin::CRASH_WASM)
        .context("the built-in crash rule does not load (a build problem)")?;
    validate_init(&config, &module, "built-in crash.toml")?;
    Ok(LoadedRule {
        name: "crash".into(),
        config,
        module: Arc::new(module),
    })
}

/// Loads one rule from its TOML file and the module it names.
pub fn load(toml: &Path) -> anyhow::Result<LoadedRule> {
    let config = RuleConfig::load(toml)?;
    let name = config.name_or(toml);
    let wasm = toml.parent().unwrap_or(Path::new(".")).join(&config.module);
    let origin = toml.display().to_string();
    let size = std::fs::metadata(&wasm)
        .with_context(|| {
            format!(
                "{origin}: module = {:?}: cannot read {} (build the rule and copy its .wasm \
                 next to the .toml)",
                config.module,
                wasm.display()
            )
        })?
        .len();
    if size > MAX_MODULE_BYTES {
        bail!(
            "{}: the module is {} MiB, over the {} MiB limit",
            wasm.display(),
            size >> 20,
            MAX_MODULE_BYTES >> 20
        );
    }
    let bytes = std::fs::read(&wasm)
        .with_context(|| format!("{origin}: cannot read {}", wasm.display()))?;
    let module = RuleModule::compile(&bytes).with_context(|| format!("{}", wasm.display()))?;
    validate_init(&config, &module, &origin)?;
    Ok(LoadedRule {
        name,
        config,
        module: Arc::new(module),
    })
}

/// Runs the module's `init` with the config's params once, so that a rejection is reported
/// at load time against the TOML file.
fn validate_init(config: &RuleConfig, module: &RuleModule, origin: &str) -> anyhow::Result<()> {
    module
        .instantiate(
            &config.params_json(),
            config.limits.memory,
            config.limits.time_per_batch,
        )
        .map(drop)
        .with_context(|| format!("{origin}: [params]"))
}

/// The rule configs in `dir`, sorted by name.
pub fn configs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the rules folder {}", dir.display()))?;
    let mut tomls: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    tomls.sort();
    Ok(tomls)
}

/// Loads every rule in `dir`. Rules that fail are returned as errors beside the good ones,
/// so that one broken rule does not stop the others.
pub fn load_dir(dir: &Path) -> anyhow::Result<(Vec<LoadedRule>, Vec<anyhow::Error>)> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for toml in configs_in(dir)? {
        match load(&toml) {
            Ok(rule) if rules.iter().any(|r: &LoadedRule| r.name == rule.name) => {
                errors.push(anyhow::anyhow!(
                    "{}: another rule is already named `{}`",
                    toml.display(),
                    rule.name
                ))
            }
            Ok(rule) => rules.push(rule),
            Err(e) => errors.push(e),
        }
    }
    Ok((rules, errors))
}
