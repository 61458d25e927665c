//! The rule registry: finds rule configs (`*.toml`) in a rules folder, loads the module each
//! names, and validates both — or uses the built-in crash rule. [`watch`] follows the folder
//! for changes.

mod files;
pub(crate) mod watch;

use crate::config::sandbox;
use crate::config::{Role, RuleConfig};
use crate::rules::{RuleModule, builtin};
use crate::text::shown_path;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::error;
use watch::Changes;

/// A loaded rule: its name, role, config and compiled module, ready to start.
#[derive(Clone)]
pub(crate) struct LoadedRule {
    /// The rule's name.
    pub name: String,
    /// Published, or the shadow of another rule.
    pub role: Role,
    /// Its configuration.
    pub config: RuleConfig,
    /// Its compiled module.
    pub module: Arc<RuleModule>,
}

/// The built-in crash rule.
pub(crate) fn builtin() -> anyhow::Result<LoadedRule> {
    let config = builtin::crash_config();
    let module = RuleModule::compile("crash", builtin::CRASH_WASM, &config.limits)
        .context("the built-in crash rule does not load (a build problem)")?;
    validate_init(&config, &module, "built-in crash.toml")?;
    Ok(LoadedRule {
        name: "crash".into(),
        role: Role::Primary,
        config,
        module: Arc::new(module),
    })
}

/// Loads one rule from its TOML file and the module it names, both read from the TOML's
/// folder within the engine's ceilings ([`sandbox::ceilings`]).
pub(crate) fn load(toml: &Path) -> anyhow::Result<LoadedRule> {
    let folder = folder_of(toml);
    let cap = sandbox::ceilings().max_module_bytes;
    // Paths may hold anything: shown escaped wherever they are printed.
    let origin = shown_path(toml);
    check_file_name(toml)?;
    let text = read_config(toml)?;
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{origin}: not UTF-8 text (a rule config is TOML)"))?;
    let config = RuleConfig::parse(&text, &origin)?;
    let (name, role) = config.name_or(toml);
    let origin = format!("{origin} (rule {name})");
    let wasm = folder.join(&config.module);
    let bytes =
        files::read_capped(&wasm, &module_folders(folder), cap, "module").with_context(|| {
            format!(
                "{origin}: module = \"{}\" (build the rule and copy its .wasm next to the \
                 .toml)",
                shown_path(&config.module)
            )
        })?;
    let module = RuleModule::compile(&name, &bytes, &config.limits).with_context(|| {
        format!(
            "{origin}: module {} (sha256 {})",
            shown_path(&wasm),
            crate::rules::sha256(&bytes)
        )
    })?;
    validate_init(&config, &module, &origin)?;
    Ok(LoadedRule {
        name,
        role,
        config,
        module: Arc::new(module),
    })
}

/// Refuses a rule config whose file name (without `.toml`) is not a rule name: it names the
/// rule unless `name` is set, and appears in every message about the rule.
fn check_file_name(toml: &Path) -> anyhow::Result<()> {
    let stem = toml.file_stem().map(|s| s.to_string_lossy());
    match stem.as_deref().map(crate::config::check_rule_name) {
        Some(Ok(())) => Ok(()),
        Some(Err(why)) => bail!(
            "{}: refused, its file name {why}; rename the file",
            shown_path(toml)
        ),
        None => bail!("{}: a rule config needs a file name", shown_path(toml)),
    }
}

/// The folders a rule's module may be in: its TOML's, then `[sandbox] module_dirs`.
fn module_folders(folder: &Path) -> Vec<&Path> {
    let mut folders = vec![folder];
    folders.extend(sandbox::ceilings().module_dirs.iter().map(PathBuf::as_path));
    folders
}

/// The folder a rule's files must be in: its TOML's.
fn folder_of(toml: &Path) -> &Path {
    toml.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
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
    Some(folder_of(toml).join(module))
}

/// A rule config's bytes: a regular file in its folder, of at most a 16th of the module
/// size cap (64 KiB at least).
fn read_config(toml: &Path) -> anyhow::Result<Vec<u8>> {
    let cap = (sandbox::ceilings().max_module_bytes / 16).max(64 << 10);
    files::read_capped(toml, &[folder_of(toml)], cap, "rule config")
}

/// A module's size and modification time, if it is a regular file in the rule's folder.
fn module_stamp(toml: &Path, module: &Path) -> Option<(u64, std::time::SystemTime)> {
    let real = files::checked_path(module, &module_folders(folder_of(toml)), "module").ok()?;
    let meta = std::fs::metadata(real).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The rule configs in `dir`, sorted by name, leaving out editors' temporary files.
pub(crate) fn configs_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the rules folder {}", shown_path(dir)))?;
    let mut tomls: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !watch::is_temporary(p))
        .collect();
    tomls.sort();
    Ok(tomls)
}

/// The rules of `--rules DIR`, or the built-in crash rule; with `watch`, also the changes of
/// the folder from now on. Broken rules are reported; it is an error only if no rule is left.
pub(crate) fn load_rules(
    dir: Option<&Path>,
    watch: bool,
) -> anyhow::Result<(Vec<LoadedRule>, Changes)> {
    let Some(dir) = dir else {
        return Ok((vec![builtin()?], None));
    };
    let folder = load_dir(dir)?;
    for e in &folder.errors {
        // A file's name or text may hold anything: one line, control characters escaped.
        error!(
            "rule rejected: {}",
            crate::text::one_line(&format!("{e:#}"))
        );
    }
    if folder.rules.is_empty() {
        if folder.errors.is_empty() {
            bail!(
                "no rules in {}: it has no *.toml rule configs",
                shown_path(dir)
            );
        }
        bail!(
            "no usable rule in {} (see the errors above)",
            shown_path(dir)
        );
    }
    let changes = if watch {
        Some(watch::watch(dir, &folder.paths)?)
    } else {
        None
    };
    Ok((folder.rules, changes))
}

/// Every rule in a folder: the good ones with their config files, and the errors of the
/// others, so that one broken rule does not stop the rest.
pub(crate) struct Folder {
    /// Loaded rules.
    pub rules: Vec<LoadedRule>,
    /// Config file and rule name of each loaded rule.
    pub paths: Vec<(PathBuf, String)>,
    /// Why the other configs did not load.
    pub errors: Vec<anyhow::Error>,
}

/// Loads every rule in `dir`. When several configs claim one name, the order of files does
/// not decide: the one whose file is named after the rule (`crash.toml` for `crash`) runs,
/// and the others are refused naming it; when none is, all of them are refused.
pub(crate) fn load_dir(dir: &Path) -> anyhow::Result<Folder> {
    let mut folder = Folder {
        rules: Vec::new(),
        paths: Vec::new(),
        errors: Vec::new(),
    };
    let mut loaded: Vec<(PathBuf, LoadedRule)> = Vec::new();
    for toml in configs_in(dir)? {
        match load(&toml) {
            Ok(rule) => loaded.push((toml, rule)),
            Err(e) => folder.errors.push(e),
        }
    }
    // Why each loaded rule cannot keep its name, if it cannot.
    let refusals: Vec<Option<anyhow::Error>> = loaded
        .iter()
        .map(|(toml, rule)| {
            let rivals: Vec<&PathBuf> = loaded
                .iter()
                .filter(|(p, r)| r.name == rule.name && p != toml)
                .map(|(p, _)| p)
                .collect();
            if rivals.is_empty() || named_after(toml, &rule.name) {
                return None;
            }
            Some(match rivals.iter().find(|p| named_after(p, &rule.name)) {
                Some(owner) => claimed(toml, &rule.name, owner),
                None => anyhow::anyhow!(
                    "{}: claims the name `{}`, as {} do: none of them runs until one name is \
                     left (name a rule after its file, or give each a name of its own)",
                    shown_path(toml),
                    rule.name,
                    rivals
                        .iter()
                        .map(|p| shown_path(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        })
        .collect();
    for ((toml, rule), refusal) in loaded.into_iter().zip(refusals) {
        match refusal {
            Some(e) => folder.errors.push(e),
            None => {
                folder.paths.push((toml, rule.name.clone()));
                folder.rules.push(rule);
            }
        }
    }
    Ok(folder)
}

/// The refusal of `toml`, which claims the name of the rule `owner` holds.
pub(crate) fn claimed(toml: &Path, name: &str, owner: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: claims the name `{name}` of the rule in {}; give it a name of its own, or \
         `shadow = true` to run it as that rule's shadow",
        shown_path(toml),
        shown_path(owner)
    )
}

/// Whether the config file `toml` is named after the rule `name` (a shadow's file never is).
pub(crate) fn named_after(toml: &Path, name: &str) -> bool {
    toml.file_stem().is_some_and(|stem| stem == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("crash.wasm"), builtin::CRASH_WASM).unwrap();
        let toml = include_str!("../../../rules/crash/crash.toml");
        for (name, head) in files {
            std::fs::write(dir.path().join(name), format!("{head}\n{toml}")).unwrap();
        }
        dir
    }

    #[test]
    fn the_order_of_files_never_decides_which_rule_has_a_name() {
        // `a-crash.toml` sorts first and claims `crash`: the file named after it keeps it.
        let dir = folder(&[("a-crash.toml", "name = \"crash\""), ("crash.toml", "")]);
        let f = load_dir(dir.path()).unwrap();
        assert_eq!(f.rules.len(), 1);
        assert!(f.paths[0].0.ends_with("crash.toml") && f.paths[0].1 == "crash");
        let e = format!("{:#}", f.errors[0]);
        assert!(
            e.contains("a-crash.toml: claims the name `crash` of the rule in"),
            "{e}"
        );

        // Neither is named after it: neither runs.
        let dir = folder(&[("x.toml", "name = \"z\""), ("y.toml", "name = \"z\"")]);
        let f = load_dir(dir.path()).unwrap();
        assert!(f.rules.is_empty());
        assert_eq!(f.errors.len(), 2);

        // A shadow is not a claim.
        let dir = folder(&[
            ("crash-next.toml", "name = \"crash\"\nshadow = true"),
            ("crash.toml", ""),
        ]);
        assert_eq!(load_dir(dir.path()).unwrap().rules.len(), 2);
    }
}
