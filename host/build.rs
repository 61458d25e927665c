//! Compiles the built-in crash rule (`rules/crash`) to WebAssembly so that the binary can
//! embed it: `cargo run` on a fresh clone needs nothing but the toolchain named in
//! rust-toolchain.toml.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("host/ has a parent").to_path_buf();
    for watched in ["rules/crash", "sdk", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(env("OUT_DIR"));
    let wasm = build_rule(&root, "rulewatch-rule-crash", "crash");
    std::fs::copy(&wasm, out.join("crash.wasm")).expect("copy crash.wasm into OUT_DIR");
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name}"))
}

/// Builds one rule crate of the workspace for wasm32 in its own target dir (the outer build
/// holds the lock on the main one) and returns the module's path.
fn build_rule(root: &Path, package: &str, lib: &str) -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("rules");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "--profile", "rule", "--target", "wasm32-unknown-unknown"])
        .args(["-p", package, "--target-dir"])
        .arg(&target_dir)
        // The outer build's settings (clippy's wrapper, host RUSTFLAGS, coverage) are not
        // meant for the rule.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("run cargo to build the built-in rule");
    assert!(
        status.success(),
        "building {package} for wasm32-unknown-unknown failed (see the errors above; if the \
         target is missing: rustup target add wasm32-unknown-unknown)"
    );
    target_dir
        .join("wasm32-unknown-unknown/rule")
        .join(format!("{lib}.wasm"))
}
