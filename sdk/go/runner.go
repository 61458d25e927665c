package rulewatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
)

// Bounds the host enforces on the field declaration (sdk/ABI.md, "Limits").
const (
	maxFields    = 256
	maxFieldName = 256
)

// registration is what Export registered: the rule's fields and its constructor.
type registration struct {
	fields      []Field
	kinds       []uint32 // the event batch's column kinds
	declaration string   // the text rulewatch_fields returns
	build       func(params []byte) (Rule, error)
}

var registered *registration

// Export registers a rule: the event fields it reads and the constructor that builds it from
// its params. Call it once, from the rule's func init():
//
//	func init() { rulewatch.Export(fields, New) }
//
// The host hands the TOML's [params] table to the module as one JSON object. It is decoded
// with encoding/json into a P, refusing unknown keys (a typo in the TOML is an error, not a
// silent default), and passed to init. A JSON error (reported as "invalid params: ...") or an
// error returned by init makes the rule refuse to load, with that message. Note that
// encoding/json leaves a param that is absent from the TOML at its zero value: to require
// one, make its field a pointer and have init refuse nil.
//
// Export panics (so the module fails to load, with the message) if it is called twice, if
// init is nil, or if fields holds an invalid declaration.
func Export[P any](fields []Field, init func(P) (Rule, error)) {
	if registered != nil {
		panic("rulewatch.Export called twice: a module holds one rule")
	}
	if init == nil {
		panic("rulewatch.Export: the constructor is nil")
	}
	reg := newRegistration(fields)
	reg.build = func(params []byte) (Rule, error) { return build(init, params) }
	registered = reg
}

// newRegistration checks and copies a field declaration.
func newRegistration(fields []Field) *registration {
	if len(fields) > maxFields {
		panic(fmt.Sprintf("rulewatch: %d fields declared, at most %d are allowed", len(fields), maxFields))
	}
	reg := &registration{
		fields: append([]Field(nil), fields...),
		kinds:  []uint32{kindI64, kindStr},
	}
	var decl strings.Builder
	for i, f := range fields {
		if f.Type != FieldStr && f.Type != FieldNum {
			panic(fmt.Sprintf("rulewatch: field %d (%q) has no type: declare it with rulewatch.Str or rulewatch.Num", i, f.Name))
		}
		if len(f.Name) == 0 || len(f.Name) > maxFieldName {
			panic(fmt.Sprintf("rulewatch: field %d: a name must have 1 to %d bytes, %q has %d", i, maxFieldName, f.Name, len(f.Name)))
		}
		for _, c := range []byte(f.Name) {
			if c < 0x20 || c == 0x7f {
				panic(fmt.Sprintf("rulewatch: field %d: name %q holds a control character", i, f.Name))
			}
		}
		for _, g := range fields[:i] {
			if g.Name == f.Name {
				panic(fmt.Sprintf("rulewatch: field %q is declared twice", f.Name))
			}
		}
		reg.kinds = append(reg.kinds, f.Type.kind())
		decl.WriteString(f.Type.String())
		decl.WriteByte(' ')
		decl.WriteString(f.Name)
		decl.WriteByte('\n')
	}
	reg.declaration = decl.String()
	return reg
}

// build decodes params into a P and calls init with it, as rulewatch_init does.
func build[P any](init func(P) (Rule, error), params []byte) (Rule, error) {
	var p P
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, paramsError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid params: more data after the JSON value")
	}
	rule, err := init(p)
	if err != nil {
		return nil, err
	}
	if rule == nil {
		return nil, errors.New("the rule's constructor returned neither a rule nor an error")
	}
	return rule, nil
}

// paramsError words a JSON decoding error for the rule's author.
func paramsError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fmt.Errorf("invalid params: params.%s must be %s, found %s",
			typeErr.Field, goTypeName(typeErr), typeErr.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		msg = "unknown param " + strings.TrimPrefix(msg, "unknown field ")
	}
	return errors.New("invalid params: " + msg)
}

func goTypeName(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "another type"
	}
	return "a Go " + e.Type.String()
}

// runner decodes batches and calls a rule once per row. The Wasm exports and the test
// helpers share it, so tests go through the code the module runs. After its buffers have
// grown to the size of the batches, filter and alert do not allocate.
type runner struct {
	rule   Rule
	fields []Field
	kinds  []uint32
	batch  batch
	event  Event
	window WindowCount
	out    []byte
}

func newRunner(rule Rule, reg *registration) *runner {
	return &runner{rule: rule, fields: reg.fields, kinds: reg.kinds}
}

// filter answers an event batch with its selection bitmap (reused by the next call).
func (r *runner) filter(in []byte) []byte {
	r.batch.parse(in, r.kinds)
	rows := r.batch.rows
	out := bitmap(r.out, rows)
	r.out = out
	ev := &r.event
	ev.b, ev.fields = &r.batch, r.fields
	for row := 0; row < rows; row++ {
		ev.row = row
		if r.rule.Filter(ev) {
			out[row>>3] |= 1 << (row & 7)
		}
	}
	return out
}

// alert answers a window batch with its alert bitmap (reused by the next call).
func (r *runner) alert(in []byte) []byte {
	b := &r.batch
	b.parse(in, windowKinds)
	rows := b.rows
	out := bitmap(r.out, rows)
	r.out = out
	w := &r.window
	for row := 0; row < rows; row++ {
		*w = WindowCount{
			StartMs: b.i64(windowStart, row),
			EndMs:   b.i64(windowEnd, row),
			Key:     b.str(windowKey, row),
			Count:   uint64(max(b.i64(windowCount, row), 0)),
		}
		if r.rule.Alert(w) {
			out[row>>3] |= 1 << (row & 7)
		}
	}
	*w = WindowCount{}
	return out
}

// describePanic words a recovered panic value for rulewatch_error and the rule's log:
// "panic: MESSAGE (in FUNCTION at FILE:LINE)", naming the innermost frame outside the Go
// runtime and this package. Call it from the deferred function that recovered.
func describePanic(p any) string {
	var msg string
	switch v := p.(type) {
	case error:
		msg = v.Error()
	case string:
		msg = v
	default:
		msg = fmt.Sprint(v)
	}
	msg = "panic: " + strings.ReplaceAll(msg, "\n", " ")
	_, self, _, _ := runtime.Caller(0)
	sdkDir := path.Dir(self)
	var pcs [64]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs[:])])
	panicking := false
	for {
		f, more := frames.Next()
		if f.Function == "runtime.gopanic" {
			panicking = true
		} else if panicking && !strings.HasPrefix(f.Function, "runtime.") && f.File != "<autogenerated>" &&
			(path.Dir(f.File) != sdkDir || strings.HasSuffix(f.File, "_test.go")) {
			return fmt.Sprintf("%s (in %s at %s:%d)", msg, f.Function, f.File, f.Line)
		}
		if !more {
			return msg
		}
	}
}
