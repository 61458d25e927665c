//! Compiled modules kept on disk, so that a process does not compile again what an earlier
//! one compiled: compiling is most of a start (~60 ms of CPU for the built-in rule, ~1.7 s
//! for a Go rule), and every `replay`, `test` and restart would pay it.
//!
//! An entry is named by the SHA-256 of the module's bytes and by the engine's compatibility
//! hash (wasmtime's version and configuration): a changed module or a new rulewatch never
//! finds an old entry. Loading an entry runs the machine code in it, so the cache must be as
//! trusted as the binary: it lives in a directory of the user's own (created `0700`; one
//! that another user owns or may write into is not used), entries are written to a temporary
//! name and renamed into place (readers never see half a file), and anything that goes
//! wrong — no home, a full disk, a read-only file system, an entry from elsewhere — only
//! means compiling as if there were no cache.
//!
//! Where: `RULEWATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/rulewatch`, else
//! `$HOME/.cache/rulewatch`; `RULEWATCH_CACHE_DIR=off` turns it off.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use wasmtime::{Engine, Module};

/// Entries kept: the rules of a folder, their recent versions and the tests' modules.
const KEEP: usize = 64;

/// The module compiled from `bytes` (whose SHA-256 is `sha256`), from the cache if an
/// earlier process compiled it, else compiled now and cached.
pub(crate) fn module(engine: &Engine, bytes: &[u8], sha256: &str) -> wasmtime::Result<Module> {
    let Some(dir) = dir() else {
        return Module::new(engine, bytes);
    };
    let path = dir.join(format!("{sha256}-{:016x}.cwasm", compatibility(engine)));
    // SAFETY: the entry was written by `Module::serialize` of this engine configuration
    // (its name and wasmtime's header check say so) into a directory only this user can
    // write, which is as trusted as the binary itself (see the module's header).
    if let Ok(module) = unsafe { Module::deserialize_file(engine, &path) } {
        tracing::debug!("compiled module from the cache: {}", path.display());
        // Used: kept longest when the cache is pruned.
        let _ = std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(module);
    }
    let module = Module::new(engine, bytes)?;
    if let Err(e) = store(&module, &dir, &path).and_then(|()| prune(&dir)) {
        tracing::debug!("not caching the compiled module in {}: {e}", dir.display());
    }
    Ok(module)
}

/// Removes the entries used least recently beyond the newest [`KEEP`].
fn prune(dir: &Path) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            entries.push((std::fs::metadata(&path)?.modified()?, path));
        }
    }
    if entries.len() > KEEP {
        entries.sort();
        for (_, path) in &entries[..entries.len() - KEEP] {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// Writes the compiled `module` to `path` in `dir`, whole or not at all.
fn store(module: &Module, dir: &Path, path: &Path) -> anyhow::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let compiled = module.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".{}-{n}.tmp", std::process::id()));
    let written = std::fs::write(&temp, &compiled).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    Ok(written?)
}

/// A short hash of what makes compiled code usable by `engine`.
fn compatibility(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// The cache directory, made if need be; `None` if there is none to use.
fn dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("RULEWATCH_CACHE_DIR") {
            Some(d) if d == "off" => return None,
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
                Some(d) => PathBuf::from(d).join("rulewatch"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/rulewatch"),
            },
        };
        match private(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::debug!("not caching compiled modules in {}: {e}", dir.display());
                None
            }
        }
    })
    .clone()
}

/// Makes `dir` (mode 0700) if it is missing, and checks that only this user can write it.
fn private(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        anyhow::ensure!(meta.uid() == me, "the directory belongs to another user");
        anyhow::ensure!(
            meta.mode() & 0o022 == 0,
            "others may write into the directory"
        );
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        anyhow::bail!("only on Unix")
    }
}
