// A Go rule that behaves like the crash rule's filter (content mentions "crash") until it has
// seen `after` events, then does what `fail` says: "stdout" (prints a line for every event),
// "clock" (selects events by the clock, after sleeping), "panic" (panics), "loop" (never
// returns) or "memory" (allocates without end). "none" never misbehaves.
package main

import (
	"fmt"
	"time"

	rw "github.com/rulewatch/rulewatch/sdk/go"
)

// Params is the rule's [params] table.
type Params struct {
	Fail  string `json:"fail"`
	After uint64 `json:"after"`
}

type misbehave struct {
	p     Params
	seen  uint64
	hoard [][]byte
}

// Fields is what the rule reads.
var Fields = []rw.Field{rw.Str("content")}

func newRule(p Params) (rw.Rule, error) {
	switch p.Fail {
	case "none", "stdout", "clock", "panic", "loop", "memory":
		return &misbehave{p: p}, nil
	}
	return nil, fmt.Errorf("unknown fail mode %q", p.Fail)
}

func (m *misbehave) Filter(e *rw.Event) bool {
	m.seen++
	crash := rw.ContainsFold(e.Str("content"), "crash")
	if m.seen <= m.p.After {
		return crash
	}
	switch m.p.Fail {
	case "stdout":
		fmt.Printf("event %d of key %s\n", m.seen, e.Key())
	case "clock":
		time.Sleep(time.Millisecond)
		return crash && (time.Now().UnixNano()/1000)%2 == 0
	case "panic":
		panic("misbehave: panicking on purpose")
	case "loop":
		for {
			m.seen++
		}
	case "memory":
		for {
			m.hoard = append(m.hoard, make([]byte, 1<<20))
		}
	}
	return crash
}

func (m *misbehave) Alert(w *rw.WindowCount) bool { return w.Count > 0 }

func init() { rw.Export(Fields, newRule) }

func main() {}
