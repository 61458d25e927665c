//! One source's windows as checkpoints hold them: written straight from the live state by
//! [`SnapshotRef`], read back as a [`Snapshot`] and restored into a source.

use super::watermark::Watermark;
use super::{Count, Pane, Part, Pos, Windows};

impl Windows {
    /// Source `source`'s state as a checkpoint reads it back (checkpoints are written from
    /// [`SnapshotRef`], without this copy).
    #[cfg(test)]
    pub fn snapshot(&self, source: usize) -> Snapshot {
        let part = self.parts[source].as_ref().expect("a source with state");
        Snapshot {
            size: self.size,
            slide: self.slide,
            watermark: part.watermark.clone(),
            windows: part
                .open
                .iter()
                .map(|(start, pane)| {
                    let counts = pane.iter().map(|(k, c)| (k.to_string(), c.n)).collect();
                    (*start, counts)
                })
                .collect(),
            evidence: evidence_of(part)
                .map(|(start, pairs)| {
                    let pairs = pairs.map(|(k, p)| (k.to_owned(), p.to_vec())).collect();
                    (start, pairs)
                })
                .collect(),
        }
    }

    /// Restores source `source`'s state from a checkpoint, replacing what it had.
    pub fn restore(&mut self, source: usize, snapshot: Snapshot) {
        let keep = self.evidence;
        let part = self.part(source);
        part.watermark = snapshot.watermark;
        part.idle = false;
        part.changed.clear();
        part.open = snapshot
            .windows
            .into_iter()
            .map(|(start, counts)| {
                let pane = counts
                    .into_iter()
                    .map(|(k, n)| (k.into_boxed_str(), Count { n, changed: false }))
                    .collect();
                (start, pane)
            })
            .collect();
        part.proofs.clear();
        for (start, pairs) in snapshot.evidence.into_iter().filter(|_| keep > 0) {
            let (Some(pane), proofs) = (part.open.get(&start), part.proofs.entry(start)) else {
                continue;
            };
            let proofs = proofs.or_default();
            for (key, mut kept) in pairs {
                if let Some(i) = pane.get_index_of(key.as_str()) {
                    kept.truncate(keep);
                    proofs.resize_with(proofs.len().max(i + 1), Vec::new);
                    proofs[i] = kept;
                }
            }
        }
    }
}

/// The pairs of `part` that hold evidence, per window: (start, (key, positions)).
fn evidence_of(part: &Part) -> impl Iterator<Item = (i64, impl Iterator<Item = (&str, &[Pos])>)> {
    part.proofs.iter().filter_map(|(start, proofs)| {
        let pane = part.open.get(start)?;
        let pairs = pane
            .keys()
            .zip(proofs)
            .filter(|(_, p)| !p.is_empty())
            .map(|(k, p)| (&**k, p.as_slice()));
        Some((*start, pairs))
    })
}

/// One source's windows as a [`Snapshot`] serialises, without copying them first:
/// checkpoints are written from this, and read back as a [`Snapshot`].
pub struct SnapshotRef<'a> {
    /// The rule's windows.
    pub windows: &'a Windows,
    /// The source.
    pub source: usize,
}

impl serde::Serialize for SnapshotRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct PaneRef<'a>(&'a Pane);
        impl serde::Serialize for PaneRef<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(k, c)| (&**k, c.n)))
            }
        }
        let w = self.windows;
        let part = w.parts.get(self.source).and_then(Option::as_ref);
        let mut out = s.serialize_struct("Snapshot", 5)?;
        out.serialize_field("size", &w.size)?;
        out.serialize_field("slide", &w.slide)?;
        let empty = Watermark::new(w.delay);
        out.serialize_field("watermark", part.map_or(&empty, |p| &p.watermark))?;
        let windows: Vec<(i64, PaneRef<'_>)> = part
            .iter()
            .flat_map(|p| p.open.iter())
            .map(|(&start, pane)| (start, PaneRef(pane)))
            .collect();
        out.serialize_field("windows", &windows)?;
        match part.filter(|p| !p.proofs.is_empty()) {
            Some(part) => {
                let evidence: Vec<WindowEvidence<&str, &[Pos]>> = evidence_of(part)
                    .map(|(start, pairs)| (start, pairs.collect()))
                    .collect();
                out.serialize_field("evidence", &evidence)?;
            }
            None => out.skip_field("evidence")?,
        }
        out.end()
    }
}

/// One source's checkpointed windows: open windows with their counts, and the watermark.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    size: i64,
    slide: i64,
    watermark: Watermark,
    windows: Vec<(i64, Vec<(String, u64)>)>,
    /// Evidence of the pairs that have some: (window start, (key, positions)). Absent
    /// from checkpoints of rules without evidence (and of versions before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evidence: Vec<WindowEvidence<String, Vec<Pos>>>,
}

/// One window's evidence: its start, and (key, positions) per pair that has some.
type WindowEvidence<K, P> = (i64, Vec<(K, P)>);

impl Snapshot {
    /// Open (window, key) pairs held.
    pub fn pairs(&self) -> usize {
        self.windows.iter().map(|(_, counts)| counts.len()).sum()
    }
}
