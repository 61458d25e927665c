package rulewatch

import (
	"errors"
	"strings"
	"testing"
)

// levels is a test rule: events whose level is at least params.min and whose message
// mentions params.word count; a window alerts above params.threshold.
type levels struct{ p levelParams }

type levelParams struct {
	Word      string  `json:"word"`
	Min       float64 `json:"min"`
	Threshold uint64  `json:"threshold"`
}

var levelFields = []Field{Str("message"), Num("level")}

func newLevels(p levelParams) (Rule, error) {
	if p.Word == "" {
		return nil, errors.New("params.word is empty")
	}
	return &levels{p}, nil
}

func (l *levels) Filter(e *Event) bool {
	return e.Num("level") >= l.p.Min && ContainsFold(e.Str("message"), l.p.Word)
}

func (l *levels) Alert(w *WindowCount) bool { return w.Count > l.p.Threshold }

func mustInit(t *testing.T, params string) Rule {
	t.Helper()
	r, err := Init(newLevels, params)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFilterAndAlert(t *testing.T) {
	r := mustInit(t, `{"word": "disk", "min": 3, "threshold": 2}`)
	e := func(level any, message string) TestEvent {
		return TestEvent{Time: 1, Key: "k", Fields: map[string]any{"level": level, "message": message}}
	}
	got := FilterEvents(r, levelFields,
		e(3, "DISK full"), e(2.5, "disk full"), e(4.0, "network down"), e(int64(9), "Disk"), e(float32(3), "the disk"))
	if want := []bool{true, false, false, true, true}; !equal(got, want) {
		t.Errorf("filter: %v, want %v", got, want)
	}
	w := func(count uint64) WindowCount { return WindowCount{StartMs: 0, EndMs: 10_000, Key: "k", Count: count} }
	if got, want := AlertWindows(r, w(0), w(2), w(3), w(1<<40)), []bool{false, false, true, true}; !equal(got, want) {
		t.Errorf("alert: %v, want %v", got, want)
	}
	if got := FilterEvents(r, levelFields); len(got) != 0 {
		t.Errorf("no events: %v", got)
	}
}

// probe records what the rule saw.
type probe struct {
	times  []int64
	keys   []string
	nums   []float64
	window []WindowCount
}

func (p *probe) Filter(e *Event) bool {
	p.times = append(p.times, e.Time())
	p.keys = append(p.keys, strings.Clone(e.Key()))
	p.nums = append(p.nums, e.Num("n"))
	return len(p.times)%2 == 0
}

func (p *probe) Alert(w *WindowCount) bool {
	c := *w
	c.Key = strings.Clone(c.Key)
	p.window = append(p.window, c)
	return c.Count == 0
}

func TestEventAndWindowValues(t *testing.T) {
	p := &probe{}
	var events []TestEvent
	for i := range 20 {
		events = append(events, TestEvent{Time: int64(i) - 10, Key: strings.Repeat("é", i), Fields: map[string]any{"n": i, "s": "unused"}})
	}
	got := FilterEvents(p, []Field{Num("n")}, events...)
	for i, sel := range got {
		if sel != (i%2 == 1) || p.times[i] != int64(i)-10 || p.keys[i] != strings.Repeat("é", i) || p.nums[i] != float64(i) {
			t.Fatalf("row %d: selected %v, time %d, key %q, n %v", i, sel, p.times[i], p.keys[i], p.nums[i])
		}
	}
	windows := []WindowCount{{StartMs: -60_000, EndMs: 0, Key: "a", Count: 0}, {StartMs: 5, EndMs: 6, Key: "", Count: 7}}
	if got := AlertWindows(p, windows...); !equal(got, []bool{true, false}) {
		t.Errorf("alert: %v", got)
	}
	if p.window[0] != windows[0] || p.window[1] != windows[1] {
		t.Errorf("windows seen: %+v", p.window)
	}
}

func TestNegativeCountsReadAsZero(t *testing.T) {
	p := &probe{}
	w := newBatchWriter(windowKinds)
	w.i64(windowStart, 0)
	w.i64(windowEnd, 1)
	w.str(windowKey, "k")
	w.i64(windowCount, -3)
	w.endRow()
	(&runner{rule: p, kinds: windowKinds}).alert(w.finish())
	if p.window[0].Count != 0 {
		t.Errorf("count %d", p.window[0].Count)
	}
}

type reader struct{ read func(e *Event) }

func (r reader) Filter(e *Event) bool    { r.read(e); return true }
func (reader) Alert(w *WindowCount) bool { return false }

func TestUndeclaredFieldsPanic(t *testing.T) {
	fields := []Field{Str("message"), Num("level")}
	event := TestEvent{Fields: map[string]any{"message": "m", "level": 1}}
	mustPanic(t, `field "other" (str) is not declared in the fields given to rulewatch.Export`, func() {
		FilterEvents(reader{func(e *Event) { e.Str("other") }}, fields, event)
	})
	mustPanic(t, `field "message" is declared as str, not num: read it with Event.Str`, func() {
		FilterEvents(reader{func(e *Event) { e.Num("message") }}, fields, event)
	})
	mustPanic(t, `field "level" is declared as num, not str: read it with Event.Num`, func() {
		FilterEvents(reader{func(e *Event) { e.Str("level") }}, fields, event)
	})
}

func TestTestEventsMustHoldTheDeclaredFields(t *testing.T) {
	r := reader{func(*Event) {}}
	mustPanic(t, `event 1 lacks the num field "level"`, func() {
		FilterEvents(r, levelFields,
			TestEvent{Fields: map[string]any{"message": "", "level": 1}},
			TestEvent{Fields: map[string]any{"message": ""}})
	})
	mustPanic(t, `field "level" is declared num but holds string`, func() {
		FilterEvents(r, levelFields, TestEvent{Fields: map[string]any{"message": "", "level": "1"}})
	})
	mustPanic(t, `field "message" is declared str but holds int`, func() {
		FilterEvents(r, levelFields, TestEvent{Fields: map[string]any{"message": 1, "level": 1}})
	})
}

func TestParams(t *testing.T) {
	for _, c := range []struct{ params, want string }{
		{`{"word": "disk", "min": 1, "threshold": 2, "treshold": 3}`, `invalid params: unknown param "treshold"`},
		{`{"word": "disk", "threshold": -1}`, `invalid params: params.threshold must be a Go uint64, found number -1`},
		{`{"word": "disk", "threshold": 2.5}`, `invalid params: params.threshold must be a Go uint64, found number 2.5`},
		{`{"word": 7}`, `invalid params: params.word must be a Go string, found number`},
		{`{"word": "disk"} {}`, `invalid params: more data after the JSON value`},
		{`{"word": "disk"`, `invalid params: unexpected EOF`},
		{`[]`, `invalid params: `},
		{`{"min": 1}`, `params.word is empty`},
	} {
		_, err := Init(newLevels, c.params)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.params, err, c.want)
		}
	}
	r := mustInit(t, ` {"word": "d\u00e9", "min": -1.5e1} `)
	if l := r.(*levels); l.p != (levelParams{Word: "dé", Min: -15}) {
		t.Errorf("params: %+v", l.p)
	}
	_, err := Init(func(struct{}) (Rule, error) { return nil, nil }, `{}`)
	if err == nil || !strings.Contains(err.Error(), "neither a rule nor an error") {
		t.Errorf("nil rule: %v", err)
	}
}

func TestExport(t *testing.T) {
	defer func(saved *registration) { registered = saved }(registered)
	registered = nil
	Export(levelFields, newLevels)
	if registered.declaration != "str message\nnum level\n" {
		t.Errorf("declaration %q", registered.declaration)
	}
	r, err := registered.build([]byte(`{"word": "x"}`))
	if err != nil || r.(*levels).p.Word != "x" {
		t.Errorf("build: %v, %v", r, err)
	}
	if _, err := registered.build([]byte(`{"word": "x", "extra": 1}`)); err == nil ||
		err.Error() != `invalid params: unknown param "extra"` {
		t.Errorf("unknown param: %v", err)
	}
	mustPanic(t, "rulewatch.Export called twice", func() { Export(levelFields, newLevels) })
}

func TestFieldDeclarationsAreChecked(t *testing.T) {
	for _, c := range []struct {
		fields []Field
		want   string
	}{
		{[]Field{Str("")}, "a name must have 1 to 256 bytes"},
		{[]Field{Num(strings.Repeat("n", 257))}, "a name must have 1 to 256 bytes"},
		{[]Field{Str("a\nb")}, "holds a control character"},
		{[]Field{{Name: "untyped"}}, `field 0 ("untyped") has no type`},
		{[]Field{Str("a"), Num("a")}, `field "a" is declared twice`},
		{make([]Field, 257), "257 fields declared, at most 256"},
	} {
		mustPanic(t, c.want, func() { newRegistration(c.fields) })
	}
	if got := newRegistration(nil).declaration; got != "" {
		t.Errorf("no fields: %q", got)
	}
}

func TestPanicsAreDescribedWithTheRulesLine(t *testing.T) {
	var msg string
	func() {
		defer func() { msg = describePanic(recover()) }()
		FilterEvents(reader{func(e *Event) { e.Str("other") }}, nil, TestEvent{})
	}()
	if !strings.HasPrefix(msg, `panic: rulewatch: field "other" (str) is not declared`) ||
		!strings.Contains(msg, "rulewatch_test.go:") {
		t.Errorf("message %q", msg)
	}
	func() {
		defer func() { msg = describePanic(recover()) }()
		var m map[string]int
		m["x"] = 1
	}()
	if !strings.HasPrefix(msg, "panic: assignment to entry in nil map (in ") || !strings.Contains(msg, "rulewatch_test.go:") {
		t.Errorf("message %q", msg)
	}
	func() {
		defer func() { msg = describePanic(recover()) }()
		panic(errors.New("two\nlines"))
	}()
	if !strings.HasPrefix(msg, "panic: two lines (in ") {
		t.Errorf("message %q", msg)
	}
}

// A batch of 4096 events like the host sends, and the runner the module uses.
func benchRunner(tb testing.TB) (*runner, []byte, []byte) {
	reg := newRegistration(levelFields)
	r, err := Init(newLevels, `{"word": "crash", "min": 3, "threshold": 2}`)
	if err != nil {
		tb.Fatal(err)
	}
	events := newBatchWriter(reg.kinds)
	windows := newBatchWriter(windowKinds)
	messages := []string{"App crash on startup", "Settings saved", "a long line where the CRASH is late", "ok"}
	for i := range 4096 {
		events.i64(eventTime, int64(i))
		events.str(eventKey, "user_1")
		events.str(eventFixedColumns, messages[i%len(messages)])
		events.f64(eventFixedColumns+1, float64(i%5))
		events.endRow()
		windows.i64(windowStart, 0)
		windows.i64(windowEnd, 10_000)
		windows.str(windowKey, "user_1")
		windows.i64(windowCount, int64(i%5))
		windows.endRow()
	}
	return newRunner(r, reg), events.finish(), windows.finish()
}

func TestFilteringAndAlertingDoNotAllocate(t *testing.T) {
	run, events, windows := benchRunner(t)
	selected := 0
	for _, b := range run.filter(events) {
		for ; b != 0; b &= b - 1 {
			selected++
		}
	}
	// Levels 3 and 4 of every fifth row, mentions of crash in half of the rows.
	if selected == 0 || selected >= 4096 {
		t.Fatalf("%d rows selected", selected)
	}
	if n := testing.AllocsPerRun(100, func() { run.filter(events) }); n != 0 {
		t.Errorf("filtering a batch of 4096 events allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { run.alert(windows) }); n != 0 {
		t.Errorf("alerting over a batch of 4096 windows allocates %v times", n)
	}
}

func BenchmarkFilter4096(b *testing.B) {
	run, events, _ := benchRunner(b)
	b.SetBytes(int64(len(events)))
	b.ReportAllocs()
	for b.Loop() {
		run.filter(events)
	}
}
