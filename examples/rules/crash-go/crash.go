// The crash rule (rules/crash) written in Go with the Go SDK: events whose content mentions
// params.keyword (ASCII case-insensitive) and whose severity is one of params.severities
// count; a window whose count is greater than params.threshold is an alert. Window, key and
// output are set in crash-go.toml.
//
// Build: ./build.sh (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared ...). Test: go test.
package main

import (
	"errors"

	rulewatch "github.com/rulewatch/rulewatch/sdk/go"
)

// Params is the [params] table of crash-go.toml, decoded from JSON; an unknown key is
// refused.
type Params struct {
	// Keyword is the word to look for in content, ignoring ASCII case.
	Keyword string `json:"keyword"`
	// Severities are the severities that count (exact match).
	Severities []string `json:"severities"`
	// Threshold: alert when a window's count is greater than this. A pointer, so that a
	// missing threshold is refused instead of read as 0.
	Threshold *uint64 `json:"threshold"`
}

// Crash is the rule, built once per load from its params.
type Crash struct {
	keyword    string
	severities []string
	threshold  uint64
}

// fields are the event fields the rule reads; the host sends only these (plus time and key).
var fields = []rulewatch.Field{rulewatch.Str("severity"), rulewatch.Str("content")}

// New builds the rule from its params, or says why they are not acceptable.
func New(p Params) (rulewatch.Rule, error) {
	if p.Keyword == "" {
		return nil, errors.New("params.keyword is empty: every event would match")
	}
	if len(p.Severities) == 0 {
		return nil, errors.New("params.severities is empty: no event could match")
	}
	if p.Threshold == nil {
		return nil, errors.New("invalid params: params.threshold is missing; it must be a non-negative integer (e.g. threshold = 2)")
	}
	return &Crash{keyword: p.Keyword, severities: p.Severities, threshold: *p.Threshold}, nil
}

// Filter: a listed severity, and the keyword in the content.
func (c *Crash) Filter(e *rulewatch.Event) bool {
	severity := e.Str("severity")
	for _, s := range c.severities {
		if s == severity {
			return rulewatch.ContainsFold(e.Str("content"), c.keyword)
		}
	}
	return false
}

// Alert: more than threshold events in the window.
func (c *Crash) Alert(w *rulewatch.WindowCount) bool { return w.Count > c.threshold }

func init() { rulewatch.Export(fields, New) }

// main is not called: the module is a library (a WASI reactor) whose functions the host calls.
func main() {}
