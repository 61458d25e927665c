//! The binary layout shared by the host and a rule module (ABI version [`VERSION`]).
//!
//! `sdk/ABI.md` describes the same thing in prose, for authors writing a rule without this
//! crate. A batch is a header followed by columns:
//!
//! ```text
//! u32 rows, u32 columns, then per column: u32 kind, u32 offset, u32 length
//! ```
//!
//! Offsets are from the start of the batch, all integers little-endian. A column is
//! [`KIND_I64`] (`rows` × i64), [`KIND_F64`] (`rows` × f64) or [`KIND_STR`]
//! (`rows + 1` × u32 end offsets into the bytes that follow them, the first being 0).
//!
//! An event batch has the columns: event time (ms since the Unix epoch, i64), key (str),
//! then the declared fields in declared order. A window batch has: window start (i64),
//! window end (i64), key (str), count (i64). The rule answers either with a selection
//! bitmap of `rows` bits, least significant bit first.

/// The ABI version this crate speaks. The host refuses a module of another version.
pub const VERSION: u32 = 1;

/// Column of little-endian i64 values.
pub const KIND_I64: u32 = 1;
/// Column of little-endian f64 values.
pub const KIND_F64: u32 = 2;
/// Column of UTF-8 strings: `rows + 1` u32 end offsets, then the bytes.
pub const KIND_STR: u32 = 3;

/// Event batch column: the event time, epoch ms (`i64`).
pub const EVENT_TIME: usize = 0;
/// Event batch column: the group key (`str`).
pub const EVENT_KEY: usize = 1;
/// Columns of an event batch before the declared fields: time and key.
pub const EVENT_FIXED_COLUMNS: usize = 2;

/// Window batch column: the window's start, epoch ms (`i64`).
pub const WINDOW_START: usize = 0;
/// Window batch column: the window's end (exclusive), epoch ms (`i64`).
pub const WINDOW_END: usize = 1;
/// Window batch column: the key (`str`).
pub const WINDOW_KEY: usize = 2;
/// Window batch column: the count (`i64`).
pub const WINDOW_COUNT: usize = 3;
/// The kinds of a window batch's columns, in order.
pub const WINDOW_KINDS: [u32; 4] = [KIND_I64, KIND_I64, KIND_STR, KIND_I64];

/// The type of a field a rule declares it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A JSON string.
    Str,
    /// A JSON number, delivered as f64.
    Num,
}

impl FieldType {
    /// The word used for this type in the field declaration (`str` or `num`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FieldType::Str => "str",
            FieldType::Num => "num",
        }
    }

    /// Parses the word used in the field declaration.
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "str" => Some(FieldType::Str),
            "num" => Some(FieldType::Num),
            _ => None,
        }
    }

    /// The column kind that carries this type.
    pub const fn column_kind(self) -> u32 {
        match self {
            FieldType::Str => KIND_STR,
            FieldType::Num => KIND_F64,
        }
    }
}

/// A field of the event a rule reads: its top-level JSON name and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Top-level key in the JSON event.
    pub name: &'static str,
    /// Expected JSON type; an event where it differs is rejected by the host as bad input.
    pub ty: FieldType,
}

impl Field {
    /// A string field.
    pub const fn str(name: &'static str) -> Self {
        Field {
            name,
            ty: FieldType::Str,
        }
    }

    /// A number field.
    pub const fn num(name: &'static str) -> Self {
        Field {
            name,
            ty: FieldType::Num,
        }
    }
}

/// Builds a batch column by column into reusable buffers; the host's (and tests') side.
#[derive(Default)]
pub struct BatchWriter {
    rows: u32,
    columns: Vec<ColumnBuf>,
}

#[derive(Default)]
struct ColumnBuf {
    kind: u32,
    /// i64/f64 values, or string end offsets (as u32) followed later by `bytes`.
    fixed: Vec<u8>,
    bytes: Vec<u8>,
}

impl BatchWriter {
    /// Starts an empty batch with columns of these kinds, keeping earlier capacity.
    pub fn reset(&mut self, kinds: &[u32]) {
        self.rows = 0;
        self.columns.resize_with(kinds.len(), ColumnBuf::default);
        for (col, &kind) in self.columns.iter_mut().zip(kinds) {
            col.kind = kind;
            col.fixed.clear();
            col.bytes.clear();
            if kind == KIND_STR {
                col.fixed.extend_from_slice(&0u32.to_le_bytes());
            }
        }
    }

    /// Appends an i64 to column `c`.
    #[inline]
    pub fn push_i64(&mut self, c: usize, v: i64) {
        self.columns[c].fixed.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an f64 to column `c`.
    #[inline]
    pub fn push_f64(&mut self, c: usize, v: f64) {
        self.columns[c].fixed.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a string to column `c`.
    #[inline]
    pub fn push_str(&mut self, c: usize, v: &[u8]) {
        let col = &mut self.columns[c];
        col.bytes.extend_from_slice(v);
        col.fixed
            .extend_from_slice(&(col.bytes.len() as u32).to_le_bytes());
    }

    /// Marks the end of a row (every column must have had one value pushed).
    #[inline]
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows as usize
    }

    /// Bytes the finished batch will take.
    pub fn encoded_len(&self) -> usize {
        8 + 12 * self.columns.len()
            + self
                .columns
                .iter()
                .map(|c| c.fixed.len() + c.bytes.len())
                .sum::<usize>()
    }

    /// Writes the finished batch into `out` (cleared first).
    pub fn finish(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&(self.columns.len() as u32).to_le_bytes());
        let mut offset = 8 + 12 * self.columns.len();
        for col in &self.columns {
            let len = col.fixed.len() + col.bytes.len();
            for v in [col.kind, offset as u32, len as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            offset += len;
        }
        for col in &self.columns {
            out.extend_from_slice(&col.fixed);
            out.extend_from_slice(&col.bytes);
        }
    }
}

/// Why a batch could not be read; only a host bug or a foreign host produces one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub &'static str);

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed batch: {}", self.0)
    }
}

/// A read-only view of a batch; the rule's side.
pub struct Batch<'a> {
    rows: usize,
    columns: Vec<Column<'a>>,
}

/// One column of a [`Batch`].
#[derive(Clone, Copy)]
pub enum Column<'a> {
    /// i64 values.
    I64(&'a [u8]),
    /// f64 values.
    F64(&'a [u8]),
    /// Strings: end offsets and text.
    Str {
        /// `rows + 1` little-endian u32 offsets.
        ends: &'a [u8],
        /// The concatenated strings, validated as UTF-8 once for the whole column.
        text: &'a str,
    },
}

fn u32_at(b: &[u8], i: usize) -> Result<u32, LayoutError> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(LayoutError("truncated"))
}

impl<'a> Batch<'a> {
    /// Reads a batch, checking that every column lies inside `buf` and has `rows` values.
    pub fn parse(buf: &'a [u8]) -> Result<Self, LayoutError> {
        let rows = u32_at(buf, 0)? as usize;
        let ncols = u32_at(buf, 4)? as usize;
        let mut columns = Vec::with_capacity(ncols);
        for c in 0..ncols {
            let kind = u32_at(buf, 8 + 12 * c)?;
            let off = u32_at(buf, 12 + 12 * c)? as usize;
            let len = u32_at(buf, 16 + 12 * c)? as usize;
            let data = buf
                .get(off..off + len)
                .ok_or(LayoutError("column outside the batch"))?;
            let col = match kind {
                KIND_I64 | KIND_F64 => {
                    if len != rows * 8 {
                        return Err(LayoutError("fixed column of the wrong length"));
                    }
                    if kind == KIND_I64 {
                        Column::I64(data)
                    } else {
                        Column::F64(data)
                    }
                }
                KIND_STR => {
                    let (ends, bytes) = data
                        .split_at_checked((rows + 1) * 4)
                        .ok_or(LayoutError("string offsets truncated"))?;
                    check_ends(ends, bytes.len())?;
                    // One validation per column, instead of one per string read.
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| LayoutError("string column is not UTF-8"))?;
                    Column::Str { ends, text }
                }
                _ => return Err(LayoutError("unknown column kind")),
            };
            columns.push(col);
        }
        Ok(Batch { rows, columns })
    }

    /// [`Batch::parse`], and its first columns of the kinds `kinds` (an event batch: time,
    /// key, then the declared fields; a window batch: [`WINDOW_KINDS`]), so that no value is
    /// read from a column of another kind.
    /// `count` columns are expected, column `c` of kind `kind(c)`.
    pub fn parse_as(
        buf: &'a [u8],
        count: usize,
        kind: impl Fn(usize) -> u32,
    ) -> Result<Self, LayoutError> {
        let batch = Batch::parse(buf)?;
        if batch.columns.len() < count {
            return Err(LayoutError("fewer columns than expected"));
        }
        for (c, col) in batch.columns.iter().enumerate().take(count) {
            let actual = match col {
                Column::I64(_) => KIND_I64,
                Column::F64(_) => KIND_F64,
                Column::Str { .. } => KIND_STR,
            };
            if actual != kind(c) {
                return Err(LayoutError("a column of another kind than expected"));
            }
        }
        Ok(batch)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    /// The i64 at `row` of column `col` (0 if the column has another kind).
    #[inline]
    pub fn i64(&self, col: usize, row: usize) -> i64 {
        match self.columns[col] {
            Column::I64(d) => i64::from_le_bytes(d[row * 8..row * 8 + 8].try_into().unwrap()),
            _ => 0,
        }
    }

    /// The f64 at `row` of column `col` (NaN if the column has another kind).
    #[inline]
    pub fn f64(&self, col: usize, row: usize) -> f64 {
        match self.columns[col] {
            Column::F64(d) => f64::from_le_bytes(d[row * 8..row * 8 + 8].try_into().unwrap()),
            _ => f64::NAN,
        }
    }

    /// The string at `row` of column `col` ("" if the column has another kind, or its
    /// offsets do not fall between characters, which the host never sends).
    #[inline]
    pub fn str(&self, col: usize, row: usize) -> &'a str {
        match self.columns[col] {
            Column::Str { ends, text } => {
                let start = if row == 0 {
                    0
                } else {
                    u32::from_le_bytes(ends[row * 4..row * 4 + 4].try_into().unwrap()) as usize
                };
                let end =
                    u32::from_le_bytes(ends[row * 4 + 4..row * 4 + 8].try_into().unwrap()) as usize;
                text.get(start..end).unwrap_or("")
            }
            _ => "",
        }
    }
}

/// Checks a string column's end offsets: the first 0, none smaller than the one before,
/// the last the length of the text.
fn check_ends(ends: &[u8], text: usize) -> Result<(), LayoutError> {
    let mut prev = 0;
    for (i, end) in ends.chunks_exact(4).enumerate() {
        let end = u32::from_le_bytes([end[0], end[1], end[2], end[3]]) as usize;
        if (i == 0 && end != 0) || end < prev {
            return Err(LayoutError("string offsets out of order"));
        }
        prev = end;
    }
    if prev != text {
        return Err(LayoutError("string bytes of the wrong length"));
    }
    Ok(())
}

/// Answers a batch: bit *row* of `out` is `each(batch, row)` (the layout of [`bit`]).
pub fn bitmap(batch: &Batch<'_>, out: &mut Vec<u8>, each: impl Fn(&Batch<'_>, usize) -> bool) {
    out.clear();
    out.resize(batch.rows().div_ceil(8), 0);
    for row in 0..batch.rows() {
        if each(batch, row) {
            set_bit(out, row);
        }
    }
}

/// Sets bit `i` of a selection bitmap.
#[inline]
pub fn set_bit(bits: &mut [u8], i: usize) {
    bits[i / 8] |= 1 << (i % 8);
}

/// Reads bit `i` of a selection bitmap.
#[inline]
pub fn bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] & (1 << (i % 8)) != 0
}

/// Packs a guest pointer and length into the u64 that exports return.
pub const fn pack(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// Splits the u64 that exports return into pointer and length.
pub const fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// The kind of column `c` of an event batch for `fields`: time, key, then one per field.
pub fn event_kind(fields: &[Field], c: usize) -> u32 {
    match c {
        EVENT_TIME => KIND_I64,
        EVENT_KEY => KIND_STR,
        c => fields[c - EVENT_FIXED_COLUMNS].ty.column_kind(),
    }
}

/// Renders the field declaration a module exports: one `TYPE NAME` line per field.
pub fn declare_fields(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}\n", f.ty.as_str(), f.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let mut w = BatchWriter::default();
        w.reset(&[KIND_I64, KIND_STR, KIND_F64]);
        for (t, k, n) in [(5, "a", 1.5), (-7, "", 2.0), (9, "héllo", -0.0)] {
            w.push_i64(0, t);
            w.push_str(1, k.as_bytes());
            w.push_f64(2, n);
            w.end_row();
        }
        let mut buf = Vec::new();
        w.finish(&mut buf);
        assert_eq!(buf.len(), w.encoded_len());
        let b = Batch::parse(&buf).unwrap();
        assert_eq!((b.rows(), b.columns()), (3, 3));
        assert_eq!(b.i64(0, 1), -7);
        assert_eq!(b.str(1, 0), "a");
        assert_eq!(b.str(1, 1), "");
        assert_eq!(b.str(1, 2), "héllo");
        assert_eq!(b.f64(2, 0), 1.5);

        // A reset writer reuses its buffers and forgets the old rows.
        w.reset(&[KIND_STR]);
        w.push_str(0, b"x");
        w.end_row();
        w.finish(&mut buf);
        let b = Batch::parse(&buf).unwrap();
        assert_eq!((b.rows(), b.str(0, 0)), (1, "x"));
    }

    #[test]
    fn truncated_batches_are_rejected() {
        let mut w = BatchWriter::default();
        w.reset(&[KIND_I64, KIND_STR]);
        w.push_i64(0, 1);
        w.push_str(1, b"abc");
        w.end_row();
        let mut buf = Vec::new();
        w.finish(&mut buf);
        for cut in 0..buf.len() {
            assert!(Batch::parse(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bitmap_and_packing() {
        let mut bits = [0u8; 2];
        set_bit(&mut bits, 9);
        assert!(bit(&bits, 9) && !bit(&bits, 8));
        assert_eq!(unpack(pack(7, 9)), (7, 9));
        assert_eq!(
            declare_fields(&[Field::str("a"), Field::num("b")]),
            "str a\nnum b\n"
        );
    }
}
