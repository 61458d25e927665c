//! Compiling a module to machine code, within a bound of memory and time whatever the module.
//!
//! Cranelift's cost is not proportional to anything a module can be checked for cheaply: a
//! function of 2 MiB of straight-line code, or one that keeps 700 000 values live, takes
//! hundreds of megabytes and seconds, and parallel compilation multiplies that by the cores.
//! So the engine's binary compiles in a child process of itself (`rulewatch compile-module`,
//! hidden), which limits its own data segment (`RLIMIT_DATA`: every heap and thread stack)
//! and CPU time (`RLIMIT_CPU`) before reading the module, while the parent also kills it at
//! the same wall-clock time. Whatever the module does to the compiler, the engine's process
//! is untouched: the child is refused memory, or killed, and the rule is refused with the
//! bound it crossed. The child answers with the serialized code of this engine's
//! configuration, which the parent loads like a cache entry it wrote itself.
//!
//! Library users and unit tests, whose executable is not rulewatch, compile in their own
//! process unless [`compile_in_children`] is called (the command line calls it).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// The hidden subcommand a child compiles in.
pub const SUBCOMMAND: &str = "compile-module";

static CHILD: OnceLock<PathBuf> = OnceLock::new();

/// Compiles every module from now on in a child process running `exe` (this binary).
pub fn compile_in_children(exe: PathBuf) {
    let _ = CHILD.set(exe);
}

/// The bounds a compilation runs within (`[sandbox] max_compile_memory` and
/// `max_compile_time`).
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most memory the compiler may hold (heap and stacks).
    pub memory: u64,
    /// Longest it may take, in CPU time of all its threads and in wall-clock time.
    pub time: Duration,
}

/// The serialized machine code of `bytes` for `engine`: compiled in a child process within
/// `bounds` when [`compile_in_children`] was called, else here.
pub fn precompile(engine: &Engine, bytes: &[u8], bounds: Bounds) -> Result<Vec<u8>, String> {
    let here = || {
        engine
            .precompile_module(bytes)
            .map_err(|e| invalid(&format!("{e:#}")))
    };
    match CHILD.get().map(|exe| in_child(exe, bytes, bounds)) {
        None => here(),
        Some(Ok(code)) => Ok(code),
        Some(Err(Failed::Compiling(why))) => Err(why),
        // The binary replaced or removed under a running engine, say: a rule must still
        // load (a hot reload), without the bound.
        Some(Err(Failed::Starting(e))) => {
            tracing::warn!(
                "cannot start the compiler process ({e}): compiling in this process, without \
                 the memory and time bound"
            );
            here()
        }
    }
}

/// Why the child gave no code.
enum Failed {
    /// It did not start.
    Starting(std::io::Error),
    /// It refused the module or crossed a bound: the message.
    Compiling(String),
}

fn in_child(exe: &PathBuf, bytes: &[u8], bounds: Bounds) -> Result<Vec<u8>, Failed> {
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .env("RULEWATCH_COMPILE_MEMORY", bounds.memory.to_string())
        .env(
            "RULEWATCH_COMPILE_SECONDS",
            bounds.time.as_secs().max(1).to_string(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Failed::Starting)?;
    // Pipes are drained on threads of their own, so that neither side waits on a full one.
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut out);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        out
    });
    let started = Instant::now();
    let deadline = bounds.time + Duration::from_secs(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = writer.join();
    let code = reader.join().ok().and_then(Result::ok).unwrap_or_default();
    let said = String::from_utf8_lossy(&errors.join().unwrap_or_default()).into_owned();
    let over = |what: &str| {
        format!(
            "compiling it took more than {what}, the bound every compilation runs within \
             ([sandbox] max_compile_memory and max_compile_time in rulewatch.toml): a module \
             this costly to compile is refused (split large functions, or build with \
             optimisations)"
        )
    };
    let memory = format!("{} MiB of memory", bounds.memory >> 20);
    let time = format!("{} of time", humantime::format_duration(bounds.time));
    match status {
        None => Err(Failed::Compiling(over(&time))),
        Some(s) if s.success() && !code.is_empty() => Ok(code),
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            Err(Failed::Compiling(match s.signal() {
                Some(libc::SIGXCPU | libc::SIGKILL) => over(&time),
                // Rust aborts when an allocation fails; so does a thread that cannot start.
                Some(libc::SIGABRT | libc::SIGSEGV) => over(&memory),
                _ if said.contains("memory allocation") => over(&memory),
                _ => invalid(said.trim()),
            }))
        }
    }
}

fn invalid(why: &str) -> String {
    format!(
        "not a valid WebAssembly module: {}",
        crate::text::shown(why)
    )
}

/// The child's side: limits itself, reads a module on stdin, writes its serialized code to
/// stdout. Exits non-zero with the reason on stderr when it cannot compile it.
pub fn child_main(engine: &Engine) -> std::process::ExitCode {
    let limit = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let (Some(memory), Some(seconds)) = (
        limit("RULEWATCH_COMPILE_MEMORY"),
        limit("RULEWATCH_COMPILE_SECONDS"),
    ) {
        let limit = |value| libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads the struct it is given and has no other preconditions.
        unsafe {
            libc::setrlimit(libc::RLIMIT_DATA, &limit(memory));
            libc::setrlimit(libc::RLIMIT_CPU, &limit(seconds));
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("cannot read the module: {e}");
        return std::process::ExitCode::from(2);
    }
    match engine.precompile_module(&bytes) {
        Ok(code) => match std::io::stdout().lock().write_all(&code) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the compiled code: {e}");
                std::process::ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
