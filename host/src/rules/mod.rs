//! Rule modules: compiling and validating a `.wasm` against the ABI, and running it in the
//! sandbox with one call per batch.
//!
//! A [`RuleModule`] is compiled once; a [`RuleInstance`] is a running copy with its own
//! memory, initialised with params. Everything a module can do wrong — fail to compile,
//! import something, speak another ABI version, reject its params, trap, run past its
//! budget, grow past its memory cap, answer with a malformed result — becomes a
//! [`RuleError`] that names the rule and says what to do.

pub mod builtin;
mod cache;
pub mod compile;
mod inspect;
pub mod sandbox;
pub mod wasi;

use crate::config::LimitsConfig;
use crate::config::sandbox::ceilings;
use crate::text::shown;
use rulewatch_sdk::FieldType;
use rulewatch_sdk::abi;
use sandbox::{Guest, Limits};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{InstancePre, Linker, Memory, Store, Trap, TypedFunc};

/// What went wrong with a rule module.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleError {
    /// The module cannot be used: bad bytes, imports, missing exports, other ABI version.
    Invalid(String),
    /// `init` rejected the params.
    Init(String),
    /// The module trapped (panicked, divided by zero, ...).
    Trap(String),
    /// The module ran past its time budget for one call.
    Timeout(Duration),
    /// The module tried to grow its memory past the cap.
    Memory(u64),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Invalid(m) => write!(f, "invalid module: {m}"),
            RuleError::Init(m) => write!(f, "init rejected the params: {m}"),
            RuleError::Trap(m) => write!(f, "trapped: {m}"),
            RuleError::Timeout(d) => write!(
                f,
                "ran longer than its time budget of {} for one batch (an endless loop?); \
                 raise limits.time_per_batch if the rule is just slow",
                humantime::format_duration(*d)
            ),
            RuleError::Memory(m) => write!(
                f,
                "tried to use more than its memory limit of {} MiB; raise limits.memory \
                 if the rule needs it",
                m >> 20
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// The functions a module must export, with their signatures, as ABI.md lists them.
const EXPORTS: &[(&str, &str)] = &[
    ("rulewatch_abi_version", "() -> i32"),
    ("rulewatch_fields", "() -> i64"),
    ("rulewatch_input", "(i32) -> i32"),
    ("rulewatch_init", "(i32) -> i32"),
    ("rulewatch_filter", "(i32) -> i64"),
    ("rulewatch_alert", "(i32) -> i64"),
    ("rulewatch_error", "() -> i64"),
];

/// A compiled and validated rule module.
pub struct RuleModule {
    pre: InstancePre<Guest>,
    name: Arc<str>,
    sha256: String,
    fields: Vec<(String, FieldType)>,
}

impl RuleModule {
    /// Compiles `bytes`, the module of the rule `name`, and checks them against the ABI: no
    /// imports but the [`wasi`] subset, the expected exports, the same ABI version, a
    /// well-formed field declaration. Everything the module runs while being checked (its
    /// start function, `_initialize`, the version and field probes) runs under the rule's
    /// own `limits`; its size is checked before it is compiled.
    pub fn compile(name: &str, bytes: &[u8], limits: &LimitsConfig) -> Result<Self, RuleError> {
        let invalid = |m: String| RuleError::Invalid(m);
        let sha256 = sha256(bytes);
        let ceilings = ceilings();
        inspect::check(bytes, ceilings.max_functions).map_err(invalid)?;
        let engine = sandbox::engine();
        let bounds = compile::Bounds {
            memory: ceilings.max_compile_memory,
            time: ceilings.max_compile_time,
        };
        let module = cache::module(engine, bytes, &sha256, bounds).map_err(invalid)?;
        wasi::check_imports(&module).map_err(invalid)?;
        let mut linker = Linker::new(engine);
        wasi::link(&mut linker).expect("the WASI subset links once per linker");
        let pre = linker.instantiate_pre(&module).map_err(|e| {
            invalid(format!(
                "cannot be instantiated: {}",
                shown(&format!("{e:#}"))
            ))
        })?;
        if module.get_export("_start").is_some() && module.get_export("rulewatch_filter").is_none()
        {
            return Err(invalid(
                "it is a WASI program (it exports `_start`), not a rule module: build Go rules \
                 with -buildmode=c-shared (`rulewatch build` does) and export the functions of \
                 sdk/ABI.md"
                    .into(),
            ));
        }
        let name: Arc<str> = name.into();
        let mut probe = Instance::new(&pre, &name, limits.memory, limits.time_per_batch)?;
        let version = probe.typed::<(), u32>("rulewatch_abi_version")?;
        let version = probe.call(&version, ())?;
        if version != abi::VERSION {
            return Err(invalid(format!(
                "it was built for rulewatch ABI version {version}, but this rulewatch speaks \
                 version {}; rebuild the rule with a rulewatch-sdk of ABI version {}",
                abi::VERSION,
                abi::VERSION
            )));
        }
        for (name, signature) in EXPORTS {
            if module.get_export(name).is_none() {
                return Err(invalid(format!(
                    "it does not export `{name}: {signature}` (see sdk/ABI.md; the SDKs export \
                     it: Rust's export_rule!, Go's rulewatch.Export, AssemblyScript's register \
                     with `export * from \"rulewatch-sdk/assembly/exports\"`)"
                )));
            }
        }
        let fields_fn = probe.typed::<(), u64>("rulewatch_fields")?;
        let packed = probe.call(&fields_fn, ())?;
        let declared = probe.read(packed)?;
        let max = ceilings.max_fields;
        if declared.len() > max * (MAX_FIELD_NAME + 8) {
            return Err(invalid(format!(
                "its field declaration is {} bytes: more than {max} fields of at most \
                 {MAX_FIELD_NAME} bytes can hold ([sandbox] max_fields in rulewatch.toml)",
                declared.len()
            )));
        }
        let fields = parse_fields(&String::from_utf8_lossy(declared), max).map_err(invalid)?;
        Ok(RuleModule {
            pre,
            name,
            sha256,
            fields,
        })
    }

    /// The sha256 of the module's bytes, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The fields the module declared, in declaration order.
    pub fn fields(&self) -> &[(String, FieldType)] {
        &self.fields
    }

    /// Starts a sandboxed copy of the module and runs `init` with `params_json`.
    pub fn instantiate(
        &self,
        params_json: &[u8],
        memory: u64,
        time_per_batch: Duration,
    ) -> Result<RuleInstance, RuleError> {
        let mut inst = Instance::new(&self.pre, &self.name, memory, time_per_batch)?;
        let funcs = Funcs {
            input: inst.typed("rulewatch_input")?,
            init: inst.typed("rulewatch_init")?,
            filter: inst.typed("rulewatch_filter")?,
            alert: inst.typed("rulewatch_alert")?,
            error: inst.typed("rulewatch_error")?,
        };
        let mut rule = RuleInstance {
            inst,
            funcs,
            bitmap: Vec::new(),
        };
        let status = rule.call_with_input(params_json, |i, f, len| i.call(&f.init, len));
        let status = rule.explain_trap(status)?;
        if status != 0 {
            let message = rule.last_error();
            return Err(RuleError::Init(message));
        }
        Ok(rule)
    }
}

/// Longest field name a module may declare, in bytes.
pub const MAX_FIELD_NAME: usize = 256;

fn parse_fields(text: &str, max: usize) -> Result<Vec<(String, FieldType)>, String> {
    let fields: Vec<(String, FieldType)> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (ty, name) = line
                .split_once(' ')
                .ok_or_else(|| format!("malformed field declaration `{}`", shown(line)))?;
            if name.is_empty() || name.len() > MAX_FIELD_NAME || name.chars().any(char::is_control)
            {
                return Err(format!(
                    "field name `{}` must be 1 to {MAX_FIELD_NAME} bytes without control \
                     characters",
                    shown(name)
                ));
            }
            let ty = FieldType::parse(ty).ok_or_else(|| {
                format!(
                    "field `{name}` has unknown type `{}` (expected str or num)",
                    shown(ty)
                )
            })?;
            Ok((name.to_owned(), ty))
        })
        .collect::<Result<_, _>>()?;
    if fields.len() > max {
        return Err(format!(
            "it declares {} fields, over the limit of {max} ([sandbox] max_fields in \
             rulewatch.toml)",
            fields.len()
        ));
    }
    Ok(fields)
}

/// The sha256 of a module's bytes, in hex: how modules are named in logs and alerts.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A store with its instance and memory: the plumbing shared by validation and running.
struct Instance {
    store: Store<Guest>,
    instance: wasmtime::Instance,
    memory: Memory,
    budget: u64,
    time_per_batch: Duration,
}

impl Instance {
    /// Instantiates the module under the rule's memory cap and time budget, running its
    /// start function and then its `_initialize` export (a WASI reactor's), if it has them.
    fn new(
        pre: &InstancePre<Guest>,
        rule: &Arc<str>,
        memory: u64,
        time_per_batch: Duration,
    ) -> Result<Self, RuleError> {
        let guest = Guest {
            limits: Limits::new(memory),
            wasi: wasi::State::new(rule.clone()),
        };
        let mut store = Store::new(sandbox::engine(), guest);
        store.limiter(|g| &mut g.limits);
        let budget = sandbox::ticks(time_per_batch);
        store.set_epoch_deadline(budget);
        let instance = pre.instantiate(&mut store).map_err(|e| {
            if store.data().limits.memory_exceeded {
                RuleError::Memory(memory)
            } else if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                RuleError::Timeout(time_per_batch)
            } else {
                RuleError::Invalid(format!(
                    "cannot be instantiated: {}",
                    shown(&format!("{e:#}"))
                ))
            }
        })?;
        let memory_export = instance.get_memory(&mut store, "memory").ok_or_else(|| {
            RuleError::Invalid("it does not export its linear memory as `memory`".into())
        })?;
        let mut instance = Instance {
            store,
            instance,
            memory: memory_export,
            budget,
            time_per_batch,
        };
        if let Ok(initialize) = instance
            .instance
            .get_typed_func::<(), ()>(&mut instance.store, "_initialize")
        {
            instance.call(&initialize, ())?;
        }
        Ok(instance)
    }

    fn typed<P, R>(&mut self, name: &str) -> Result<TypedFunc<P, R>, RuleError>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        self.instance
            .get_typed_func(&mut self.store, name)
            .map_err(|e| {
                let signature = EXPORTS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("", |(_, s)| s);
                RuleError::Invalid(format!(
                    "export `{name}` is missing or does not have the signature {signature}: {e}"
                ))
            })
    }

    /// Calls a guest function under the time budget, mapping failures to [`RuleError`].
    fn call<P, R>(&mut self, f: &TypedFunc<P, R>, args: P) -> Result<R, RuleError>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        self.store.set_epoch_deadline(self.budget);
        self.store.data_mut().wasi.begin_call();
        f.call(&mut self.store, args).map_err(|e| {
            let limits = &self.store.data().limits;
            if limits.memory_exceeded {
                return RuleError::Memory(limits.memory as u64);
            }
            if let Some(exit) = e.downcast_ref::<wasi::Exit>() {
                return RuleError::Trap(exit.0.clone());
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => RuleError::Timeout(self.time_per_batch),
                Some(trap) => RuleError::Trap(trap.to_string()),
                None => RuleError::Trap(shown(&format!("{e:#}")).into_owned()),
            }
        })
    }

    /// Copies `len` bytes at a guest pointer out of its memory.
    fn read(&self, packed: u64) -> Result<&[u8], RuleError> {
        let (ptr, len) = abi::unpack(packed);
        self.memory
            .data(&self.store)
            .get(ptr as usize..ptr as usize + len as usize)
            .ok_or_else(|| RuleError::Trap("returned a pointer outside its memory".into()))
    }

    /// A message from the module, bounded and with control characters escaped.
    fn read_message(&self, packed: u64) -> Result<String, RuleError> {
        Ok(crate::text::shown_bytes(self.read(packed)?))
    }
}

struct Funcs {
    input: TypedFunc<u32, u32>,
    init: TypedFunc<u32, u32>,
    filter: TypedFunc<u32, u64>,
    alert: TypedFunc<u32, u64>,
    error: TypedFunc<(), u64>,
}

/// A running, initialised rule module. Not shareable between threads of work: each pipeline
/// owns its instances.
pub struct RuleInstance {
    inst: Instance,
    funcs: Funcs,
    bitmap: Vec<u8>,
}

impl RuleInstance {
    /// Copies `input` into the guest's input buffer, then calls `f` with its length.
    fn call_with_input<R>(
        &mut self,
        input: &[u8],
        f: impl FnOnce(&mut Instance, &Funcs, u32) -> Result<R, RuleError>,
    ) -> Result<R, RuleError> {
        let len = u32::try_from(input.len())
            .map_err(|_| RuleError::Trap("batch larger than 4 GiB".into()))?;
        let ptr = self.inst.call(&self.funcs.input, len)?;
        self.inst
            .memory
            .write(&mut self.inst.store, ptr as usize, input)
            .map_err(|_| RuleError::Trap("returned an input buffer outside its memory".into()))?;
        f(&mut self.inst, &self.funcs, len)
    }

    /// Adds the module's own message (a panic's, say) to a trap, unless the module exited
    /// and said why itself (it is not called again then).
    fn explain_trap<T>(&mut self, result: Result<T, RuleError>) -> Result<T, RuleError> {
        match result {
            Err(RuleError::Trap(reason)) if !self.inst.store.data().wasi.exited => {
                let message = self.last_error();
                Err(RuleError::Trap(format!("{reason}: {message}")))
            }
            other => other,
        }
    }

    /// The module's last error message (from `init` or a panic), if any.
    fn last_error(&mut self) -> String {
        let f = &self.funcs.error;
        match self
            .inst
            .call(f, ())
            .and_then(|p| self.inst.read_message(p))
        {
            Ok(m) if !m.is_empty() => m,
            _ => "(the module gave no message)".into(),
        }
    }

    fn bitmap_call(
        &mut self,
        batch: &[u8],
        rows: usize,
        which: fn(&Funcs) -> &TypedFunc<u32, u64>,
    ) -> Result<&[u8], RuleError> {
        let packed = self.call_with_input(batch, |i, f, len| i.call(which(f), len));
        let packed = self.explain_trap(packed)?;
        let bits = self.inst.read(packed)?;
        if bits.len() != rows.div_ceil(8) {
            return Err(RuleError::Trap(format!(
                "answered {} bytes for {rows} rows; expected a bitmap of {} bytes",
                bits.len(),
                rows.div_ceil(8)
            )));
        }
        self.bitmap.clear();
        self.bitmap.extend_from_slice(bits);
        Ok(&self.bitmap)
    }

    /// Runs the filter over an event batch; returns the selection bitmap.
    pub fn filter(&mut self, batch: &[u8], rows: usize) -> Result<&[u8], RuleError> {
        self.bitmap_call(batch, rows, |f| &f.filter)
    }

    /// Runs the alert decision over a window batch; returns the alert bitmap.
    pub fn alert(&mut self, batch: &[u8], rows: usize) -> Result<&[u8], RuleError> {
        self.bitmap_call(batch, rows, |f| &f.alert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_declarations_parse() {
        assert_eq!(
            parse_fields("str severity\nnum level\n", 256).unwrap(),
            vec![
                ("severity".to_owned(), FieldType::Str),
                ("level".to_owned(), FieldType::Num)
            ]
        );
        assert!(
            parse_fields("bool x\n", 256)
                .unwrap_err()
                .contains("unknown type `bool`")
        );
        assert!(parse_fields("nospace\n", 256).is_err());
        assert!(
            parse_fields("str a\nstr b\n", 1)
                .unwrap_err()
                .contains("2 fields")
        );
        let long = format!("str {}\n", "x".repeat(MAX_FIELD_NAME + 1));
        assert!(
            parse_fields(&long, 256)
                .unwrap_err()
                .contains("1 to 256 bytes")
        );
        assert!(parse_fields("str a\u{1b}[2J\n", 256).is_err());
    }

    #[test]
    fn garbage_is_not_a_module() {
        let e = RuleModule::compile("x", b"not wasm", &LimitsConfig::default())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("invalid module: not a valid WebAssembly module")
        );
    }

    #[test]
    fn the_builtin_rule_loads_and_filters() {
        let module =
            RuleModule::compile("crash", builtin::CRASH_WASM, &LimitsConfig::default()).unwrap();
        assert_eq!(module.fields().len(), 2);
        let config = builtin::crash_config();
        let mut rule = module
            .instantiate(&config.params_json(), 16 << 20, Duration::from_secs(1))
            .unwrap();
        let mut w = abi::BatchWriter::default();
        w.reset(&[abi::KIND_I64, abi::KIND_STR, abi::KIND_STR, abi::KIND_STR]);
        for (sev, content) in [
            ("High", "App crash"),
            ("Low", "App crash"),
            ("Critical", "CRASH!"),
        ] {
            w.push_i64(0, 0);
            w.push_str(1, b"u");
            w.push_str(2, sev.as_bytes());
            w.push_str(3, content.as_bytes());
            w.end_row();
        }
        let mut buf = Vec::new();
        w.finish(&mut buf);
        assert_eq!(rule.filter(&buf, 3).unwrap(), &[0b101]);

        let e = module
            .instantiate(br#"{"keyword":"crash"}"#, 16 << 20, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("missing field `severities`"), "{e}");
    }
}
