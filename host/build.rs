//! Compiles the built-in crash rule (`rules/crash`) to WebAssembly so that the binary can
//! embed it: `cargo run` on a fresh clone needs nothing but the toolchain named in
//! rust-toolchain.toml.

mod build_rule;

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("host/ has a parent");
    for watched in ["rules/crash", "sdk", "Cargo.lock", "host/build_rule.rs"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let wasm = build_rule::build_rule(root, "rulewatch-rule-crash", "crash")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&wasm, out.join("crash.wasm")).expect("copy crash.wasm into OUT_DIR");
}
