//! The rule registry: finds rule configs (`*.toml`) in a rules folder, loads the module each
//! names, and validates both — or uses the built-in crash rule. [`watch`] follows the folder
//! for changes.

pub mod watch;

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
    let module = RuleModule::compile(&bytes).with_context(|| {
        format!(
            "{} (sha256 {})",
            wasm.display(),
            crate::rules::sha256(&bytes)
        )
    })?;
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
        .with_context(|| format!("{origin}: [params] (module sha256 {})", module.sha256()))
}

/// The module a rule config names, resolved next to it, if the text says.
fn module_path(toml: &Path, text: &[u8]) -> Option<PathBuf> {
    let table: toml::Table = toml::from_str(std::str::from_utf8(text).ok()?).ok()?;
    let module = table.get("module")?.as_str()?;
    Some(toml.parent().unwrap_or(Path::new(".")).join(module))
}

/// The rule configs in `dir`, sorted by name, leaving out editors' temporary files.
pub fn configs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the rules folder {}", dir.display()))?;
    let mut tomls: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !watch::is_temporary(p))
        .collect();
    tomls.sort();
    Ok(tomls)
}

/// Every rule in a folder: the good ones with their config files, and the errors of the
/// others, so that one broken rule does not stop the rest.
pub struct Folder {
    /// Loaded rules.
    pub rules: Vec<LoadedRule>,
    /// Config file and rule name of each loaded rule.
    pub paths: Vec<(PathBuf, String)>,
    /// Why the other configs did not load.
    pub errors: Vec<anyhow::Error>,
}

/// Loads every rule in `dir`.
pub fn load_dir(dir: &Path) -> anyhow::Result<Folder> {
    let mut folder = Folder {
        rules: Vec::new(),
        paths: Vec::new(),
        errors: Vec::new(),
    };
    for toml in configs_in(dir)? {
        match load(&toml) {
            Ok(rule) if folder.rules.iter().any(|r| r.name == rule.name) => {
                folder.errors.push(anyhow::anyhow!(
                    "{}: another rule is already named `{}`",
                    toml.display(),
                    rule.name
                ))
            }
            Ok(rule) => {
                folder.paths.push((toml, rule.name.clone()));
                folder.rules.push(rule);
            }
            Err(e) => folder.errors.push(e),
        }
    }
    Ok(folder)
}
