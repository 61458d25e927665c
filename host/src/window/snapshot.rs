//! One source's windows as checkpoints hold them: written straight from the live state by
//! [`SnapshotRef`], read back as a [`Snapshot`] and restored into a source.

use super::watermark::Watermark;
use super::{Count, Pane, Windows};

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
        }
    }

    /// Restores source `source`'s state from a checkpoint, replacing what it had.
    pub fn restore(&mut self, source: usize, snapshot: Snapshot) {
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
    }
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
        let mut out = s.serialize_struct("Snapshot", 4)?;
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
}

impl Snapshot {
    /// Open (window, key) pairs held.
    pub fn pairs(&self) -> usize {
        self.windows.iter().map(|(_, counts)| counts.len()).sum()
    }
}
