//! The only imports a rule module may have: a capability-free subset of WASI preview 1 (what
//! Go's `wasip1` runtime needs to start) and AssemblyScript's `env.abort`.
//!
//! Nothing here reaches outside the sandbox. There are no files, sockets, arguments or
//! environment variables; writes to stdout and stderr become the rule's log lines (tagged
//! with its name, rate-limited, counted). The clocks and the random bytes restart at every
//! call: a rule's decisions depend only on its params and the rows it is given, never on
//! the wall clock, so a replay after a crash decides what the first run decided.
//! `proc_exit` and `env.abort` stop the call with the module's own words. Any other import
//! is refused when the module loads, by name.

use crate::text::shown;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{Caller, ExternType, Linker, Module};

use super::sandbox::Guest;

/// WASI preview 1's module name.
const WASI: &str = "wasi_snapshot_preview1";

/// The WASI functions a module may import (sdk/ABI.md lists them with what each does).
pub const WASI_FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "random_get",
    "poll_oneoff",
    "sched_yield",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "proc_exit",
];

/// Virtual nanoseconds a clock read advances the clocks by.
const CLOCK_STEP_NS: u64 = 1_000;
/// Longest log line kept; the rest of a longer line is cut.
const MAX_LINE: usize = 1024;
/// Log lines one instance may write per second before the rest are only counted.
const LINES_PER_SECOND: u32 = 20;

// What one host call may make the host do. A host call cannot be interrupted, so each is
// bounded to about a millisecond at most; the time it takes counts against the batch's budget
// like the module's own (the epoch ticks on), and a module that calls again and again is
// stopped at its next loop head or call like any endless loop.
/// Most buffers one `fd_write` takes (Linux's IOV_MAX): more is `EINVAL`.
pub const MAX_IOVECS: usize = 1024;
/// Most bytes one `fd_write` takes; it reports a short write past them, as a pipe does.
pub const MAX_WRITE: usize = 16 << 10;
/// Most bytes one `random_get` fills: more is `EINVAL`.
pub const MAX_RANDOM: usize = 1 << 20;
/// Most subscriptions one `poll_oneoff` answers: more is `EINVAL`.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

// WASI errno values.
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;

/// The per-instance state behind the imports.
pub struct State {
    rule: Arc<str>,
    clock_ns: u64,
    random: u64,
    line: Vec<u8>,
    /// The descriptor `line` was written to.
    line_fd: i32,
    /// The start of what the module wrote to stderr during the current call.
    stderr: String,
    /// Set when the module called `proc_exit` or `env.abort`: it must not be called again.
    pub exited: bool,
    window: Instant,
    logged_in_window: u32,
    suppressed: u64,
}

/// The error a host function stops a call with: the module exited or aborted.
#[derive(Debug)]
pub struct Exit(pub String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Exit {}

impl State {
    /// The state of a new instance of the rule `rule`.
    pub fn new(rule: Arc<str>) -> Self {
        State {
            rule,
            clock_ns: 0,
            random: 0,
            line: Vec::new(),
            line_fd: 1,
            stderr: String::new(),
            exited: false,
            window: Instant::now(),
            logged_in_window: 0,
            suppressed: 0,
        }
    }

    /// Restarts the clocks and the random sequence: every call sees the same ones.
    pub fn begin_call(&mut self) {
        self.clock_ns = 0;
        self.random = 0x5275_6c65_7761_7463; // "Rulewatc"
        self.stderr.clear();
        self.flush();
    }

    fn flush(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.log(&line);
        }
    }

    fn read_clock(&mut self) -> u64 {
        self.clock_ns += CLOCK_STEP_NS;
        self.clock_ns
    }

    /// splitmix64: a fixed sequence from the seed `begin_call` sets.
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Takes bytes written to stdout or stderr: complete lines are logged.
    fn write(&mut self, fd: i32, bytes: &[u8]) {
        if fd != self.line_fd {
            self.flush();
            self.line_fd = fd;
        }
        if fd == 2 && self.stderr.len() < MAX_LINE {
            let room = MAX_LINE - self.stderr.len();
            self.stderr
                .push_str(&String::from_utf8_lossy(&bytes[..bytes.len().min(room)]));
        }
        for &b in bytes {
            if b == b'\n' || self.line.len() >= MAX_LINE {
                let line = std::mem::take(&mut self.line);
                self.log(&line);
                if b == b'\n' {
                    continue;
                }
            }
            self.line.push(b);
        }
    }

    fn log(&mut self, line: &[u8]) {
        count_line(&self.rule);
        if self.window.elapsed() >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(
                    rule = %self.rule,
                    "{} more lines the rule wrote were not logged (at most {LINES_PER_SECOND} \
                     a second per instance are)",
                    self.suppressed
                );
            }
            self.window = Instant::now();
            self.logged_in_window = 0;
            self.suppressed = 0;
        }
        if self.logged_in_window >= LINES_PER_SECOND {
            if self.suppressed == 0 {
                tracing::warn!(
                    rule = %self.rule,
                    "the rule writes more than {LINES_PER_SECOND} lines a second: the rest are \
                     counted (rulewatch_rule_log_lines), not logged"
                );
            }
            self.suppressed += 1;
            return;
        }
        self.logged_in_window += 1;
        let line = crate::text::shown_bytes(line);
        if self.line_fd == 2 {
            tracing::warn!(rule = %self.rule, "rule says (stderr): {line}");
        } else {
            tracing::info!(rule = %self.rule, "rule says: {line}");
        }
    }

    /// The error that ends a call when the module exits: its code and what it wrote to
    /// stderr up to the first blank line (Go's panic message).
    fn exit(&mut self, code: i32) -> Exit {
        self.exited = true;
        let said = self.stderr.split("\n\n").next().unwrap_or("").trim();
        Exit(if said.is_empty() {
            format!("the module exited with code {code}")
        } else {
            format!("the module exited with code {code}: {}", shown(said))
        })
    }
}

static LOG_LINES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count_line(rule: &str) {
    let mut lines = LOG_LINES.lock().unwrap_or_else(|e| e.into_inner());
    match lines.get_mut(rule) {
        Some(n) => *n += 1,
        None => {
            lines.insert(rule.to_owned(), 1);
        }
    }
}

/// Lines the rule `rule` has written to stdout or stderr since the process started.
pub fn log_lines_of(rule: &str) -> u64 {
    let lines = LOG_LINES.lock().unwrap_or_else(|e| e.into_inner());
    lines.get(rule).copied().unwrap_or(0)
}

/// Refuses a module whose imports are not all in the subset, naming the first that is not.
pub fn check_imports(module: &Module) -> Result<(), String> {
    for import in module.imports() {
        let (from, name) = (import.module(), import.name());
        let function = matches!(import.ty(), ExternType::Func(_));
        let allowed = function
            && match from {
                WASI => WASI_FUNCTIONS.contains(&name),
                "env" => name == "abort",
                _ => false,
            };
        if !allowed {
            let why = if from == WASI {
                "a rule has no files, sockets, arguments or environment"
            } else {
                "rules have no host functions but a few of WASI's and env.abort"
            };
            return Err(format!(
                "it imports `{}::{}`, which rules may not use: {why} (the imports a rule may \
                 have are listed in sdk/ABI.md; build for wasm32-unknown-unknown, Go's \
                 wasip1 or AssemblyScript)",
                shown(from),
                shown(name)
            ));
        }
    }
    Ok(())
}

/// The guest's memory and the store's state, or `EFAULT`'s stand-in when there is none.
fn memory<'a>(caller: &'a mut Caller<'_, Guest>) -> Option<(&'a mut [u8], &'a mut Guest)> {
    let memory = caller.get_export("memory")?.into_memory()?;
    Some(memory.data_and_store_mut(caller))
}

fn put(mem: &mut [u8], at: i32, bytes: &[u8]) -> Result<(), i32> {
    let at = at as u32 as usize;
    mem.get_mut(at..at + bytes.len())
        .ok_or(EFAULT)?
        .copy_from_slice(bytes);
    Ok(())
}

fn get<const N: usize>(mem: &[u8], at: usize) -> Result<[u8; N], i32> {
    mem.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(EFAULT)
}

fn u32_at(mem: &[u8], at: usize) -> Result<u32, i32> {
    get::<4>(mem, at).map(u32::from_le_bytes)
}

fn u64_at(mem: &[u8], at: usize) -> Result<u64, i32> {
    get::<8>(mem, at).map(u64::from_le_bytes)
}

/// Runs `f` on the guest's memory and state; its `Err` is the errno returned.
fn with(
    caller: &mut Caller<'_, Guest>,
    f: impl FnOnce(&mut [u8], &mut State) -> Result<(), i32>,
) -> i32 {
    match memory(caller) {
        Some((mem, guest)) => f(mem, &mut guest.wasi).err().unwrap_or(SUCCESS),
        None => EFAULT,
    }
}

/// Writes zero counts: no arguments, no environment.
fn nothing(caller: &mut Caller<'_, Guest>, count: i32, size: i32) -> i32 {
    with(caller, |mem, _| {
        put(mem, count, &0u32.to_le_bytes())?;
        put(mem, size, &0u32.to_le_bytes())
    })
}

/// Defines the subset in `linker`.
pub fn link(linker: &mut Linker<Guest>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "args_sizes_get",
        |mut c: Caller<'_, Guest>, n: i32, s: i32| nothing(&mut c, n, s),
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut c: Caller<'_, Guest>, n: i32, s: i32| nothing(&mut c, n, s),
    )?;
    linker.func_wrap(WASI, "args_get", |_: i32, _: i32| SUCCESS)?;
    linker.func_wrap(WASI, "environ_get", |_: i32, _: i32| SUCCESS)?;
    linker.func_wrap(WASI, "sched_yield", || SUCCESS)?;
    linker.func_wrap(WASI, "fd_close", |_: i32| EBADF)?;
    // stdin is empty; there is nothing else to read.
    linker.func_wrap(
        WASI,
        "fd_read",
        |mut c: Caller<'_, Guest>, fd: i32, _iovs: i32, _n: i32, read: i32| {
            if fd != 0 {
                return EBADF;
            }
            with(&mut c, |mem, _| put(mem, read, &0u32.to_le_bytes()))
        },
    )?;
    linker.func_wrap(WASI, "fd_prestat_get", |_: i32, _: i32| EBADF)?;
    linker.func_wrap(WASI, "fd_prestat_dir_name", |_: i32, _: i32, _: i32| EBADF)?;
    linker.func_wrap(WASI, "fd_fdstat_set_flags", |fd: i32, _: i32| {
        if (0..3).contains(&fd) { SUCCESS } else { EBADF }
    })?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_get",
        |mut c: Caller<'_, Guest>, fd: i32, at: i32| {
            if !(0..3).contains(&fd) {
                return EBADF;
            }
            // filetype character_device, no flags, every right on what it is (a stream).
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            with(&mut c, |mem, _| put(mem, at, &stat))
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_res_get",
        |mut c: Caller<'_, Guest>, _: i32, at: i32| {
            with(&mut c, |mem, _| put(mem, at, &CLOCK_STEP_NS.to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut c: Caller<'_, Guest>, _id: i32, _precision: i64, at: i32| {
            with(&mut c, |mem, s| put(mem, at, &s.read_clock().to_le_bytes()))
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut c: Caller<'_, Guest>, at: i32, len: i32| {
            with(&mut c, |mem, s| {
                let (at, len) = (at as u32 as usize, len as u32 as usize);
                if len > MAX_RANDOM {
                    return Err(EINVAL);
                }
                let buf = mem.get_mut(at..at + len).ok_or(EFAULT)?;
                for chunk in buf.chunks_mut(8) {
                    let r = s.next_random().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                Ok(())
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut c: Caller<'_, Guest>, fd: i32, iovs: i32, n: i32, written: i32| {
            with(&mut c, |mem, s| {
                if fd != 1 && fd != 2 {
                    return Err(EBADF);
                }
                let n = n as u32 as usize;
                if n > MAX_IOVECS {
                    return Err(EINVAL);
                }
                let mut total = 0;
                for i in 0..n {
                    let iov = iovs as u32 as usize + 8 * i;
                    let (at, len) = (u32_at(mem, iov)? as usize, u32_at(mem, iov + 4)? as usize);
                    let bytes = mem.get(at..at + len).ok_or(EFAULT)?;
                    let take = len.min(MAX_WRITE - total);
                    s.write(fd, &bytes[..take]);
                    total += take;
                    if total == MAX_WRITE {
                        break;
                    }
                }
                put(mem, written, &(total as u32).to_le_bytes())
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |mut c: Caller<'_, Guest>, subs: i32, events: i32, n: i32, done: i32| {
            with(&mut c, |mem, s| poll(mem, s, subs, events, n, done))
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |mut c: Caller<'_, Guest>, code: i32| {
        Err::<(), _>(c.data_mut().wasi.exit(code).into())
    })?;
    linker.func_wrap(
        "env",
        "abort",
        |mut c: Caller<'_, Guest>, message: i32, file: i32, line: i32, column: i32| {
            let text = match memory(&mut c) {
                Some((mem, _)) => format!(
                    "{} at {}:{line}:{column}",
                    assemblyscript_string(mem, message),
                    assemblyscript_string(mem, file)
                ),
                None => "(no memory to read the message from)".into(),
            };
            c.data_mut().wasi.exited = true;
            Err::<(), _>(Exit(format!("the module aborted: {}", shown(&text))).into())
        },
    )?;
    Ok(())
}

/// Answers every subscription at once: a clock's timeout passes (the virtual clocks move on
/// by it); waiting on a file descriptor fails with `EBADF`.
fn poll(
    mem: &mut [u8],
    s: &mut State,
    subs: i32,
    events: i32,
    n: i32,
    done: i32,
) -> Result<(), i32> {
    let n = n as u32 as usize;
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Err(EINVAL);
    }
    for i in 0..n {
        let sub = subs as u32 as usize + 48 * i;
        let userdata = get::<8>(mem, sub)?;
        let tag = get::<1>(mem, sub + 8)?[0];
        let mut event = [0u8; 32];
        event[..8].copy_from_slice(&userdata);
        event[10] = tag;
        if tag == 0 {
            let timeout = u64_at(mem, sub + 24)?;
            let absolute = get::<2>(mem, sub + 40)?[0] & 1 == 1;
            s.clock_ns = if absolute {
                s.clock_ns.max(timeout)
            } else {
                s.clock_ns.saturating_add(timeout)
            };
        } else {
            event[8..10].copy_from_slice(&(EBADF as u16).to_le_bytes());
        }
        put(mem, events + 32 * i as i32, &event)?;
    }
    put(mem, done, &(n as u32).to_le_bytes())
}

/// An AssemblyScript string (UTF-16LE; its length in bytes at `at - 4`), at most 1 KiB of
/// it, or a note when it cannot be read.
fn assemblyscript_string(mem: &[u8], at: i32) -> String {
    let at = at as u32 as usize;
    if at == 0 {
        return "(no message)".into();
    }
    let Some(len) = at.checked_sub(4).and_then(|l| u32_at(mem, l).ok()) else {
        return "(unreadable message)".into();
    };
    let len = (len as usize).min(2 * MAX_LINE);
    match mem.get(at..at + len) {
        Some(bytes) => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|u| u16::from_le_bytes([u[0], u[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        None => "(unreadable message)".into(),
    }
}
