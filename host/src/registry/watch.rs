//! Watches a rules folder and turns file changes into rule changes for the pipeline.
//!
//! Events are debounced until the folder has been quiet for [`SETTLE`]; editors' temporary
//! and swap files are ignored; a rule is reloaded only when its TOML or its module changed.
//! Loading (reading, compiling, validating, running `init`) happens on the watcher's thread,
//! off the hot path; the pipeline only swaps in what is ready, at a batch boundary. A change
//! that does not load is reported — file, line or field, reason — and the running version
//! stays.

use super::{LoadedRule, load};
use crate::text::shown_path;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

/// Quiet time after the last file event before the folder is read again.
pub(crate) const SETTLE: Duration = Duration::from_millis(250);

/// A change to the set of running rules.
pub(crate) enum Change {
    /// A rule was added or changed (by name): run this version.
    Upsert(Box<LoadedRule>),
    /// The rule of this name was deleted.
    Remove(String),
    /// A change was rejected (already logged): for the counters and the rule's last error.
    Rejected {
        /// The rule it was meant for, if the file held one before.
        rule: Option<String>,
        /// Why.
        error: String,
    },
}

/// Rule changes from a watched folder, if it is watched.
pub(crate) type Changes = Option<Receiver<Change>>;

/// What a rule was loaded from, to tell real changes from touched files.
#[derive(Clone, PartialEq, Eq)]
struct Fingerprint {
    toml: Vec<u8>,
    module: Option<(u64, SystemTime)>,
}

fn fingerprint(toml: &Path) -> Option<Fingerprint> {
    let text = super::read_config(toml).ok()?;
    let module = super::module_path(toml, &text).and_then(|m| super::module_stamp(toml, &m));
    Some(Fingerprint { toml: text, module })
}

/// Starts watching `dir`, whose rules were loaded at start as `loaded` (config path → rule
/// name). Changes arrive on the returned channel.
pub(crate) fn watch(dir: &Path, loaded: &[(PathBuf, String)]) -> anyhow::Result<Receiver<Change>> {
    let (events_tx, events) = channel();
    let mut watcher = notify::recommended_watcher(events_tx)?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let (tx, rx) = channel();
    let mut known: Known = loaded
        .iter()
        .map(|(path, name)| (path.clone(), (name.clone(), fingerprint(path))))
        .collect();
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("rulewatch-rules".into())
        .spawn(move || {
            let _watcher = watcher; // lives as long as the thread
            while wait_for_quiet(&events) {
                if !rescan(&dir, &mut known, &tx) {
                    return; // the pipeline is gone
                }
            }
        })?;
    info!("watching {} for rule changes", dir_display(loaded));
    Ok(rx)
}

fn dir_display(loaded: &[(PathBuf, String)]) -> String {
    loaded
        .first()
        .and_then(|(p, _)| p.parent())
        .map_or("the rules folder".into(), shown_path)
}

/// Waits for a file event, then until none has come for [`SETTLE`]. False when the watcher
/// stopped.
fn wait_for_quiet(events: &Receiver<notify::Result<notify::Event>>) -> bool {
    // Kubernetes updates ConfigMap and Secret volumes by swapping the `..data` symlink that
    // the visible files point through: the files themselves never change.
    let relevant = |e: &notify::Result<notify::Event>| match e {
        Ok(e) => e
            .paths
            .iter()
            .any(|p| !is_temporary(p) || p.file_name() == Some("..data".as_ref())),
        Err(_) => true,
    };
    loop {
        match events.recv() {
            Ok(e) if relevant(&e) => break,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
    loop {
        match events.recv_timeout(SETTLE) {
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Editors' and tools' temporary files: hidden, backup, swap and partial files.
pub(crate) fn is_temporary(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || [".swp", ".swx", ".tmp", ".part", ".crdownload"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Each rule config seen: the name of the rule it holds (empty if it never loaded) and the
/// fingerprint of what it was loaded from.
type Known = BTreeMap<PathBuf, (String, Option<Fingerprint>)>;

/// Reads the folder again and sends what changed. False if nobody listens any more.
fn rescan(dir: &Path, known: &mut Known, tx: &Sender<Change>) -> bool {
    let configs = match super::configs_in(dir) {
        Ok(c) => c,
        Err(e) => {
            error!("{e:#}");
            return true;
        }
    };
    for gone in known
        .keys()
        .filter(|p| !configs.contains(p))
        .cloned()
        .collect::<Vec<_>>()
    {
        let (name, _) = known.remove(&gone).expect("listed above");
        if name.is_empty() {
            continue; // it never loaded
        }
        info!("{}: deleted; stopping rule {name}", shown_path(&gone));
        if tx.send(Change::Remove(name)).is_err() {
            return false;
        }
    }
    configs.into_iter().all(|path| reload(path, known, tx))
}

/// Loads rule config `path` again if its files changed, and sends what that changes. False
/// if nobody listens any more.
fn reload(path: PathBuf, known: &mut Known, tx: &Sender<Change>) -> bool {
    let print = fingerprint(&path);
    if known.get(&path).is_some_and(|(_, f)| *f == print) {
        return true;
    }
    let loaded = load(&path).and_then(|rule| {
        match known
            .iter()
            .find(|(p, (name, _))| **p != path && *name == rule.name)
        {
            Some((owner, _)) => Err(super::claimed(&path, &rule.name, owner)),
            None => Ok(rule),
        }
    });
    match loaded {
        Ok(rule) => {
            let name = rule.name.clone();
            info!(
                "{}: loaded rule {name} (module sha256 {}); it takes effect at the next batch",
                shown_path(&path),
                rule.module.sha256()
            );
            if let Some((old, _)) = known.get(&path)
                && !old.is_empty()
                && *old != rule.name
                && tx.send(Change::Remove(old.clone())).is_err()
            {
                return false;
            }
            known.insert(path, (name, print));
            if tx.send(Change::Upsert(Box::new(rule))).is_err() {
                return false;
            }
        }
        // A module still being written settles soon; say nothing until it has.
        Err(_) if recently_modified(&path) => {
            warn!(
                "{}: not loadable yet, still changing; waiting",
                shown_path(&path)
            );
        }
        Err(e) => {
            error!(
                "rule change rejected, the running version stays: {}",
                crate::text::one_line(&format!("{e:#}"))
            );
            // Remember it, so the same broken files are not reported again and again.
            let name = known.get(&path).map(|(n, _)| n.clone()).unwrap_or_default();
            let rejected = Change::Rejected {
                rule: Some(name.clone()).filter(|n| !n.is_empty()),
                error: format!("{e:#}"),
            };
            if tx.send(rejected).is_err() {
                return false;
            }
            known.insert(path, (name, print));
        }
    }
    true
}

fn recently_modified(toml: &Path) -> bool {
    let fresh = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < SETTLE)
    };
    let text = super::read_config(toml).unwrap_or_default();
    fresh(toml) || super::module_path(toml, &text).is_some_and(|m| fresh(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_are_ignored() {
        for name in ["crash.toml", "crash.wasm", "my rule.toml"] {
            assert!(!is_temporary(Path::new(name)), "{name}");
        }
        for name in [
            ".crash.toml.swp",
            "crash.toml~",
            "#crash.toml#",
            "crash.wasm.tmp",
            ".goutputstream-X",
        ] {
            assert!(is_temporary(Path::new(name)), "{name}");
        }
    }
}
