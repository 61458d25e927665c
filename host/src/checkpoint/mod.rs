//! Checkpoints: per input partition, every rule's windows and watermark for that partition
//! together with the offset they cover. A partition's record is the unit of hand-over: the
//! instance that gets the partition restores its record and reads on from its offset.
//!
//! Two stores (see [`store`]): a local file holding every partition's record, written
//! atomically (temporary file, fsync, rename), the single-node default; or a compacted
//! Kafka topic with one record per partition, so that state can move between machines.
//! Both carry a checksum so that a damaged checkpoint is refused instead of silently
//! resetting state.

pub(crate) mod store;
pub(crate) mod writer;

use crate::repartition::Upstream;
use crate::window::{Snapshot, SnapshotRef, WindowSettings};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format version written in the header.
pub(crate) const VERSION: u32 = 2;

const FILE: &str = "checkpoint";

/// The local checkpoint file: every partition's record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Triggers that produced rows so far (the console's batch numbers go on from here).
    pub triggers: u64,
    /// Record per partition name (`topic/partition`).
    pub partitions: BTreeMap<String, PartitionState>,
}

/// One partition's record: the next offset to read and every rule's state for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartitionState {
    /// The next offset to read.
    pub offset: i64,
    /// State per rule name.
    pub rules: BTreeMap<String, RuleState>,
}

/// One rule's checkpointed state for one partition and the settings it is valid for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RuleState {
    /// The window settings the state was built with; state built with other settings is
    /// not restored.
    pub window: WindowSettings,
    /// Open windows and the watermark.
    pub windows: Snapshot,
    /// Keys in cooldown: key, start and end of the window of their last alert.
    #[serde(default)]
    pub cooldown: Vec<(String, i64, i64)>,
    /// For a partition of a repartition topic: what it saw of each input partition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream: BTreeMap<String, Upstream>,
}

/// A [`PartitionState`] as it is written, borrowing the live state instead of copying it.
#[derive(Serialize)]
pub(crate) struct PartitionStateRef<'a> {
    /// As [`PartitionState::offset`].
    pub offset: i64,
    /// As [`PartitionState::rules`].
    pub rules: BTreeMap<&'a str, RuleStateRef<'a>>,
}

/// A [`RuleState`] as it is written.
#[derive(Serialize)]
pub(crate) struct RuleStateRef<'a> {
    /// As [`RuleState::window`].
    pub window: &'a WindowSettings,
    /// As [`RuleState::windows`].
    pub windows: SnapshotRef<'a>,
    /// As [`RuleState::cooldown`].
    pub cooldown: Vec<(&'a str, i64, i64)>,
    /// As [`RuleState::upstream`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a BTreeMap<String, Upstream>>,
}

/// A partition's record, encoded: its name and the bytes of its [`PartitionState`].
pub(crate) struct Record {
    /// `topic/partition`.
    pub partition: String,
    /// The JSON of its [`PartitionState`].
    pub body: Vec<u8>,
}

/// The body of the checkpoint file holding `records` (each an encoded [`PartitionState`]),
/// without decoding them again.
pub(crate) fn compose<'a>(
    triggers: u64,
    records: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Vec<u8> {
    let size: usize = (records.clone().into_iter())
        .map(|(name, body)| name.len() + body.len() + 8)
        .sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend(format!(r#"{{"triggers":{triggers},"partitions":{{"#).bytes());
    for (i, (name, body)) in records.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(serde_json::to_vec(name).expect("a string serialises"));
        out.push(b':');
        out.extend_from_slice(body);
    }
    out.extend_from_slice(b"}}");
    out
}

/// The bytes of a checkpoint's body (what [`save_encoded`] writes).
pub(crate) fn encode(cp: &impl Serialize) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(cp).context("serialising the checkpoint")
}

/// The checkpoint file in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes `cp` to `dir` atomically: readers see the old checkpoint or the new one, whole.
#[cfg(test)]
pub(crate) fn save(dir: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    save_encoded(dir, &encode(cp)?)
}

/// Writes an [`encode`]d checkpoint body to `dir` atomically.
pub(crate) fn save_encoded(dir: &Path, body: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the checkpoint folder {}", dir.display()))?;
    let header = header(body);
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
pub(crate) fn load(dir: &Path) -> anyhow::Result<Option<Checkpoint>> {
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

/// The header line that frames a checkpoint body: format version, checksum and length.
pub(crate) fn header(body: &[u8]) -> String {
    format!(
        "rulewatch-checkpoint v{VERSION} sha256={} bytes={}\n",
        hex(&Sha256::digest(body)),
        body.len()
    )
}

/// A framed body ([`header`] + body), as a Kafka record value.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = header(body).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Checks a framed body and decodes it.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
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
        bail!(
            "checkpoint format {version}, but this rulewatch reads v{VERSION} (v1 held all \
             partitions together and cannot be split per partition)"
        );
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

    fn windows() -> crate::window::Windows {
        let mut w = crate::window::Windows::new(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(10),
        );
        w.observe(0, 1_000, "user_1", true, crate::window::Pos::default());
        w
    }

    fn settings() -> WindowSettings {
        let ten = std::time::Duration::from_secs(10);
        WindowSettings {
            size: ten,
            slide: ten,
            delay: ten,
            key: "user_id".into(),
            time_field: "timestamp".into(),
            repartitioned: false,
        }
    }

    fn sample() -> Checkpoint {
        let state = PartitionState {
            offset: 42,
            rules: [(
                "crash".to_owned(),
                RuleState {
                    window: settings(),
                    windows: windows().snapshot(0),
                    cooldown: vec![("user_1".into(), 0, 10_000)],
                    upstream: BTreeMap::new(),
                },
            )]
            .into(),
        };
        Checkpoint {
            triggers: 3,
            partitions: [("logs/0".to_owned(), state)].into(),
        }
    }

    #[test]
    fn the_borrowed_form_and_composed_file_write_what_the_owned_form_reads() {
        let w = windows();
        let cp = sample();
        let settings = settings();
        let by_ref = PartitionStateRef {
            offset: 42,
            rules: [(
                "crash",
                RuleStateRef {
                    window: &settings,
                    windows: SnapshotRef {
                        windows: &w,
                        source: 0,
                    },
                    cooldown: vec![("user_1", 0, 10_000)],
                    upstream: None,
                },
            )]
            .into(),
        };
        let body = encode(&by_ref).unwrap();
        assert_eq!(body, encode(&cp.partitions["logs/0"]).unwrap());
        let file = compose(3, [("logs/0", body.as_slice())]);
        assert_eq!(file, encode(&cp).unwrap());
        let framed = frame(&body);
        assert_eq!(
            parse::<PartitionState>(&framed).unwrap(),
            cp.partitions["logs/0"]
        );
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let cp = sample();
        save(dir.path(), &cp).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(cp.clone()));
        let mut next = cp;
        next.partitions.get_mut("logs/0").unwrap().offset = 99;
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
