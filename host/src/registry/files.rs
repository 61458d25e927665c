//! Reading a rule's files safely: a rules folder is input like any other, and may hold a
//! FIFO that never ends, a symlink to `/dev/zero` or a module path that climbs out of it.
//!
//! A rule file must be a regular file (symlinks are followed) whose real path is inside the
//! real rules folder (or, for modules, one of `[sandbox] module_dirs`), and is read with a
//! size cap. Kubernetes' ConfigMap volumes work: their files are symlinks through `..data`
//! to a folder inside the volume.

use crate::text::shown_path;
use anyhow::{Context, bail};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads `path`, which must be a regular file inside one of `folders` (the first is the
/// rules folder) of at most `cap` bytes. `what` names it in messages ("rule config",
/// "module").
pub(crate) fn read_capped(
    path: &Path,
    folders: &[&Path],
    cap: u64,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    let real = checked_path(path, folders, what)?;
    let meta = std::fs::metadata(&real)
        .with_context(|| format!("cannot read {what} {}", shown_path(path)))?;
    if meta.len() > cap {
        bail!(
            "{what} {} is {} bytes, over the limit of {cap} bytes ([sandbox] max_module_bytes \
             in rulewatch.toml sets it)",
            shown_path(path),
            meta.len()
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(&real)
        .and_then(|f| f.take(cap + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {what} {}", shown_path(path)))?;
    if bytes.len() as u64 > cap {
        bail!(
            "{what} {} grew past the limit of {cap} bytes while being read",
            shown_path(path)
        );
    }
    Ok(bytes)
}

/// The real path of `path` once it is known to be a regular file inside one of `folders`;
/// files of other kinds are refused by name before anything opens them (opening a FIFO
/// blocks).
pub(crate) fn checked_path(path: &Path, folders: &[&Path], what: &str) -> anyhow::Result<PathBuf> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", shown_path(path)))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "a directory"
        } else {
            file_kind(&kind)
        };
        bail!(
            "{what} {} is {kind}, not a regular file: rules are read from regular files only",
            shown_path(path)
        );
    }
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {what} {}", shown_path(path)))?;
    let inside = folders
        .iter()
        .any(|folder| std::fs::canonicalize(folder).is_ok_and(|root| real.starts_with(root)));
    if !inside {
        bail!(
            "{what} {} is outside the rules folder {} (it resolves to {}): a rule's files must \
             be in its folder, or a module in one of [sandbox] module_dirs \
             (RULEWATCH_MODULE_DIRS)",
            shown_path(path),
            shown_path(folders.first().map_or(Path::new("."), |f| *f)),
            shown_path(&real)
        );
    }
    Ok(real)
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ok.toml"), "x").unwrap();
        assert_eq!(
            read_capped(&d.join("ok.toml"), &[d], 10, "rule config").unwrap(),
            b"x"
        );

        std::fs::write(d.join("big.wasm"), [0u8; 11]).unwrap();
        let e = read_capped(&d.join("big.wasm"), &[d], 10, "module").unwrap_err();
        assert!(e.to_string().contains("over the limit of 10 bytes"), "{e}");

        std::os::unix::fs::symlink("/dev/zero", d.join("zero.wasm")).unwrap();
        let e = read_capped(&d.join("zero.wasm"), &[d], 10, "module").unwrap_err();
        assert!(
            e.to_string().contains("is a device, not a regular file"),
            "{e}"
        );

        let fifo = std::ffi::CString::new(d.join("pipe.toml").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let e = read_capped(&d.join("pipe.toml"), &[d], 10, "rule config").unwrap_err();
        assert!(e.to_string().contains("is a FIFO"), "{e}");

        std::fs::create_dir(d.join("dir.toml")).unwrap();
        let e = read_capped(&d.join("dir.toml"), &[d], 10, "rule config").unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");

        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("m.wasm"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("m.wasm"), d.join("link.wasm")).unwrap();
        let e = read_capped(&d.join("link.wasm"), &[d], 10, "module").unwrap_err();
        assert!(e.to_string().contains("outside the rules folder"), "{e}");
        // ... unless its folder is one modules may come from.
        let trusted = [d, outside.path()];
        assert_eq!(
            read_capped(&d.join("link.wasm"), &trusted, 10, "module").unwrap(),
            b"x"
        );
        let e = read_capped(&d.join("../../etc/passwd"), &[d], 1 << 20, "module").unwrap_err();
        assert!(e.to_string().contains("outside the rules folder"), "{e}");

        // A ConfigMap-style link inside the folder is fine.
        std::fs::create_dir(d.join("..2026_11_30")).unwrap();
        std::fs::write(d.join("..2026_11_30/r.toml"), "y").unwrap();
        std::os::unix::fs::symlink("..2026_11_30", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/r.toml", d.join("r.toml")).unwrap();
        assert_eq!(
            read_capped(&d.join("r.toml"), &[d], 10, "rule config").unwrap(),
            b"y"
        );
    }
}
