package rulewatch

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"testing"
)

// The golden ABI vectors every SDK tests against (sdk/testdata/abi-v1.json, written by the
// Rust SDK's tests/abi_vectors.rs): batches as the host encodes them, what a rule reads from
// them, the answers of a reference decision, and malformed batches to refuse.
type vectors struct {
	EventKinds  []uint32 `json:"event_kinds"`
	WindowKinds []uint32 `json:"window_kinds"`
	Events      []vector `json:"events"`
	Windows     []vector `json:"windows"`
	Malformed   []struct {
		Name  string   `json:"name"`
		Kinds []uint32 `json:"kinds"`
		Hex   string   `json:"hex"`
	} `json:"malformed"`
}

type vector struct {
	Name   string              `json:"name"`
	Rows   [][]json.RawMessage `json:"rows"`
	Hex    string              `json:"hex"`
	Answer string              `json:"answer"`
}

// reference is the vectors' reference decision, through the SDK's Event and WindowCount.
type reference struct{}

func (reference) Filter(e *Event) bool {
	return e.Time() < 0 || e.Key() == e.Str("text") || e.Num("value") > 1
}

func (reference) Alert(w *WindowCount) bool { return w.Count >= 3 || w.Key == "" }

var vectorFields = []Field{Str("text"), Num("value")}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	data, err := os.ReadFile("../testdata/abi-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Events) == 0 || len(v.Windows) == 0 || len(v.Malformed) == 0 {
		t.Fatal("the vectors file holds no vectors")
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func text(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func integer(t *testing.T, raw json.RawMessage) int64 {
	t.Helper()
	n, err := strconv.ParseInt(text(t, raw), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func float(t *testing.T, raw json.RawMessage) float64 {
	t.Helper()
	n, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGoldenEventBatches(t *testing.T) {
	v := loadVectors(t)
	r := newRunner(reference{}, newRegistration(vectorFields))
	for _, vec := range v.Events {
		w := newBatchWriter(v.EventKinds)
		for _, row := range vec.Rows {
			w.i64(0, integer(t, row[0]))
			w.str(1, text(t, row[1]))
			w.str(2, text(t, row[2]))
			w.f64(3, float(t, row[3]))
			w.endRow()
		}
		if got := hex.EncodeToString(w.finish()); got != vec.Hex {
			t.Errorf("%s: encoded as %s, the host encodes %s", vec.Name, got, vec.Hex)
		}
		if got := hex.EncodeToString(r.filter(unhex(t, vec.Hex))); got != vec.Answer {
			t.Errorf("%s: answered %s, want %s", vec.Name, got, vec.Answer)
		}
		for i, row := range vec.Rows {
			ev := Event{b: &r.batch, fields: r.fields, row: i}
			if ev.Time() != integer(t, row[0]) || ev.Key() != text(t, row[1]) ||
				ev.Str("text") != text(t, row[2]) || ev.Num("value") != float(t, row[3]) {
				t.Errorf("%s: row %d read as %d %q %q %v", vec.Name, i, ev.Time(), ev.Key(), ev.Str("text"), ev.Num("value"))
			}
		}
	}
}

func TestGoldenWindowBatches(t *testing.T) {
	v := loadVectors(t)
	r := newRunner(reference{}, newRegistration(vectorFields))
	for _, vec := range v.Windows {
		w := newBatchWriter(v.WindowKinds)
		for _, row := range vec.Rows {
			w.i64(0, integer(t, row[0]))
			w.i64(1, integer(t, row[1]))
			w.str(2, text(t, row[2]))
			w.i64(3, integer(t, row[3]))
			w.endRow()
		}
		if got := hex.EncodeToString(w.finish()); got != vec.Hex {
			t.Errorf("%s: encoded as %s, the host encodes %s", vec.Name, got, vec.Hex)
		}
		if got := hex.EncodeToString(r.alert(unhex(t, vec.Hex))); got != vec.Answer {
			t.Errorf("%s: answered %s, want %s", vec.Name, got, vec.Answer)
		}
	}
}

func TestGoldenMalformedBatchesAreRefused(t *testing.T) {
	v := loadVectors(t)
	for _, m := range v.Malformed {
		var b batch
		t.Run(m.Name, func(t *testing.T) {
			mustPanic(t, "malformed batch", func() { b.parse(unhex(t, m.Hex), m.Kinds) })
		})
	}
}
