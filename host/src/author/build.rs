//! `rulewatch build DIR`: compiles a rule crate to WebAssembly and puts the module beside its
//! TOML.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target rules are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Builds the rule crate in `dir` (release profile, [`TARGET`]) and copies the module into
/// `dir` as `LIB.wasm`, where the scaffold's TOML names it. Returns the module's path.
pub fn run(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {} (is this a rule crate?)", manifest.display()))?;
    let lib =
        lib_name(&text).with_context(|| format!("{}: no [package] name", manifest.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context("cannot run cargo (is the Rust toolchain installed?)")?;
    if !status.success() {
        bail!(
            "cargo could not build {} for {TARGET} (see above; if the target is missing: \
             rustup target add {TARGET})",
            dir.display()
        );
    }
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{lib}.wasm"));
    let module = dir.join(format!("{lib}.wasm"));
    std::fs::copy(&built, &module)
        .with_context(|| format!("cannot copy {} to {}", built.display(), module.display()))?;
    println!(
        "built {} ({} KiB)",
        module.display(),
        std::fs::metadata(&module)?.len() >> 10
    );
    Ok(module)
}

/// The library name of a crate: `[lib] name`, or the package name with `-` as `_`.
fn lib_name(manifest: &str) -> Option<String> {
    let doc: toml::Table = manifest.parse().ok()?;
    let lib = doc
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str());
    let package = doc.get("package")?.get("name")?.as_str()?;
    Some(lib.unwrap_or(package).replace('-', "_"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lib_name_comes_from_lib_or_package() {
        let m = "[package]\nname = \"failed-logins\"\n";
        assert_eq!(super::lib_name(m).as_deref(), Some("failed_logins"));
        let m = "[package]\nname = \"x\"\n[lib]\nname = \"crash\"\n";
        assert_eq!(super::lib_name(m).as_deref(), Some("crash"));
    }
}
