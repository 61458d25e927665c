// Package rulewatch writes rules for rulewatch (https://github.com/rulewatch/rulewatch) in Go.
//
// A rule is a small WebAssembly module with two decisions in it:
//
//   - [Rule.Filter]: does this event count? (for example: content mentions "crash" and the
//     severity is High or Critical)
//   - [Rule.Alert]: does this window count make an alert? (for example: more than 2)
//
// Everything else — reading Kafka or files, parsing JSON, event time, windows, watermarks,
// late data, output — is done by the host and configured in the rule's TOML file. The host
// parses each event once, natively, and hands the rule only the fields it declared, a batch
// at a time; this package loops over the batch and calls the rule once per event.
//
// A rule is a main package that registers itself from its init function:
//
//	package main
//
//	import rulewatch "github.com/rulewatch/rulewatch/sdk/go"
//
//	type Params struct {
//		Word      string `json:"word"`
//		Threshold uint64 `json:"threshold"`
//	}
//
//	type Mentions struct{ p Params }
//
//	var fields = []rulewatch.Field{rulewatch.Str("content")}
//
//	func New(p Params) (rulewatch.Rule, error) { return &Mentions{p}, nil }
//
//	func (m *Mentions) Filter(e *rulewatch.Event) bool {
//		return rulewatch.ContainsFold(e.Str("content"), m.p.Word)
//	}
//
//	func (m *Mentions) Alert(w *rulewatch.WindowCount) bool { return w.Count > m.p.Threshold }
//
//	func init() { rulewatch.Export(fields, New) }
//
//	func main() {}
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o rule.wasm .
//
// and put the .wasm next to its .toml in the rules folder. The same package builds natively,
// so `go test` runs the rule's logic through [FilterEvents] and [AlertWindows] without
// WebAssembly. sdk/ABI.md in the repository describes the binary contract (version
// [ABIVersion]) that this package implements.
package rulewatch

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unsafe"
)

// FieldType is the type of an event field a rule declares: [FieldStr] or [FieldNum].
type FieldType uint8

const (
	// FieldStr is a JSON string, read with [Event.Str].
	FieldStr FieldType = iota + 1
	// FieldNum is a JSON number, delivered as float64 and read with [Event.Num].
	FieldNum
)

// String returns the word used for the type in the field declaration: "str" or "num".
func (t FieldType) String() string {
	switch t {
	case FieldStr:
		return "str"
	case FieldNum:
		return "num"
	}
	return fmt.Sprintf("FieldType(%d)", uint8(t))
}

// kind is the batch column kind that carries values of the type.
func (t FieldType) kind() uint32 {
	if t == FieldNum {
		return kindF64
	}
	return kindStr
}

// Field is an event field a rule reads: its top-level JSON key and its type. Events in which
// a declared field is missing or has another JSON type are rejected by the host as bad input
// (missing_field, wrong_type) and never reach the rule.
type Field struct {
	// Name is the top-level key in the JSON event (1 to 256 bytes, no control characters).
	Name string
	// Type is the JSON type the field must have.
	Type FieldType
}

// Str declares a string field.
func Str(name string) Field { return Field{Name: name, Type: FieldStr} }

// Num declares a number field (delivered as float64).
func Num(name string) Field { return Field{Name: name, Type: FieldNum} }

// Rule is what a rule module implements: a filter over events and an alert decision over
// window counts. A Rule is built once per load by the constructor given to [Export], from
// the params of the rule's TOML file, and is then called for every event and every window
// count of the batches its instance receives.
//
// A rule runs as several instances (one per worker that filters, one that decides alerts),
// each seeing a share of the batches in no particular order, so its answers must depend
// only on its params and on the event or window it is given.
type Rule interface {
	// Filter reports whether the event counts towards its window.
	Filter(e *Event) bool
	// Alert reports whether a window's count is an alert.
	Alert(w *WindowCount) bool
}

// Event is one event of a batch: its time, its key and the declared fields. The rule gets
// a pointer to one Event value that is reused for every row: do not keep it, or the strings
// it returns, past the Filter call (copy a string with strings.Clone to keep it).
type Event struct {
	b      *batch
	fields []Field
	row    int
}

// Time is the event time in milliseconds since the Unix epoch (UTC), taken from the TOML's
// [time] field.
func (e *Event) Time() int64 { return e.b.i64(eventTime, e.row) }

// Key is the value of the rule's [window] key field (numbers as their JSON text). The
// string is a view into the batch, valid only during the Filter call.
func (e *Event) Key() string { return e.b.str(eventKey, e.row) }

// Str returns the string field name. The string is a view into the batch, not a copy: it
// is valid only during the Filter call.
//
// It panics if name is not declared as a string field ([Str]) in the fields given to
// [Export]: the rule would otherwise read a field the host never sent.
func (e *Event) Str(name string) string {
	// One function for the lookup and the read: calls are dear in Go's WebAssembly code.
	for i := range e.fields {
		f := &e.fields[i]
		// A rule names its fields with the same literals it declared them with, which the
		// linker stores once: comparing the pointers first mostly skips comparing the bytes.
		if len(f.Name) == len(name) && f.Type == FieldStr &&
			(unsafe.StringData(f.Name) == unsafe.StringData(name) || f.Name == name) {
			return e.b.cols[eventFixedColumns+i].str(e.row)
		}
	}
	undeclared(name, FieldStr, e.fields)
	return ""
}

// Num returns the number field name.
//
// It panics if name is not declared as a number field ([Num]) in the fields given to
// [Export].
func (e *Event) Num(name string) float64 {
	for i := range e.fields {
		f := &e.fields[i]
		if len(f.Name) == len(name) && f.Type == FieldNum &&
			(unsafe.StringData(f.Name) == unsafe.StringData(name) || f.Name == name) {
			return e.b.f64(eventFixedColumns+i, e.row)
		}
	}
	undeclared(name, FieldNum, e.fields)
	return 0
}

//go:noinline
func undeclared(name string, t FieldType, fields []Field) {
	for _, f := range fields {
		if f.Name == name {
			read := "Event.Str"
			if f.Type == FieldNum {
				read = "Event.Num"
			}
			panic(fmt.Sprintf("rulewatch: field %q is declared as %s, not %s: read it with %s",
				name, f.Type, t, read))
		}
	}
	panic(fmt.Sprintf("rulewatch: field %q (%s) is not declared in the fields given to rulewatch.Export",
		name, t))
}

// WindowCount is the count of one key in one window, for [Rule.Alert].
type WindowCount struct {
	// StartMs is the window's start, ms since the Unix epoch (inclusive).
	StartMs int64
	// EndMs is the window's end, ms since the Unix epoch (exclusive).
	EndMs int64
	// Key is the key (for example the user id). Inside Alert it is a view into the batch,
	// valid only during the call.
	Key string
	// Count is how many events passed the filter in this window for this key.
	Count uint64
}

// ContainsFold reports whether haystack contains needle, ignoring ASCII case (only A-Z and
// a-z are folded; other bytes, including non-ASCII letters, must match exactly). An empty
// needle is always contained. It does not allocate.
//
// Candidates for the needle's first byte are found eight bytes at a time (SWAR), then
// checked: few loop iterations per byte, which matters inside WebAssembly, where every loop
// iteration also checks the host's time budget.
func ContainsFold(haystack, needle string) bool {
	const ones = 0x0101010101010101
	const high = 0x8080808080808080
	n := len(needle)
	if n == 0 {
		return true
	}
	if len(haystack) < n {
		return false
	}
	last := len(haystack) - n
	first := lowerASCII(needle[0])
	// Letters compare with bit 0x20 set (lowercase); other bytes exactly.
	var fold uint64
	if first >= 'a' && first <= 'z' {
		fold = ones * 0x20
	}
	pattern := ones * uint64(first)
	h := unsafe.Slice(unsafe.StringData(haystack), len(haystack))
	i := 0
	for ; i+8 <= last+1; i += 8 {
		x := (binary.LittleEndian.Uint64(h[i:i+8]) | fold) ^ pattern
		// High bit set in each byte of x that is zero (plus, rarely, a false candidate).
		candidates := (x - ones) &^ x & high
		for candidates != 0 {
			if equalFoldAt(haystack, i+bits.TrailingZeros64(candidates)/8, needle) {
				return true
			}
			candidates &= candidates - 1
		}
	}
	for ; i <= last; i++ {
		if lowerASCII(haystack[i]) == first && equalFoldAt(haystack, i, needle) {
			return true
		}
	}
	return false
}

// equalFoldAt reports whether haystack[at:at+len(needle)] equals needle ignoring ASCII case;
// the caller guarantees that the range is inside haystack.
func equalFoldAt(haystack string, at int, needle string) bool {
	h := haystack[at : at+len(needle)]
	for k := 0; k < len(needle); k++ {
		if lowerASCII(h[k]) != lowerASCII(needle[k]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if c-'A' < 26 {
		return c | 0x20
	}
	return c
}
