//! Checkpoints: each rule's windows and watermark together with the input offsets they
//! cover, written atomically (temporary file, fsync, rename), with a checksum so that a
//! damaged file is refused instead of silently resetting state.

pub mod writer;

use crate::window::{Snapshot, SnapshotRef};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format version written in the header.
pub const VERSION: u32 = 1;

const FILE: &str = "checkpoint";

/// Everything needed to resume: per-source offsets and every rule's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Source names (`topic/partition`) by source index, as the watermarks refer to them.
    pub sources: Vec<String>,
    /// The next offset to read, per source name.
    pub offsets: BTreeMap<String, i64>,
    /// Triggers that produced rows so far (the console's batch numbers go on from here).
    pub triggers: u64,
    /// State per rule name.
    pub rules: BTreeMap<String, RuleState>,
}

/// One rule's checkpointed state and the settings it is valid for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The window settings the state was built with (`size/delay/key`); state built with
    /// other settings is not restored.
    pub window: String,
    /// Open windows and the watermark.
    pub windows: Snapshot,
    /// Keys in cooldown: key, start and end of the window of their last alert.
    #[serde(default)]
    pub cooldown: Vec<(String, i64, i64)>,
}

/// A [`Checkpoint`] as it is written, borrowing the live state instead of copying it.
#[derive(Serialize)]
pub struct CheckpointRef<'a> {
    /// As [`Checkpoint::sources`].
    pub sources: &'a [String],
    /// As [`Checkpoint::offsets`].
    pub offsets: &'a BTreeMap<String, i64>,
    /// As [`Checkpoint::triggers`].
    pub triggers: u64,
    /// As [`Checkpoint::rules`].
    pub rules: BTreeMap<&'a str, RuleStateRef<'a>>,
}

/// A [`RuleState`] as it is written.
#[derive(Serialize)]
pub struct RuleStateRef<'a> {
    /// As [`RuleState::window`].
    pub window: &'a str,
    /// As [`RuleState::windows`].
    pub windows: SnapshotRef<'a>,
    /// As [`RuleState::cooldown`].
    pub cooldown: Vec<(&'a str, i64, i64)>,
}

/// The bytes of a checkpoint's body (what [`save_encoded`] writes).
pub fn encode(cp: &impl Serialize) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(cp).context("serialising the checkpoint")
}

/// The checkpoint file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes `cp` to `dir` atomically: readers see the old checkpoint or the new one, whole.
pub fn save(dir: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    save_encoded(dir, &encode(cp)?)
}

/// Writes an [`encode`]d checkpoint body to `dir` atomically.
pub fn save_encoded(dir: &Path, body: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the checkpoint folder {}", dir.display()))?;
    let header = format!(
        "rulewatch-checkpoint v{VERSION} sha256={} bytes={}\n",
        hex(&Sha256::digest(body)),
        body.len()
    );
    let tmp = dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(header.as_bytes())?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path(dir))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write the checkpoint in {}", dir.display()))
}

/// Reads the checkpoint in `dir`: `None` if there is none; an error if it is damaged.
pub fn load(dir: &Path) -> anyhow::Result<Option<Checkpoint>> {
    let file = path(dir);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    parse(&bytes)
        .with_context(|| {
            format!(
                "the checkpoint {} is damaged, so the window state it holds cannot be restored; \
             move it away to investigate, or start with --fresh-start to discard it (alerts of \
             windows open at the time may then be missed or under-counted)",
                file.display()
            )
        })
        .map(Some)
}

fn parse(bytes: &[u8]) -> anyhow::Result<Checkpoint> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .context("no header line")?;
    let header = std::str::from_utf8(&bytes[..nl]).context("header is not text")?;
    let body = &bytes[nl + 1..];
    let mut words = header.split(' ');
    if words.next() != Some("rulewatch-checkpoint") {
        bail!("not a rulewatch checkpoint");
    }
    let version = words.next().unwrap_or("");
    if version != format!("v{VERSION}") {
        bail!("checkpoint format {version}, but this rulewatch reads v{VERSION}");
    }
    let sum = words
        .next()
        .and_then(|w| w.strip_prefix("sha256="))
        .context("no checksum in the header")?;
    let len: usize = words
        .next()
        .and_then(|w| w.strip_prefix("bytes="))
        .and_then(|n| n.parse().ok())
        .context("no length in the header")?;
    if body.len() != len {
        bail!("truncated: {} bytes of {len}", body.len());
    }
    if hex(&Sha256::digest(body)) != sum {
        bail!("checksum mismatch");
    }
    serde_json::from_slice(body).context("unreadable contents")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut w = crate::window::Windows::new(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(10),
        );
        w.observe(0, 1_000, "user_1", true);
        Checkpoint {
            sources: vec!["logs/0".into()],
            offsets: [("logs/0".to_owned(), 42)].into(),
            triggers: 3,
            rules: [(
                "crash".to_owned(),
                RuleState {
                    window: "10000/10000/user_id".into(),
                    windows: w.snapshot(),
                    cooldown: vec![("user_1".into(), 0, 10_000)],
                },
            )]
            .into(),
        }
    }

    #[test]
    fn the_borrowed_form_writes_what_the_owned_form_reads() {
        let mut w = crate::window::Windows::new(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(10),
        );
        w.observe(0, 1_000, "user_1", true);
        let cp = sample();
        let by_ref = CheckpointRef {
            sources: &cp.sources,
            offsets: &cp.offsets,
            triggers: cp.triggers,
            rules: [(
                "crash",
                RuleStateRef {
                    window: "10000/10000/user_id",
                    windows: SnapshotRef(&w),
                    cooldown: vec![("user_1", 0, 10_000)],
                },
            )]
            .into(),
        };
        assert_eq!(encode(&by_ref).unwrap(), encode(&cp).unwrap());
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let cp = sample();
        save(dir.path(), &cp).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(cp.clone()));
        let mut next = cp;
        next.offsets.insert("logs/0".into(), 99);
        save(dir.path(), &next).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(next));
        assert!(!dir.path().join("checkpoint.tmp").exists());
    }

    #[test]
    fn damaged_checkpoints_are_refused_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &sample()).unwrap();
        let file = path(dir.path());
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        for (bad, why) in [
            (flipped, "checksum mismatch"),
            (good[..good.len() - 5].to_vec(), "truncated"),
            (b"garbage\n{}".to_vec(), "not a rulewatch checkpoint"),
        ] {
            std::fs::write(&file, bad).unwrap();
            let e = format!("{:#}", load(dir.path()).unwrap_err());
            assert!(e.contains(why) && e.contains("--fresh-start"), "{e}");
        }
    }
}
