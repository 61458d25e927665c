package rulewatch

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// ABIVersion is the version of the rule ABI (sdk/ABI.md) this package speaks. The host
// refuses a module of another version with a message naming both.
const ABIVersion = 1

// Column kinds of a batch.
const (
	kindI64 uint32 = 1 // rows × little-endian i64
	kindF64 uint32 = 2 // rows × little-endian f64
	kindStr uint32 = 3 // rows+1 × u32 end offsets (the first 0), then the UTF-8 bytes
)

// Columns of an event batch: time, key, then the declared fields in declared order.
const (
	eventTime         = 0
	eventKey          = 1
	eventFixedColumns = 2
)

// Columns of a window batch.
const (
	windowStart = 0
	windowEnd   = 1
	windowKey   = 2
	windowCount = 3
)

var windowKinds = []uint32{kindI64, kindI64, kindStr, kindI64}

func kindName(k uint32) string {
	switch k {
	case kindI64:
		return "i64"
	case kindF64:
		return "f64"
	case kindStr:
		return "str"
	}
	return fmt.Sprintf("kind %d", k)
}

// column is one column's data in the batch buffer.
type column struct {
	// data holds the values (i64, f64) or the rows+1 string end offsets (str).
	data []byte
	// text holds a string column's bytes.
	text []byte
}

// batch is a checked, read-only view of an encoded batch. Its column slice is reused from
// one batch to the next, so parsing does not allocate once it has grown.
type batch struct {
	buf  []byte
	rows int
	cols []column
}

// parse checks buf against the documented layout and the expected column kinds, and makes
// b a view of it. A malformed batch is a bug of the host (or a foreign host): parse panics
// with a message saying what is wrong, which quarantines the rule with that message.
func (b *batch) parse(buf []byte, kinds []uint32) {
	b.buf, b.rows, b.cols = nil, 0, b.cols[:0]
	size := uint64(len(buf))
	if size < 8 {
		malformed("truncated: %d bytes, shorter than the 8-byte header", size)
	}
	rows := uint64(binary.LittleEndian.Uint32(buf[0:]))
	ncols := uint64(binary.LittleEndian.Uint32(buf[4:]))
	if ncols != uint64(len(kinds)) {
		malformed("%d columns, expected %d", ncols, len(kinds))
	}
	if 8+12*ncols > size {
		malformed("truncated: %d column headers do not fit in %d bytes", ncols, size)
	}
	for c := uint64(0); c < ncols; c++ {
		h := buf[8+12*c:]
		kind := binary.LittleEndian.Uint32(h[0:])
		off := uint64(binary.LittleEndian.Uint32(h[4:]))
		length := uint64(binary.LittleEndian.Uint32(h[8:]))
		if kind != kinds[c] {
			malformed("column %d is %s, expected %s", c, kindName(kind), kindName(kinds[c]))
		}
		if off+length > size {
			malformed("column %d (offset %d, length %d) outside the batch of %d bytes", c, off, length, size)
		}
		col := column{data: buf[off : off+length]}
		switch kind {
		case kindI64, kindF64:
			if length != rows*8 {
				malformed("column %d (%s) has %d bytes for %d rows", c, kindName(kind), length, rows)
			}
		case kindStr:
			header := (rows + 1) * 4
			if length < header {
				malformed("column %d (str): %d bytes cannot hold %d end offsets", c, length, rows+1)
			}
			ends := buf[off : off+header]
			col.data, col.text = ends, buf[off+header:off+length]
			textLen := uint32(length - header)
			prev := binary.LittleEndian.Uint32(ends)
			if prev != 0 {
				malformed("column %d (str): first end offset is %d, not 0", c, prev)
			}
			for r := uint64(1); r <= rows; r++ {
				end := binary.LittleEndian.Uint32(ends[4*r:])
				if end < prev || end > textLen {
					malformed("column %d (str): end offset %d of row %d is out of order or past the %d bytes of text",
						c, end, r-1, textLen)
				}
				prev = end
			}
			if prev != textLen {
				malformed("column %d (str): the last end offset is %d but the text has %d bytes", c, prev, textLen)
			}
		default:
			malformed("column %d has unknown kind %d", c, kind)
		}
		b.cols = append(b.cols, col)
	}
	b.buf, b.rows = buf, int(rows)
}

//go:noinline
func malformed(format string, args ...any) {
	panic("rulewatch: malformed batch: " + fmt.Sprintf(format, args...))
}

// i64 is the value at row of an i64 column.
func (b *batch) i64(col, row int) int64 {
	return int64(binary.LittleEndian.Uint64(b.cols[col].data[8*row:]))
}

// f64 is the value at row of an f64 column.
func (b *batch) f64(col, row int) float64 {
	return math.Float64frombits(binary.LittleEndian.Uint64(b.cols[col].data[8*row:]))
}

// str is the string at row of a str column: a view into the batch, not a copy.
func (b *batch) str(col, row int) string {
	return b.cols[col].str(row)
}

// str is the string at row of a str column: a view into the batch, not a copy.
func (c *column) str(row int) string {
	ends := c.data[4*row : 4*row+8]
	text := c.text[binary.LittleEndian.Uint32(ends):binary.LittleEndian.Uint32(ends[4:])]
	return unsafe.String(unsafe.SliceData(text), len(text))
}

// bitmap returns out resized to ceil(rows/8) zeroed bytes, reusing its storage.
func bitmap(out []byte, rows int) []byte {
	n := (rows + 7) / 8
	if cap(out) < n {
		out = make([]byte, n)
	}
	out = out[:n]
	clear(out)
	return out
}

// batchWriter encodes a batch, as the host does; used by the test helpers.
type batchWriter struct {
	rows  uint32
	kinds []uint32
	fixed [][]byte // values, or string end offsets
	text  [][]byte // string bytes
}

func newBatchWriter(kinds []uint32) *batchWriter {
	w := &batchWriter{kinds: kinds, fixed: make([][]byte, len(kinds)), text: make([][]byte, len(kinds))}
	for c, k := range kinds {
		if k == kindStr {
			w.fixed[c] = binary.LittleEndian.AppendUint32(nil, 0)
		}
	}
	return w
}

func (w *batchWriter) i64(c int, v int64) {
	w.fixed[c] = binary.LittleEndian.AppendUint64(w.fixed[c], uint64(v))
}

func (w *batchWriter) f64(c int, v float64) {
	w.fixed[c] = binary.LittleEndian.AppendUint64(w.fixed[c], math.Float64bits(v))
}

func (w *batchWriter) str(c int, v string) {
	w.text[c] = append(w.text[c], v...)
	w.fixed[c] = binary.LittleEndian.AppendUint32(w.fixed[c], uint32(len(w.text[c])))
}

func (w *batchWriter) endRow() { w.rows++ }

// finish returns the encoded batch.
func (w *batchWriter) finish() []byte {
	out := binary.LittleEndian.AppendUint32(nil, w.rows)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(w.kinds)))
	offset := 8 + 12*len(w.kinds)
	for c, k := range w.kinds {
		n := len(w.fixed[c]) + len(w.text[c])
		out = binary.LittleEndian.AppendUint32(out, k)
		out = binary.LittleEndian.AppendUint32(out, uint32(offset))
		out = binary.LittleEndian.AppendUint32(out, uint32(n))
		offset += n
	}
	for c := range w.kinds {
		out = append(out, w.fixed[c]...)
		out = append(out, w.text[c]...)
	}
	return out
}
