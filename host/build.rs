//! Compiles the built-in crash rule (`rules/crash`) to WebAssembly so that the binary can
//! embed it: `cargo run` on a fresh clone needs nothing but a Rust toolchain installed with
//! rustup (the wasm target is added when it is missing).

mod build_rule;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("host/ has a parent");
    for watched in ["rules/crash", "sdk", "Cargo.lock", "host/build_rule.rs"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    if let Some(note) = build_rule::ensure_wasm_target().unwrap_or_else(|e| fail(e)) {
        println!("cargo:warning={note}");
    }
    let wasm =
        build_rule::build_rule(root, "rulewatch-rule-crash", "crash").unwrap_or_else(|e| fail(e));
    std::fs::copy(&wasm, out.join("crash.wasm")).expect("copy crash.wasm into OUT_DIR");
}

/// Ends the build with `message` on one line (cargo shows it under the build script's stderr).
fn fail(message: String) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
