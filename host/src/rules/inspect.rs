//! Counts what a module holds before anything compiles it. Compiling costs time and memory
//! in proportion to the functions, their code and their locals — a few hundred kilobytes can
//! declare a million tiny functions, or a million locals in a four-byte entry — so a module
//! past these bounds is refused with the count that is too high, in milliseconds.

use wasmparser::{Parser, Payload};

/// Largest function body, in bytes of WebAssembly code.
pub(super) const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// Most locals of all functions together.
pub(super) const MAX_LOCALS: u64 = 2_000_000;
/// Most entries of each other kind (types, globals, tables, data and element segments,
/// exports).
pub(super) const MAX_ENTRIES: u32 = 100_000;

/// Checks the counts of `bytes`; `max_functions` is the engine's ceiling.
pub(super) fn check(bytes: &[u8], max_functions: u32) -> Result<(), String> {
    let too_many = |what: &str, n: u64, max: u64| {
        format!("it has {n} {what}, over the limit of {max}: a module this large is refused")
    };
    let mut locals: u64 = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
        let (what, n) = match &payload {
            Payload::Version {
                encoding: wasmparser::Encoding::Component,
                ..
            } => {
                return Err(
                    "it is a component, not a core module (build for wasm32-unknown-unknown)"
                        .into(),
                );
            }
            Payload::FunctionSection(r) => {
                if r.count() > max_functions {
                    return Err(
                        too_many("functions", r.count().into(), max_functions.into())
                            + " ([sandbox] max_functions in rulewatch.toml)",
                    );
                }
                continue;
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > MAX_FUNCTION_BYTES {
                    return Err(format!(
                        "a function of {size} bytes of code, over the limit of \
                         {MAX_FUNCTION_BYTES}: a module this large is refused"
                    ));
                }
                let mut reader = body
                    .get_locals_reader()
                    .map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
                for _ in 0..reader.get_count() {
                    let (n, _) = reader
                        .read()
                        .map_err(|e| format!("not a valid WebAssembly module: {e}"))?;
                    locals += u64::from(n);
                }
                if locals > MAX_LOCALS {
                    return Err(too_many("locals", locals, MAX_LOCALS));
                }
                continue;
            }
            Payload::TypeSection(r) => ("types", r.count()),
            Payload::ImportSection(r) => ("imports", r.count()),
            Payload::TableSection(r) => ("tables", r.count()),
            Payload::MemorySection(r) => ("memories", r.count()),
            Payload::GlobalSection(r) => ("globals", r.count()),
            Payload::ExportSection(r) => ("exports", r.count()),
            Payload::ElementSection(r) => ("element segments", r.count()),
            Payload::DataSection(r) => ("data segments", r.count()),
            _ => continue,
        };
        if what == "memories" && n > 1 {
            return Err(format!(
                "it declares {n} memories: a rule has one linear memory (multi-memory is off)"
            ));
        }
        if n > MAX_ENTRIES {
            return Err(too_many(what, n.into(), MAX_ENTRIES.into()));
        }
    }
    Ok(())
}
