//! Reads newline-delimited records from any byte stream in large chunks, handing out
//! batches of lines as ranges into a buffer, with their line number and byte offset. A line
//! longer than the limit is reported (not buffered) and skipped.
//!
//! The buffer is shared ([`LineReader::block`]): a batch handed to another thread keeps the
//! bytes it points into without a copy. The reader writes only into a buffer nobody else
//! holds, so before a read it moves the unconsumed partial line into one (the same buffer
//! when it is not shared, else a spare), and reads after it: where batches end depends only
//! on the input, never on who holds what.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

/// Most bytes read at once: a read is copied into a cache the size of a core's L2 and split
/// from there, and a thread that reads between batches (with workers) is not away for long.
const READ_BYTES: usize = 1 << 20;

/// One line of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// The line's bytes in [`LineReader::buffer`], without `\n` or `\r\n`; empty if
    /// `too_large`.
    pub range: Range<usize>,
    /// Which input source the line came from (a Kafka partition's index; 0 for a file).
    pub source: u32,
    /// 1-based line number in a file, or the message offset in a Kafka partition.
    pub number: u64,
    /// Byte offset of the line's first byte in the stream.
    pub offset: u64,
    /// The line was longer than the limit and was skipped.
    pub too_large: bool,
}

/// Splits a byte stream into lines, in batches.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Arc<Vec<u8>>,
    /// Buffers given up while batches held them, to be reused once they are let go.
    spare: Vec<Arc<Vec<u8>>>,
    /// Start of unconsumed data in `buf`.
    start: usize,
    /// End of data read into `buf`.
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    next_number: u64,
    max_line: usize,
    eof: bool,
    /// Inside an oversized line: discard until the next newline.
    skipping: bool,
}

impl<R: Read> LineReader<R> {
    /// Reads lines of at most `max_line` bytes from `inner`.
    pub(crate) fn new(inner: R, max_line: usize) -> Self {
        let capacity = (max_line + 1).max(4 << 20);
        LineReader {
            inner,
            buf: Arc::new(vec![0; capacity]),
            spare: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            next_number: 1,
            max_line,
            eof: false,
            skipping: false,
        }
    }

    /// The buffer that [`Line::range`]s of the last batch point into (anywhere in it).
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer of the last batch, shared: the reader will not write into it while it is
    /// held.
    pub(crate) fn block(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.buf)
    }

    /// Fills `out` with up to `max_lines` lines; returns false when the stream has ended and
    /// no line was read. It reads from the stream only when no complete line is buffered, so
    /// a slow stream's lines are handed out as they come. Ranges stay valid until the next
    /// call.
    pub(crate) fn next_batch(&mut self, max_lines: usize, out: &mut Vec<Line>) -> io::Result<bool> {
        out.clear();
        let mut scanned = 0; // bytes after `start` known to hold no newline
        while out.len() < max_lines {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start + scanned..self.end]) {
                let nl = self.start + scanned + nl;
                self.take_line(nl, nl + 1, out);
                scanned = 0;
                continue;
            }
            scanned = self.end - self.start;
            if !self.skipping && scanned > self.max_line {
                // Too long: report it once, then discard up to the next newline.
                self.report_too_large(out);
                self.skipping = true;
                self.offset += scanned as u64;
                self.start = self.end;
                scanned = 0;
                continue;
            }
            if self.skipping {
                self.offset += scanned as u64;
                self.start = self.end;
                scanned = 0;
            }
            if self.eof {
                if self.end > self.start {
                    self.take_line(self.end, self.end, out);
                }
                break;
            }
            if !out.is_empty() {
                // Hand out what we have rather than wait on a read: on a pipe that trickles,
                // the lines already here must not wait for a full batch.
                break;
            }
            // Nothing is handed out yet in this call, so the earlier batches' ranges may
            // move: the unconsumed partial line moves to the front of a buffer of our own.
            self.make_room();
            let buf = Arc::get_mut(&mut self.buf).expect("a buffer of our own");
            let cap = buf.len().min(self.end + READ_BYTES);
            let n = read_some(&mut self.inner, &mut buf[self.end..cap])?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(!out.is_empty() || !self.eof || self.end > self.start)
    }

    /// Moves the unconsumed bytes (part of one line) to the front of a buffer that no batch
    /// holds, to read after them.
    fn make_room(&mut self) {
        let tail = self.start..self.end;
        if Arc::get_mut(&mut self.buf).is_none() {
            let free = self.spare.iter().position(|b| Arc::strong_count(b) == 1);
            let mut fresh = match free {
                Some(i) => self.spare.swap_remove(i),
                None => Arc::new(vec![0; self.buf.len()]),
            };
            let fresh_buf = Arc::get_mut(&mut fresh).expect("a spare buffer nobody holds");
            fresh_buf[..tail.len()].copy_from_slice(&self.buf[tail.clone()]);
            let held = std::mem::replace(&mut self.buf, fresh);
            self.spare.push(held);
        } else if tail.start > 0 {
            let buf = Arc::get_mut(&mut self.buf).expect("checked just above");
            buf.copy_within(tail.clone(), 0);
        }
        self.end = tail.len();
        self.start = 0;
    }

    /// Consumes `buf[start..consumed_to]`, a line ending at `line_end`.
    fn take_line(&mut self, line_end: usize, consumed_to: usize, out: &mut Vec<Line>) {
        let len = line_end - self.start;
        if self.skipping {
            self.skipping = false;
        } else if len > self.max_line {
            self.report_too_large(out);
        } else {
            let mut end = line_end;
            if end > self.start && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            out.push(Line {
                range: self.start..end,
                source: 0,
                number: self.next_number,
                offset: self.offset,
                too_large: false,
            });
            self.next_number += 1;
        }
        self.offset += (consumed_to - self.start) as u64;
        self.start = consumed_to;
    }

    fn report_too_large(&mut self, out: &mut Vec<Line>) {
        out.push(Line {
            range: 0..0,
            source: 0,
            number: self.next_number,
            offset: self.offset,
            too_large: true,
        });
        self.next_number += 1;
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Reads everything in batches of `per`, returning (text or None if too large, number, offset).
    fn all(input: &[u8], max_line: usize, per: usize) -> Vec<(Option<String>, u64, u64)> {
        let mut r = LineReader::new(input, max_line);
        let mut out = Vec::new();
        let mut got = Vec::new();
        while r.next_batch(per, &mut out).unwrap() {
            for l in &out {
                let text = (!l.too_large)
                    .then(|| String::from_utf8_lossy(&r.buffer()[l.range.clone()]).into_owned());
                got.push((text, l.number, l.offset));
            }
        }
        got
    }

    #[test]
    fn splits_lines_with_positions() {
        let got = all(b"a\r\nbb\n\nccc", 10, 2);
        assert_eq!(
            got,
            vec![
                (Some("a".into()), 1, 0),
                (Some("bb".into()), 2, 3),
                (Some("".into()), 3, 6),
                (Some("ccc".into()), 4, 7),
            ]
        );
        assert!(all(b"", 10, 2).is_empty());
    }

    #[test]
    fn skips_oversized_lines_and_keeps_going() {
        let got = all(b"ok\n0123456789abc\nfine\n", 5, 10);
        assert_eq!(
            got,
            vec![
                (Some("ok".into()), 1, 0),
                (None, 2, 3),
                (Some("fine".into()), 3, 17),
            ]
        );
    }

    #[test]
    fn oversized_lines_longer_than_the_buffer_are_skipped_without_buffering() {
        let mut input = b"first\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 9 << 20));
        input.extend_from_slice(b"\nlast");
        let got = all(&input, 100, 1000);
        assert_eq!(
            got,
            vec![
                (Some("first".into()), 1, 0),
                (None, 2, 6),
                (Some("last".into()), 3, 6 + (9 << 20) + 1),
            ]
        );
    }

    /// A reader that hands out one chunk per call and then blocks: a live pipe.
    struct Trickle(Vec<&'static [u8]>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            assert!(
                !self.0.is_empty(),
                "read again although complete lines were buffered"
            );
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn lines_of_a_slow_stream_are_handed_out_without_another_read() {
        let mut r = LineReader::new(Trickle(vec![b"a\nb\npart", b"ial\n"]), 100);
        let mut out = Vec::new();
        assert!(r.next_batch(4096, &mut out).unwrap());
        assert_eq!(out.len(), 2);
        assert!(r.next_batch(4096, &mut out).unwrap());
        assert_eq!(&r.buffer()[out[0].range.clone()], b"partial");
    }

    #[test]
    fn held_buffers_are_never_written_and_batches_end_where_they_would_unheld() {
        let mut input = Vec::new();
        for i in 0..300_000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let batches = |hold: usize| {
            let mut r = LineReader::new(&input[..], 64);
            let (mut out, mut held, mut got) = (Vec::new(), VecDeque::new(), Vec::new());
            while r.next_batch(4096, &mut out).unwrap() {
                let block = r.block();
                let text: Vec<Vec<u8>> = out
                    .iter()
                    .map(|l| block[l.range.clone()].to_vec())
                    .collect();
                held.push_back((block, out.clone(), text));
                if held.len() > hold {
                    let (block, lines, text) = held.pop_front().unwrap();
                    // Still the bytes it had when it was handed out.
                    assert!(
                        lines
                            .iter()
                            .zip(&text)
                            .all(|(l, t)| &block[l.range.clone()] == t)
                    );
                }
                got.push(out.iter().map(|l| (l.number, l.offset)).collect::<Vec<_>>());
            }
            got
        };
        let unheld = batches(0);
        assert_eq!(unheld.iter().map(Vec::len).sum::<usize>(), 300_000);
        assert_eq!(batches(8), unheld);
    }

    #[test]
    fn batches_across_buffer_refills_lose_nothing() {
        let mut input = Vec::new();
        for i in 0..300_000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let got = all(&input, 64, 4096);
        assert_eq!(got.len(), 300_000);
        assert!(got.iter().enumerate().all(|(i, (t, n, _))| {
            t.as_deref() == Some(&*format!("line {i}")) && *n == i as u64 + 1
        }));
    }
}
