package main

import (
	"slices"
	"strings"
	"testing"

	rulewatch "github.com/rulewatch/rulewatch/sdk/go"
)

// rule builds the rule from params JSON, as the host does with crash-go.toml's [params].
func rule(t *testing.T) rulewatch.Rule {
	t.Helper()
	r, err := rulewatch.Init(New, `{"keyword": "crash", "severities": ["High", "Critical"], "threshold": 2}`)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCountsHighAndCriticalCrashesInAnyCase(t *testing.T) {
	e := func(severity, content string) rulewatch.TestEvent {
		return rulewatch.TestEvent{Time: 0, Key: "u", Fields: map[string]any{"severity": severity, "content": content}}
	}
	got := rulewatch.FilterEvents(rule(t), fields,
		e("High", "App crash on startup"),
		e("Critical", "CRASH in renderer"),
		e("Critical", "crashed while saving"),
		e("Medium", "App crash on startup"),
		e("high", "App crash"),
		e("High", "Settings saved"),
	)
	if want := []bool{true, true, true, false, false, false}; !slices.Equal(got, want) {
		t.Errorf("filter: %v, want %v", got, want)
	}
}

func TestAlertsAboveTheThreshold(t *testing.T) {
	w := func(count uint64) rulewatch.WindowCount {
		return rulewatch.WindowCount{StartMs: 0, EndMs: 10_000, Key: "u", Count: count}
	}
	if got, want := rulewatch.AlertWindows(rule(t), w(2), w(3)), []bool{false, true}; !slices.Equal(got, want) {
		t.Errorf("alert: %v, want %v", got, want)
	}
}

func TestRejectsEmptyMissingAndUnknownParams(t *testing.T) {
	for _, c := range []struct{ params, want string }{
		{`{"keyword": "", "severities": ["High"], "threshold": 2}`, "params.keyword is empty"},
		{`{"keyword": "crash", "severities": [], "threshold": 2}`, "params.severities is empty"},
		{`{"keyword": "crash", "severities": ["High"]}`, "params.threshold is missing"},
		{`{"keyword": "crash", "severities": ["High"], "threshold": 2, "treshold": 3}`, `invalid params: unknown param "treshold"`},
		{`{"keyword": "crash", "severities": ["High"], "threshold": -1}`, "invalid params: params.threshold must be"},
		{`{"keyword": "crash", "severities": "High", "threshold": 2}`, "invalid params: params.severities must be"},
	} {
		if _, err := rulewatch.Init(New, c.params); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.params, err, c.want)
		}
	}
}
