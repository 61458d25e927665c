package rulewatch

import (
	"strings"
	"testing"
)

// lowerASCIIString folds A-Z only, as ContainsFold does. strings.ToLower cannot serve as the
// reference on non-ASCII text: it also folds É to é and the Kelvin sign K to k.
func lowerASCIIString(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func TestContainsFold(t *testing.T) {
	for _, c := range []struct {
		haystack, needle string
		want             bool
	}{
		{"App CRASH on start", "crash", true},
		{"crashed", "Crash", true},
		{"x", "", true},
		{"", "", true},
		{"", "a", false},
		{"cras", "crash", false},
		{"c r a s h", "crash", false},
		{"ééCrAsH", "crash", true},
		{"a long line where the CRASH is late", "crash", true},
		{"a long line where the crash is at the very end: crash", "CRASH", true},
		{"0123456789[x]", "[X]", true},
		{"0123456789{x}", "[x]", false},
		{"@@@@@@@@@@@@@@@@", "`", false},
		{"````````````````", "@", false},
		{"ÉCLAIR", "éclair", false},
		{"\u212A", "k", false},
		{"\xff\xfeK\x00", "k\x00", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaab", "AAB", true},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaa", "AAB", false},
		{"12345678", "12345678", true},
		{"1234567", "12345678", false},
	} {
		if got := ContainsFold(c.haystack, c.needle); got != c.want {
			t.Errorf("ContainsFold(%q, %q) = %v, want %v", c.haystack, c.needle, got, c.want)
		}
	}
}

func TestContainsFoldAgreesWithThePlainDefinition(t *testing.T) {
	alphabet := []string{"a", "A", "b", "c", "C", "@", "`", "[", "{", "é", "É", " ", "crash", "CrA", "\x00", "\xff", "z", "Z", "\u212A", "k"}
	ascii := []string{"a", "A", "b", "B", "c", "C", "@", "`", "[", "{", " ", "crash", "CRASH", "x", "X", "0", "~", "\x7f"}
	seed := uint64(0x2545f4914f6cdd1d)
	next := func(m int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(m))
	}
	text := func(from []string, max int) string {
		var b strings.Builder
		for range next(max) {
			b.WriteString(from[next(len(from))])
		}
		return b.String()
	}
	for range 50_000 {
		h, n := text(alphabet, 40), text(alphabet, 4)
		if got, want := ContainsFold(h, n), strings.Contains(lowerASCIIString(h), lowerASCIIString(n)); got != want {
			t.Fatalf("ContainsFold(%q, %q) = %v, want %v", h, n, got, want)
		}
		// On ASCII text, ASCII folding is what strings.ToLower does.
		h, n = text(ascii, 60), text(ascii, 5)
		if got, want := ContainsFold(h, n), strings.Contains(strings.ToLower(h), strings.ToLower(n)); got != want {
			t.Fatalf("ContainsFold(%q, %q) = %v, want %v", h, n, got, want)
		}
	}
	// Every position of a match, every length of haystack around the 8-byte blocks.
	for size := 0; size <= 40; size++ {
		for at := 0; at+3 <= size; at++ {
			h := []byte(strings.Repeat("x", size))
			copy(h[at:], "CrA")
			for _, n := range []string{"cra", "CRA", "xcr", "rax", "crb"} {
				want := strings.Contains(strings.ToLower(string(h)), strings.ToLower(n))
				if got := ContainsFold(string(h), n); got != want {
					t.Fatalf("ContainsFold(%q, %q) = %v, want %v", h, n, got, want)
				}
			}
		}
	}
}

func TestContainsFoldDoesNotAllocate(t *testing.T) {
	h := strings.Repeat("a long line without the word ", 20) + "CRASH"
	if n := testing.AllocsPerRun(100, func() { ContainsFold(h, "crash") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func BenchmarkContainsFold(b *testing.B) {
	h := "2026-01-27T22:00:01Z user_1030 a long log line where the CRASH is late in the line"
	b.SetBytes(int64(len(h)))
	for b.Loop() {
		ContainsFold(h, "crash")
	}
}
