//! Where events come from: a file or stdin ([`file`], reading JSON lines with [`lines`]) or
//! Kafka partitions ([`kafka`]). Each hands the pipeline batches of raw lines with their
//! positions; [`Sources`] names them, for positions and checkpoints.

pub(crate) mod idle;
pub(crate) mod kafka;
pub(crate) mod lines;
mod tls;

use anyhow::Context;
use lines::Line;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Opens `path` for reading, or stdin for `-`.
pub(crate) fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin()));
    }
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?;
    Ok(Box::new(file))
}

/// Where a record came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Position<'a> {
    /// Input name: a file path, `-`, or `topic/partition`.
    pub input: &'a str,
    /// 1-based line number in a file, or the message offset in a partition.
    pub number: u64,
    /// Byte offset of the line in a file; none for messages.
    pub byte: Option<u64>,
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.byte {
            Some(byte) => write!(f, "{}:{} (byte {byte})", self.input, self.number),
            None => write!(f, "{} offset {}", self.input, self.number),
        }
    }
}

/// What a partition's reader says of it this round of the loop.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reading {
    /// Read by this consumer now.
    pub assigned: bool,
    /// Declared idle by this reader (see [`kafka::KafkaSource::refresh`]).
    pub idle: bool,
    /// Idle, and vouched for by the broker just now: it may be moved along.
    pub vouched: bool,
    /// Read to its end as the broker confirmed just now, with nothing new for
    /// `quiet_close`: the windows it holds may close.
    pub quiet: bool,
}

/// What a source's reader says of it at one moment, with how far it was read: the progress
/// that travels with a batch (as of the fetch that brought it) and between batches.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// The source's index.
    pub(crate) index: usize,
    /// What its reader says of it.
    pub(crate) reading: Reading,
    /// The next offset to process, if known.
    pub(crate) next: Option<i64>,
}

/// A batch as a source hands it to the pipeline: the lines, the bytes they point into
/// (both shared, so that workers can filter parts of the batch), and what each source's
/// reader said of it as of the batch.
#[derive(Default)]
pub(crate) struct SourceBatch {
    /// The bytes the lines' ranges point into.
    pub(crate) buf: Arc<Vec<u8>>,
    /// The lines.
    pub(crate) lines: Arc<Vec<Line>>,
    /// Per source the reader knows, its progress as of the batch.
    pub(crate) progress: Vec<Progress>,
}

impl SourceBatch {
    /// The lines to fill (the workers let go of them once the batch was processed).
    pub(crate) fn lines_mut(&mut self) -> &mut Vec<Line> {
        Arc::make_mut(&mut self.lines)
    }
}

/// A Kafka partition: the one type for what is written `topic/partition` in names, logs
/// and checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartitionId<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition number.
    pub partition: i32,
}

impl<'a> PartitionId<'a> {
    /// Reads `topic/partition`; `None` if `name` is not one.
    pub(crate) fn parse(name: &'a str) -> Option<Self> {
        let (topic, p) = name.rsplit_once('/')?;
        Some(PartitionId {
            topic,
            partition: p.parse().ok()?,
        })
    }
}

impl<'a> PartitionId<'a> {
    /// Reads `topic/partition`; any other name is taken as partition 0 of a topic so named.
    pub(crate) fn of(name: &'a str) -> Self {
        Self::parse(name).unwrap_or(PartitionId {
            topic: name,
            partition: 0,
        })
    }
}

impl std::fmt::Display for PartitionId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// The sources a pipeline reads, by index: one file (or stdin), or Kafka partitions as
/// they are assigned, each marked as input or as a partition of a repartition topic.
pub(crate) struct Sources {
    names: Vec<String>,
    /// Per source: a partition of a repartition topic.
    internal: Vec<bool>,
    /// Lines of files have byte offsets; messages do not.
    files: bool,
}

impl Sources {
    /// One file (or stdin) named `name`.
    pub(crate) fn file(name: &str) -> Self {
        Sources {
            names: vec![name.to_owned()],
            internal: vec![false],
            files: true,
        }
    }

    /// Kafka partitions, named as they are assigned ([`Sources::name`]).
    pub(crate) fn partitions() -> Self {
        Sources {
            names: Vec::new(),
            internal: Vec::new(),
            files: false,
        }
    }

    /// Names source `index` `name`, a partition of a repartition topic if `internal`;
    /// whether the name changed.
    pub(crate) fn name(
        &mut self,
        index: usize,
        name: &str,
        internal: impl Fn(&str) -> bool,
    ) -> bool {
        if self.names.len() <= index {
            self.names.resize(index + 1, String::new());
            self.internal.resize(index + 1, false);
        }
        if self.names[index] == name {
            return false;
        }
        self.names[index] = name.to_owned();
        self.internal[index] = PartitionId::parse(name).is_some_and(|p| internal(p.topic));
        true
    }

    /// Per source index, whether it is a partition of a repartition topic.
    pub(crate) fn internal(&self) -> Arc<[bool]> {
        self.internal.as_slice().into()
    }

    /// Whether source `index` is a partition of a repartition topic.
    pub(crate) fn is_internal(&self, index: usize) -> bool {
        self.internal.get(index).copied().unwrap_or(false)
    }

    /// Whether the sources are files (then they are read at once, not assigned).
    pub(crate) fn are_files(&self) -> bool {
        self.files
    }

    /// Source `index`'s name (`?` if it has none yet).
    pub(crate) fn name_of(&self, index: usize) -> &str {
        self.names.get(index).map_or("?", String::as_str)
    }

    /// The sources' names, by index.
    pub(crate) fn names(&self) -> impl Iterator<Item = (usize, &str)> {
        self.names.iter().map(String::as_str).enumerate()
    }

    /// The index of the source named `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Where `line` is, for logs and dead letters.
    pub(crate) fn position(&self, line: &Line) -> Position<'_> {
        Position {
            input: self.name_of(line.source as usize),
            number: line.number,
            byte: self.files.then_some(line.offset),
        }
    }
}

/// Where an event is in its input, ordered as evidence picks the smallest: see the fields.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Pos {
    /// Compared first. Files: the byte offset of the line (it grows with the line number).
    /// Events a repartitioned rule counts: the index of their input partition in the run's
    /// list of input partitions (`kafka.topics` in order, partitions in number order). 0
    /// for records of the partition counted.
    pub byte: u64,
    /// Line number or offset.
    pub number: u64,
}

/// Where an event is in the input, as an alert's evidence shows it (and `rulewatch
/// evidence` reads it back).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Origin {
    /// A record of a Kafka partition.
    Kafka {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The record's offset.
        offset: u64,
    },
    /// A line of a file.
    File {
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line's first byte.
        byte: u64,
    },
}

impl Sources {
    /// Where `pos` of source `index` is; `inputs`: the input partitions of a rule counted
    /// through a repartition topic, whose positions index them.
    pub(crate) fn origin(&self, index: usize, pos: Pos, inputs: Option<&[String]>) -> Origin {
        let kafka = |name: &str, offset| {
            let p = PartitionId::of(name);
            Origin::Kafka {
                topic: p.topic.to_owned(),
                partition: p.partition,
                offset,
            }
        };
        match inputs {
            Some(inputs) => kafka(
                inputs.get(pos.byte as usize).map_or("", String::as_str),
                pos.number,
            ),
            None if !self.are_files() => kafka(self.name_of(index), pos.number),
            None => Origin::File {
                line: pos.number,
                byte: pos.byte,
            },
        }
    }
}
