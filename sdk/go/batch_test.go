package rulewatch

import (
	"encoding/binary"
	"strings"
	"testing"
)

// mustPanic runs f and checks that it panics with a message containing want.
func mustPanic(t *testing.T, want string, f func()) {
	t.Helper()
	mustPanicWith(t, []string{want}, f)
}

// mustPanicWith runs f and checks that it panics with a message containing each of wants.
func mustPanicWith(t *testing.T, wants []string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		p := recover()
		if p == nil {
			t.Fatalf("no panic; want one containing %q", wants)
		}
		msg, ok := p.(string)
		if !ok {
			if err, isErr := p.(error); isErr {
				msg = err.Error()
			}
		}
		for _, want := range wants {
			if !strings.Contains(msg, want) {
				t.Fatalf("panic %q; want one containing %q", msg, want)
			}
		}
	}()
	f()
}

func sampleBatch() []byte {
	w := newBatchWriter([]uint32{kindI64, kindStr, kindF64})
	for _, r := range []struct {
		t int64
		s string
		n float64
	}{{5, "a", 1.5}, {-7, "", 2}, {9, "héllo", -0.5}} {
		w.i64(0, r.t)
		w.str(1, r.s)
		w.f64(2, r.n)
		w.endRow()
	}
	return w.finish()
}

func TestBatchRoundTrip(t *testing.T) {
	var b batch
	b.parse(sampleBatch(), []uint32{kindI64, kindStr, kindF64})
	if b.rows != 3 || len(b.cols) != 3 {
		t.Fatalf("rows %d, columns %d", b.rows, len(b.cols))
	}
	if got := [3]int64{b.i64(0, 0), b.i64(0, 1), b.i64(0, 2)}; got != [3]int64{5, -7, 9} {
		t.Errorf("i64 column: %v", got)
	}
	if got := [3]string{b.str(1, 0), b.str(1, 1), b.str(1, 2)}; got != [3]string{"a", "", "héllo"} {
		t.Errorf("str column: %q", got)
	}
	if got := [3]float64{b.f64(2, 0), b.f64(2, 1), b.f64(2, 2)}; got != [3]float64{1.5, 2, -0.5} {
		t.Errorf("f64 column: %v", got)
	}

	// The same batch value reads another batch, forgetting the first.
	w := newBatchWriter([]uint32{kindStr})
	w.str(0, "x")
	w.endRow()
	b.parse(w.finish(), []uint32{kindStr})
	if b.rows != 1 || len(b.cols) != 1 || b.str(0, 0) != "x" {
		t.Errorf("second batch: rows %d, columns %d", b.rows, len(b.cols))
	}
}

func TestEmptyBatch(t *testing.T) {
	w := newBatchWriter(windowKinds)
	var b batch
	b.parse(w.finish(), windowKinds)
	if b.rows != 0 {
		t.Errorf("rows %d", b.rows)
	}
	if got := bitmap(nil, 0); len(got) != 0 {
		t.Errorf("bitmap of no rows: %v", got)
	}
}

func TestTruncatedBatchesPanic(t *testing.T) {
	buf := sampleBatch()
	kinds := []uint32{kindI64, kindStr, kindF64}
	for cut := 0; cut < len(buf); cut++ {
		mustPanic(t, "malformed batch", func() {
			var b batch
			b.parse(buf[:cut], kinds)
		})
	}
}

func TestMalformedBatchesPanic(t *testing.T) {
	kinds := []uint32{kindI64, kindStr, kindF64}
	u32 := func(buf []byte, at int, v uint32) { binary.LittleEndian.PutUint32(buf[at:], v) }
	// Column headers start at 8, 12 bytes each: kind, offset, length.
	header := func(c, field int) int { return 8 + 12*c + 4*field }
	strOffset := func(buf []byte) int { return int(binary.LittleEndian.Uint32(buf[header(1, 1):])) }
	cases := []struct {
		name  string
		kinds []uint32
		edit  func(buf []byte)
		want  string
	}{
		{"too few columns", kinds, func(b []byte) { u32(b, 4, 2) }, "2 columns, expected 3"},
		{"too many columns", kinds, func(b []byte) { u32(b, 4, 4) }, "4 columns, expected 3"},
		{"huge column count", kinds, func(b []byte) { u32(b, 4, 0xffffffff) }, "4294967295 columns, expected 3"},
		{"unexpected kind", []uint32{kindI64, kindStr, kindStr}, func([]byte) {}, "column 2 is f64, expected str"},
		{"unknown kind", []uint32{kindI64, kindStr, 7}, func(b []byte) { u32(b, header(2, 0), 7) }, "unknown kind 7"},
		{"column past the end", kinds, func(b []byte) { u32(b, header(2, 1), uint32(len(b))-8) }, "outside the batch"},
		{"offset overflow", kinds, func(b []byte) { u32(b, header(2, 1), 0xfffffff8) }, "outside the batch"},
		{"fixed column length", kinds, func(b []byte) { u32(b, header(0, 2), 16) }, "has 16 bytes for 3 rows"},
		{"more rows than values", kinds, func(b []byte) { u32(b, 0, 4) }, "for 4 rows"},
		{"first end offset", kinds, func(b []byte) { u32(b, strOffset(b), 1) }, "first end offset is 1"},
		{"ends out of order", kinds, func(b []byte) { u32(b, strOffset(b)+8, 0) }, "out of order"},
		{"end past the text", kinds, func(b []byte) { u32(b, strOffset(b)+4, 100) }, "out of order or past"},
		{"last end short of the text", kinds, func(b []byte) { u32(b, strOffset(b)+12, 5) }, "the last end offset is 5"},
		{"str column too short for its offsets", kinds, func(b []byte) { u32(b, header(1, 2), 8) }, "cannot hold 4 end offsets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			buf := sampleBatch()
			c.edit(buf)
			mustPanicWith(t, []string{"rulewatch: malformed batch: ", c.want}, func() {
				var b batch
				b.parse(buf, c.kinds)
			})
		})
	}
}

func TestBitmapReusesItsStorage(t *testing.T) {
	out := bitmap(nil, 17)
	if len(out) != 3 {
		t.Fatalf("17 rows: %d bytes", len(out))
	}
	out[0], out[2] = 0xff, 0xff
	again := bitmap(out, 9)
	if len(again) != 2 || &again[0] != &out[0] || again[0] != 0 || again[1] != 0 {
		t.Errorf("a reused bitmap is not cleared or not reused: %v", again)
	}
}
