package rulewatch

import (
	"fmt"
	"math"
)

// Helpers to test a rule natively with `go test`, without WebAssembly. They encode events
// and windows in the batch layout the host writes and run them through the same decoding
// and loop code as the module's exports.

// TestEvent is an event as the host would decode it, for [FilterEvents].
type TestEvent struct {
	// Time is the event time, ms since the Unix epoch.
	Time int64
	// Key is the value of the rule's window key field.
	Key string
	// Fields holds the declared fields' values by name: a string for a [Str] field, a
	// float64 or any Go integer for a [Num] field. Other entries are ignored, as the host
	// ignores fields a rule does not declare.
	Fields map[string]any
}

// Init builds a rule from params JSON the way the host does when it loads the module: the
// JSON is decoded into a P (unknown keys refused), then passed to init. Its error is the
// message the host would report ("invalid params: ..." for a JSON error).
//
//	rule, err := rulewatch.Init(New, `{"keyword": "crash", "threshold": 2}`)
func Init[P any](init func(P) (Rule, error), paramsJSON string) (Rule, error) {
	return build(init, []byte(paramsJSON))
}

// FilterEvents runs r.Filter over events as one batch and returns its answers in order.
// fields are the rule's declared fields, as given to [Export].
//
// It panics if an event lacks a declared field or has it with another type: the host would
// have rejected that event as bad input (missing_field, wrong_type) before the rule saw it.
func FilterEvents(r Rule, fields []Field, events ...TestEvent) []bool {
	reg := newRegistration(fields)
	w := newBatchWriter(reg.kinds)
	for i, e := range events {
		w.i64(eventTime, e.Time)
		w.str(eventKey, e.Key)
		for j, f := range reg.fields {
			column := eventFixedColumns + j
			v, ok := e.Fields[f.Name]
			if !ok {
				panic(fmt.Sprintf("rulewatch.FilterEvents: event %d lacks the %s field %q, which the rule declares", i, f.Type, f.Name))
			}
			switch f.Type {
			case FieldStr:
				s, ok := v.(string)
				if !ok {
					panic(fmt.Sprintf("rulewatch.FilterEvents: event %d: field %q is declared str but holds %T", i, f.Name, v))
				}
				w.str(column, s)
			case FieldNum:
				n, ok := number(v)
				if !ok {
					panic(fmt.Sprintf("rulewatch.FilterEvents: event %d: field %q is declared num but holds %T", i, f.Name, v))
				}
				w.f64(column, n)
			}
		}
		w.endRow()
	}
	return answers(newRunner(r, reg).filter(w.finish()), len(events))
}

// AlertWindows runs r.Alert over window counts as one batch and returns its answers in
// order.
func AlertWindows(r Rule, windows ...WindowCount) []bool {
	w := newBatchWriter(windowKinds)
	for _, c := range windows {
		if c.Count > math.MaxInt64 {
			panic(fmt.Sprintf("rulewatch.AlertWindows: count %d does not fit the ABI's i64", c.Count))
		}
		w.i64(windowStart, c.StartMs)
		w.i64(windowEnd, c.EndMs)
		w.str(windowKey, c.Key)
		w.i64(windowCount, int64(c.Count))
		w.endRow()
	}
	run := &runner{rule: r, kinds: windowKinds}
	return answers(run.alert(w.finish()), len(windows))
}

func answers(bitmap []byte, rows int) []bool {
	out := make([]bool, rows)
	for i := range out {
		out[i] = bitmap[i/8]&(1<<(i%8)) != 0
	}
	return out
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int8:
		return float64(n), true
	case int16:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint8:
		return float64(n), true
	case uint16:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}
