//! Compiled modules kept on disk, so that a process does not compile again what an earlier
//! one compiled: compiling is most of a start (~60 ms of CPU for the built-in rule, ~1.7 s
//! for a Go rule), and every `replay`, `test` and restart would pay it.
//!
//! An entry is named by the SHA-256 of the module's bytes and by the engine's compatibility
//! hash (wasmtime's version and configuration): a changed module or a new rulewatch never
//! finds an old entry. Loading an entry runs the machine code in it, so the cache must be as
//! trusted as the binary: it lives in a directory of the user's own (created `0700`), used
//! by its real path, and only if no one else can write into it or swap a folder on the way
//! to it (each is this user's or root's, and sticky if others may write into it; a symbolic
//! link someone else made is refused). Entries are written to a fresh temporary file, synced
//! and renamed into place, never changed in place (readers never see half a file, and a
//! loaded module's file stays as it was); anything that goes wrong — no home, a full disk, a
//! read-only file system, an entry from elsewhere — only means compiling as if there were no
//! cache.
//!
//! wasmtime trusts what it deserializes (a damaged entry can crash the process), so the
//! directory's trust is not enough against damage: each entry carries a SHA-256 of its name
//! and code, checked over the whole entry before wasmtime sees it; an entry that fails is
//! compiled again and replaced.
//!
//! Where: `RULEWATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/rulewatch`, else
//! `$HOME/.cache/rulewatch`; `RULEWATCH_CACHE_DIR=off` turns it off.

use super::compile::{Bounds, precompile};
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use wasmtime::{Engine, Module};

/// Entries kept: the rules of a folder, their recent versions and the tests' modules.
const KEEP: usize = 64;

/// Temporary files start so (and end in `.tmp`); those older than [`STALE`] were left by a
/// process that died while writing, and are removed.
const TEMP_PREFIX: &str = ".rulewatch-";
const STALE: Duration = Duration::from_secs(3600);

/// How an entry starts: this tag, then the SHA-256 of its name and the code after it.
const MAGIC: &[u8; 16] = b"rulewatch-cwasm1";
/// Largest entry read; anything larger was not written here.
const MAX_ENTRY: u64 = 1 << 30;

/// The module compiled from `bytes` (whose SHA-256 is `sha256`), from the cache if an
/// earlier process compiled it and the entry is intact, else compiled now within `bounds`
/// and cached.
pub(crate) fn module(
    engine: &Engine,
    bytes: &[u8],
    sha256: &str,
    bounds: Bounds,
) -> Result<Module, String> {
    let Some(dir) = dir() else {
        return compiled(engine, bytes, bounds).map(|(module, _)| module);
    };
    let name = format!("{sha256}-{:016x}.cwasm", compatibility(engine));
    let path = dir.join(&name);
    match read_entry(&path, &name) {
        Ok(code) => {
            // SAFETY: `code` is what `compiled` produced for this engine configuration (the
            // entry's name says so, and wasmtime's header checks it), unchanged since: its
            // digest matches, and it came from a directory only this user can write.
            if let Ok(module) = unsafe { Module::deserialize(engine, &code) } {
                tracing::debug!("compiled module from the cache: {}", path.display());
                // Used: kept longest when the cache is pruned.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()));
                return Ok(module);
            }
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => tracing::warn!(
            "compiling the module again: the cache entry {} is damaged ({e})",
            path.display()
        ),
        Err(_) => {}
    }
    let (module, code) = compiled(engine, bytes, bounds)?;
    if let Err(e) = store(&code, &name, &dir, &path).and_then(|()| prune(&dir)) {
        tracing::debug!("not caching the compiled module in {}: {e}", dir.display());
    }
    Ok(module)
}

/// Compiles `bytes` within `bounds`: the module and its serialized code.
fn compiled(engine: &Engine, bytes: &[u8], bounds: Bounds) -> Result<(Module, Vec<u8>), String> {
    let code = precompile(engine, bytes, bounds)?;
    // SAFETY: `code` was just serialized by this engine's configuration, in this process or
    // a child process of this binary.
    let module = unsafe { Module::deserialize(engine, &code) }.map_err(|e| format!("{e:#}"))?;
    Ok((module, code))
}

/// The digest an entry named `name` holding `code` carries.
fn digest(name: &str, code: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(code);
    h.finalize().into()
}

/// The code of the entry at `path` (named `name`), if it is whole: its tag and digest
/// match; `InvalidData` if not.
fn read_entry(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let mut entry = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_ENTRY)
        .read_to_end(&mut entry)?;
    let damaged = |why: &str| Error::new(ErrorKind::InvalidData, why.to_owned());
    let head = MAGIC.len() + 32;
    if entry.len() < head || &entry[..MAGIC.len()] != MAGIC {
        return Err(damaged("not an entry this rulewatch wrote"));
    }
    if entry[MAGIC.len()..head] != digest(name, &entry[head..]) {
        return Err(damaged("its digest does not match its contents"));
    }
    entry.drain(..head);
    Ok(entry)
}

/// Removes the entries used least recently beyond the newest [`KEEP`], and stale temporary
/// files. Entries another process removes meanwhile are passed over.
fn prune(dir: &Path) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    let now = SystemTime::now();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".cwasm") {
            entries.push((modified, path));
        } else if name.starts_with(TEMP_PREFIX)
            && name.ends_with(".tmp")
            && now.duration_since(modified).is_ok_and(|age| age > STALE)
        {
            let _ = std::fs::remove_file(path);
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

/// Writes the entry `name` of `code` to `path` in `dir`, whole or not at all: into a temporary
/// file of its own (a random name, created only if new), synced, then renamed.
fn store(code: &[u8], name: &str, dir: &Path, path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let temp = dir.join(format!("{TEMP_PREFIX}{:016x}.tmp", fastrand::u64(..)));
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    let written = (file.write_all(MAGIC))
        .and_then(|()| file.write_all(&digest(name, code)))
        .and_then(|()| file.write_all(code))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
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
            Ok(real) => Some(real),
            Err(e) => {
                tracing::debug!("not caching compiled modules in {}: {e}", dir.display());
                None
            }
        }
    })
    .clone()
}

/// Makes `dir` (mode 0700) if it is missing, checks that only this user can write into it
/// or swap a folder on the way to it, and returns its real path.
fn private(dir: &Path) -> anyhow::Result<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let link = std::fs::symlink_metadata(dir)?;
        anyhow::ensure!(
            !link.file_type().is_symlink() || link.uid() == me,
            "it is a symbolic link another user made"
        );
        let real = std::fs::canonicalize(dir)?;
        let meta = std::fs::metadata(&real)?;
        anyhow::ensure!(meta.uid() == me, "the directory belongs to another user");
        anyhow::ensure!(
            meta.mode() & 0o022 == 0,
            "others may write into the directory"
        );
        for parent in real.ancestors().skip(1) {
            let m = std::fs::metadata(parent)?;
            let (owner, mode) = (m.uid(), m.mode());
            anyhow::ensure!(
                owner == me || owner == 0,
                "{} belongs to another user",
                parent.display()
            );
            // Sticky: others may add entries but not rename or remove this user's.
            anyhow::ensure!(
                mode & 0o022 == 0 || mode & 0o1000 != 0,
                "others may replace folders in {}",
                parent.display()
            );
        }
        Ok(real)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        anyhow::bail!("only on Unix")
    }
}
