//! Builds a rule crate of this workspace for wasm32-unknown-unknown. Shared by build.rs (the
//! built-in rule) and the end-to-end tests (test rules), so both build rules the same way.
//!
//! rustup adds the targets of rust-toolchain.toml only when it installs the toolchain itself:
//! a toolchain that was already there (as on a machine whose image ships Rust) lacks the wasm
//! target, so [`ensure_wasm_target`] adds it before the first rule is built.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target rules are compiled for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Makes sure the Rust toolchain of this build can compile for the wasm target, adding the
/// target with rustup when it is missing. Returns a note to show when it added it, or an error
/// that says what to run when it cannot.
pub(crate) fn ensure_wasm_target() -> Result<Option<String>, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if sysroot
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
    {
        return Ok(None);
    }
    // The toolchain this build runs on: rustup names it in the environment, and its sysroot
    // is the toolchain's folder.
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok().or_else(|| {
        sysroot
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    });
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = &toolchain {
        add.args(["--toolchain", toolchain]);
    }
    let how = format!(
        "rustup target add {WASM_TARGET}{}",
        toolchain
            .as_deref()
            .map(|t| format!(" --toolchain {t}"))
            .unwrap_or_default()
    );
    match add.status() {
        Ok(status) if status.success() => Ok(Some(format!(
            "the {WASM_TARGET} target was missing, so rules could not be built: added it \
             with `{how}`"
        ))),
        Ok(_) => Err(format!(
            "the {WASM_TARGET} target is missing and `{how}` failed (see above): run it \
             yourself, then build again"
        )),
        Err(_) => Err(format!(
            "the {WASM_TARGET} target is missing from the Rust toolchain at {} and rustup is \
             not there to add it: install the target for this toolchain (with rustup: `rustup \
             target add {WASM_TARGET}`), then build again",
            sysroot.display()
        )),
    }
}

/// Builds `package` (whose library is named `lib`) with the `rule` profile into
/// `<target>/rules` and returns the module's path. The rules get their own target dir: an
/// outer cargo build holds the lock on the main one.
pub(crate) fn build_rule(workspace: &Path, package: &str, lib: &str) -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("rules");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "--profile", "rule"])
        .args(["--target", WASM_TARGET, "-p", package])
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
            "building {package} for {WASM_TARGET} failed (see the errors above)"
        ));
    }
    Ok(target_dir
        .join(WASM_TARGET)
        .join("rule")
        .join(format!("{lib}.wasm")))
}
