//! Builds a rule crate of this workspace for wasm32-unknown-unknown. Shared by build.rs (the
//! built-in rule) and the end-to-end tests (test rules), so both build rules the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `package` (whose library is named `lib`) with the `rule` profile into
/// `<target>/rules` and returns the module's path. The rules get their own target dir: an
/// outer cargo build holds the lock on the main one.
pub fn build_rule(workspace: &Path, package: &str, lib: &str) -> Result<PathBuf, String> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("rules");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "--profile", "rule"])
        .args(["--target", "wasm32-unknown-unknown", "-p", package])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's settings (clippy's wrapper, host RUSTFLAGS, coverage) are not
        // meant for the rule.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
            "-Ctarget-feature=+simd128",
        )
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo to build {package}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {package} for wasm32-unknown-unknown failed (see the errors above; if \
             the target is missing: rustup target add wasm32-unknown-unknown)"
        ));
    }
    Ok(target_dir
        .join("wasm32-unknown-unknown/rule")
        .join(format!("{lib}.wasm")))
}
