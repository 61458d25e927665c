//! A strict JSON scanner that projects the top-level members of an object onto slots,
//! without building a document and without allocating: unescaped strings and numbers stay
//! ranges into the line; only strings with escapes are decoded, into a reused scratch buffer.
//!
//! It accepts exactly RFC 8259 JSON (the differential test checks it against serde_json),
//! including its requirement of UTF-8: only strings may hold non-ASCII bytes, and those are
//! validated as they are scanned.

use std::ops::Range;

/// The reason given for a string that is not UTF-8.
pub const INVALID_UTF8: &str = "invalid UTF-8 in a string";

/// Deepest nesting accepted, as in serde_json.
const MAX_DEPTH: usize = 128;

/// A top-level member's value as the scanner saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The member was not in the object.
    Missing,
    /// A string: its bytes are `line[range]`, or `scratch[range]` if it had escapes.
    Str { range: Range<u32>, escaped: bool },
    /// A number: its text is `line[range]`.
    Num(Range<u32>),
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
    /// An object (not projected further).
    Object,
    /// An array.
    Array,
}

impl Value {
    /// The bytes of a string (decoded) or a number (as written); empty for other values.
    pub fn bytes<'a>(&self, line: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match self {
            Value::Str {
                range,
                escaped: true,
            } => &scratch[range.start as usize..range.end as usize],
            Value::Str { range, .. } | Value::Num(range) => {
                &line[range.start as usize..range.end as usize]
            }
            _ => &[],
        }
    }

    /// The JSON type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Missing => "nothing",
            Value::Str { .. } => "a string",
            Value::Num(_) => "a number",
            Value::Bool => "a boolean",
            Value::Null => "null",
            Value::Object => "an object",
            Value::Array => "an array",
        }
    }
}

/// Why a line is not JSON, and the byte where the scanner noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// What was wrong.
    pub reason: &'static str,
    /// Byte offset into the line.
    pub at: usize,
}

/// The outcome of scanning a line that is not an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Not JSON at all.
    Syntax(SyntaxError),
    /// Valid JSON, but not an object (an array, a string, `null`...); the type's name.
    NotObject(&'static str),
}

/// Scans `line` as one JSON object. For each top-level member whose key is `names[i]`,
/// `slots[i]` receives its value (the last one wins if a key repeats); the other slots are
/// set to [`Value::Missing`].
pub fn scan_object(
    line: &[u8],
    names: &[Box<str>],
    slots: &mut [Value],
    scratch: &mut Vec<u8>,
) -> Result<(), ScanError> {
    debug_assert_eq!(names.len(), slots.len());
    slots.fill(Value::Missing);
    scratch.clear();
    let mut s = Scanner {
        b: line,
        i: 0,
        scratch,
    };
    s.ws();
    match s.peek() {
        Some(b'{') => {}
        None => return Err(ScanError::Syntax(s.err("empty line"))),
        Some(_) => {
            // Tell "valid JSON of another type" from "not JSON".
            let kind = s.value(0).map_err(ScanError::Syntax)?;
            s.end().map_err(ScanError::Syntax)?;
            return Err(ScanError::NotObject(kind.type_name()));
        }
    }
    s.i += 1;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
        return s.end().map_err(ScanError::Syntax);
    }
    loop {
        s.ws();
        if s.peek() != Some(b'"') {
            return Err(ScanError::Syntax(s.err("expected a key in double quotes")));
        }
        let find = |key: &[u8]| names.iter().position(|n| same(n.as_bytes(), key));
        let slot = match s.plain_string() {
            Some(range) => find(&line[range.start as usize..range.end as usize]),
            None => {
                let key = s.string().map_err(ScanError::Syntax)?;
                let slot = find(key.bytes(line, s.scratch));
                if let Value::Str {
                    range,
                    escaped: true,
                } = key
                {
                    // The key's decoded bytes are no longer needed.
                    s.scratch.truncate(range.start as usize);
                }
                slot
            }
        };
        s.ws();
        if s.peek() != Some(b':') {
            return Err(ScanError::Syntax(s.err("expected ':' after a key")));
        }
        s.i += 1;
        s.ws();
        // A plain string, the usual value, goes straight to its slot: no `Value` is
        // returned through memory on that path.
        if let Some(range) = s.plain_string() {
            if let Some(slot) = slot {
                slots[slot] = Value::Str {
                    range,
                    escaped: false,
                };
            }
        } else {
            let v = s.value(1).map_err(ScanError::Syntax)?;
            if let Some(slot) = slot {
                slots[slot] = v;
            }
        }
        s.ws();
        match s.peek() {
            Some(b',') => s.i += 1,
            Some(b'}') => {
                s.i += 1;
                return s.end().map_err(ScanError::Syntax);
            }
            _ => {
                return Err(ScanError::Syntax(
                    s.err("expected ',' or '}' after a value"),
                ));
            }
        }
    }
}

/// Whether two keys are equal: `==` on slices, without a call to `memcmp` for keys of up
/// to 16 bytes (almost all), which are compared as two overlapping words.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        _ => a == b,
    }
}

struct Scanner<'a, 'b> {
    b: &'a [u8],
    i: usize,
    scratch: &'b mut Vec<u8>,
}

impl Scanner<'_, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn err(&self, reason: &'static str) -> SyntaxError {
        SyntaxError { reason, at: self.i }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn end(&mut self) -> Result<(), SyntaxError> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(self.err("trailing characters after the JSON value"))
        }
    }

    #[inline(always)]
    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{') => self.container(depth, b'}').map(|_| Value::Object),
            Some(b'[') => self.container(depth, b']').map(|_| Value::Array),
            Some(b't') => self.literal(b"true", Value::Bool),
            Some(b'f') => self.literal(b"false", Value::Bool),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            None => Err(self.err("unexpected end of line")),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, SyntaxError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expected true, false or null"))
        }
    }

    /// An object or array whose contents are validated but not kept; `depth` containers
    /// enclose it.
    fn container(&mut self, depth: usize, close: u8) -> Result<(), SyntaxError> {
        // With itself, at most MAX_DEPTH - 1 containers deep, as serde_json.
        if depth + 1 >= MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        let mark = self.scratch.len();
        loop {
            self.ws();
            if close == b'}' {
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a key in double quotes"));
                }
                self.string()?;
                self.ws();
                if self.peek() != Some(b':') {
                    return Err(self.err("expected ':' after a key"));
                }
                self.i += 1;
                self.ws();
            }
            self.value(depth + 1)?;
            // Nothing inside a skipped container is kept.
            self.scratch.truncate(mark);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(());
                }
                _ if close == b'}' => return Err(self.err("expected ',' or '}' in an object")),
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("expected a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.err("expected a digit in the exponent"));
            }
            self.digits();
        }
        Ok(Value::Num(start as u32..self.i as u32))
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// A string starting at the opening quote.
    #[inline]
    fn string(&mut self) -> Result<Value, SyntaxError> {
        match self.plain_string() {
            Some(range) => Ok(Value::Str {
                range,
                escaped: false,
            }),
            None => self.string_rest(self.i + 1),
        }
    }

    /// If a plain ASCII string (no escape) starts here, at its opening quote: its contents'
    /// range, and the scanner after it. Otherwise `None`, and the scanner has not moved.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<Range<u32>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        self.i = start;
        self.skip_plain();
        if self.peek() == Some(b'"') {
            self.i += 1;
            Some(start as u32..self.i as u32 - 1)
        } else {
            self.i = start - 1;
            None
        }
    }

    /// A string whose contents start at `start` and need attention: a backslash, a control
    /// character, a non-ASCII byte or the end of the line.
    #[inline(never)]
    fn string_rest(&mut self, start: usize) -> Result<Value, SyntaxError> {
        self.i = start;
        let mut ascii = true;
        // No escapes so far.
        loop {
            self.skip_plain();
            match self.peek() {
                Some(b'"') => {
                    let v = Value::Str {
                        range: start as u32..self.i as u32,
                        escaped: false,
                    };
                    self.check_utf8(ascii, start)?;
                    self.i += 1;
                    return Ok(v);
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err(self.err("control character in a string")),
                Some(c) => {
                    ascii &= c.is_ascii();
                    self.i += 1;
                }
                None => return Err(self.err("unterminated string")),
            }
        }
        // Slow path: decode into scratch.
        let out = self.scratch.len();
        self.scratch.extend_from_slice(&self.b[start..self.i]);
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.check_utf8(ascii, start)?;
                    self.i += 1;
                    return Ok(Value::Str {
                        range: out as u32..self.scratch.len() as u32,
                        escaped: true,
                    });
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.peek() {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            let ch = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            self.scratch
                                .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                        _ => return Err(self.err("invalid escape in a string")),
                    };
                    self.scratch.push(c);
                    self.i += 1;
                }
                Some(0..=0x1f) => return Err(self.err("control character in a string")),
                Some(c) => {
                    ascii &= c.is_ascii();
                    self.scratch.push(c);
                    self.i += 1;
                }
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    /// Skips string bytes that need no attention (not `"`, `\`, a control character or
    /// non-ASCII), sixteen at a time where SSE2 is (every x86_64), then eight at a time,
    /// then one: it stops at the first byte that needs attention or at the end.
    #[inline]
    fn skip_plain(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            // SAFETY: SSE2 is part of the x86_64 baseline; every load is an unaligned load
            // of 16 bytes that the bounds check just before it keeps inside `self.b`.
            unsafe {
                let quote = _mm_set1_epi8(b'"' as i8);
                let backslash = _mm_set1_epi8(b'\\' as i8);
                let control = _mm_set1_epi8(0x1f);
                while self.i + 16 <= self.b.len() {
                    let x = _mm_loadu_si128(self.b.as_ptr().add(self.i).cast());
                    let special = _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)),
                        // Unsigned x <= 0x1f: a control character.
                        _mm_cmpeq_epi8(_mm_max_epu8(x, control), control),
                    );
                    // The high bit of each byte: non-ASCII.
                    let mask = _mm_movemask_epi8(special) | _mm_movemask_epi8(x);
                    if mask != 0 {
                        self.i += mask.trailing_zeros() as usize;
                        return;
                    }
                    self.i += 16;
                }
            }
        }
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let quote = x ^ (ONES * b'"' as u64);
            let backslash = x ^ (ONES * b'\\' as u64);
            // High bit set in a byte that is zero after the xor (a quote or backslash), below
            // 0x20 (control) or at least 0x80 (non-ASCII).
            let special = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | x.wrapping_sub(ONES * 0x20)
                | x;
            if special & HIGH != 0 {
                // Borrows only run upwards, so the lowest flagged byte is the first special.
                self.i += (special & HIGH).trailing_zeros() as usize / 8;
                return;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c) {
                return;
            }
            self.i += 1;
        }
    }

    /// Validates the string that started at `start` (and ends at `self.i`) as UTF-8 if it
    /// had non-ASCII bytes. Outside strings only ASCII is valid JSON, so this is the only
    /// UTF-8 check a line needs.
    fn check_utf8(&self, ascii: bool, start: usize) -> Result<(), SyntaxError> {
        if ascii || std::str::from_utf8(&self.b[start..self.i]).is_ok() {
            Ok(())
        } else {
            Err(SyntaxError {
                reason: INVALID_UTF8,
                at: start,
            })
        }
    }

    /// `\uXXXX` (with `self.i` on the `u`), including a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.b[self.i..].starts_with(b"\\u") {
                return Err(self.err("lone leading surrogate in a \\u escape"));
            }
            self.i += 1;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err("invalid trailing surrogate in a \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else if (0xDC00..0xE000).contains(&hi) {
            return Err(self.err("lone trailing surrogate in a \\u escape"));
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid \\u escape"))
    }

    /// Four hex digits after the `u` at `self.i`; leaves `self.i` after them.
    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .b
            .get(self.i + 1..self.i + 5)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        let mut v = 0;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid hex digit in a \\u escape"))?;
            v = v * 16 + n;
        }
        self.i += 5;
        Ok(v)
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
