package bencode

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
	}{
		{"empty string", "0:", ""},
		{"string", "4:spam", "spam"},
		{"string with NUL", "3:a\x00b", "a\x00b"},
		{"all NUL", "2:\x00\x00", "\x00\x00"},
		{"non-UTF-8 string", "2:\xff\xfe", "\xff\xfe"},
		{"string of bencode", "3:i1e", "i1e"},
		{"long string", "12:hello, world", "hello, world"},
		{"zero", "i0e", int64(0)},
		{"positive", "i42e", int64(42)},
		{"negative", "i-42e", int64(-42)},
		{"ten", "i10e", int64(10)},
		{"max int64", "i9223372036854775807e", int64(math.MaxInt64)},
		{"min int64", "i-9223372036854775808e", int64(math.MinInt64)},
		{"empty list", "le", []any{}},
		{"list", "l4:spami42ee", []any{"spam", int64(42)}},
		{"empty dict", "de", map[string]any{}},
		{"dict", "d3:bar4:spam3:fooi42ee", map[string]any{"bar": "spam", "foo": int64(42)}},
		{"dict empty key", "d0:i1e1:ai2ee", map[string]any{"": int64(1), "a": int64(2)}},
		{"dict binary keys", "d1:\x00i0e1:\xffi1ee", map[string]any{"\x00": int64(0), "\xff": int64(1)}},
		{"dict prefix key order", "d1:ai1e2:aai2e1:bi3ee", map[string]any{"a": int64(1), "aa": int64(2), "b": int64(3)}},
		{"dict uppercase first", "d1:Bi1e1:ai2ee", map[string]any{"B": int64(1), "a": int64(2)}},
		{
			"nested",
			"d4:infod6:lengthi3e4:name1:xe5:listsllelleeee",
			map[string]any{
				"info":  map[string]any{"length": int64(3), "name": "x"},
				"lists": []any{[]any{}, []any{[]any{}}},
			},
		},
		{"list of dicts", "ldedee", []any{map[string]any{}, map[string]any{}}},
		{"max depth", strings.Repeat("l", MaxDepth) + strings.Repeat("e", MaxDepth), nest(MaxDepth)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%q) error: %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			// Round trip: every accepted input is canonical.
			enc, err := Marshal(got)
			if err != nil {
				t.Fatalf("Marshal(Decode(%q)) error: %v", tt.in, err)
			}
			if string(enc) != tt.in {
				t.Fatalf("Marshal(Decode(%q)) = %q", tt.in, enc)
			}
		})
	}
}

// nest returns n nested empty lists.
func nest(n int) any {
	v := []any{}
	for range n - 1 {
		v = []any{v}
	}
	return v
}

func TestDecodeErrors(t *testing.T) {
	tooDeep := strings.Repeat("l", MaxDepth+1) + strings.Repeat("e", MaxDepth+1)
	tooDeepDict := strings.Repeat("d1:a", MaxDepth) + "de" + strings.Repeat("e", MaxDepth)
	tests := []struct {
		name   string
		in     string
		offset int
		msg    string // substring of SyntaxError.Msg
	}{
		// Structure.
		{"empty input", "", 0, "unexpected end of input"},
		{"trailing data", "i1ei2e", 3, "trailing data"},
		{"trailing newline", "4:spam\n", 6, "trailing data"},
		{"trailing e", "lee", 2, "trailing data"},
		{"two values", "0:0:", 2, "trailing data"},
		{"bad first byte", "x", 0, "invalid character 'x' at start of value"},
		{"stray e", "e", 0, "invalid character 'e' at start of value"},
		{"space", " i1e", 0, "invalid character ' '"},
		{"bad byte in list", "lxe", 1, "invalid character 'x' at start of value"},

		// Integers.
		{"int empty", "ie", 1, "integer has no digits"},
		{"int minus only", "i-e", 2, "integer has no digits"},
		{"int leading zero", "i03e", 1, "integer has a leading zero"},
		{"int double zero", "i00e", 1, "integer has a leading zero"},
		{"int negative leading zero", "i-03e", 2, "integer has a leading zero"},
		{"int negative zero", "i-0e", 1, "negative zero"},
		{"int negative double zero", "i-00e", 2, "integer has a leading zero"},
		{"int plus", "i+1e", 1, "invalid character '+' in integer"},
		{"int double minus", "i--1e", 2, "invalid character '-' in integer"},
		{"int inner minus", "i1-1e", 2, "invalid character '-' in integer"},
		{"int space", "i 1e", 1, "invalid character ' ' in integer"},
		{"int hex", "i0x1e", 2, "invalid character 'x' in integer"},
		{"int float", "i1.5e", 2, "invalid character '.' in integer"},
		{"int unterminated", "i12", 3, "unexpected end of input"},
		{"int just i", "i", 1, "unexpected end of input"},
		{"int just i-", "i-", 2, "unexpected end of input"},
		{"int max+1", "i9223372036854775808e", 0, "overflows int64"},
		{"int min-1", "i-9223372036854775809e", 0, "overflows int64"},
		{"int uint64 max", "i18446744073709551615e", 0, "overflows int64"},
		{"int huge", "i" + strings.Repeat("9", 1000) + "e", 0, "overflows int64"},
		{"int in list overflow", "li99999999999999999999ee", 1, "overflows int64"},

		// String lengths.
		{"string leading zero", "01:a", 0, "string length has a leading zero"},
		{"string zero zero", "00:", 0, "string length has a leading zero"},
		{"string too long", "5:abc", 0, "string length 5 exceeds remaining input (3 bytes)"},
		{"string too long by one", "4:abc", 0, "string length 4 exceeds remaining input (3 bytes)"},
		{"string huge length", "99999999999999999999999:x", 0, "string length exceeds remaining input (1 bytes)"},
		{"string max int+1 length", "9223372036854775808:x", 0, "string length exceeds remaining input (1 bytes)"},
		{"string max int length", "9223372036854775807:x", 0, "string length 9223372036854775807 exceeds remaining input (1 bytes)"},
		{"string no colon", "3", 1, "unexpected end of input"},
		{"string bad length char", "3x:abc", 1, "invalid character 'x' in string length"},
		{"string negative length", "-1:a", 0, "invalid character '-' at start of value"},
		{"string length in list too long", "l9:ae", 1, "string length 9 exceeds remaining input (2 bytes)"},

		// Lists.
		{"list unterminated", "l", 1, "unexpected end of input"},
		{"list unterminated after value", "li1e", 4, "unexpected end of input"},
		{"list nested unterminated", "lle", 3, "unexpected end of input"},

		// Dictionaries.
		{"dict unterminated", "d", 1, "unexpected end of input"},
		{"dict int key", "di1ei2ee", 1, "dict key must be a byte string, found 'i'"},
		{"dict list key", "dlei1ee", 1, "dict key must be a byte string, found 'l'"},
		{"dict dict key", "ddei1ee", 1, "dict key must be a byte string, found 'd'"},
		{"dict missing value", "d1:ae", 4, `dict key "a" has no value`},
		{"dict missing value eof", "d1:a", 4, "unexpected end of input"},
		{"dict unsorted", "d1:bi1e1:ai2ee", 7, `dict key "a" not in sorted order (after "b")`},
		{"dict duplicate", "d1:ai1e1:ai2ee", 7, `duplicate dict key "a"`},
		{"dict longer before prefix", "d2:aai1e1:ai2ee", 8, `dict key "a" not in sorted order (after "aa")`},
		{"dict lowercase before upper", "d1:ai1e1:Bi2ee", 7, `dict key "B" not in sorted order`},
		{"dict binary unsorted", "d1:\xffi1e1:\x00i2ee", 7, `dict key "\x00" not in sorted order (after "\xff")`},
		{"dict duplicate empty key", "d0:i1e0:i2ee", 6, `duplicate dict key ""`},
		{"dict long key truncated", "d40:" + strings.Repeat("z", 40) + "i1e1:ai2ee", 47, `dict key "a" not in sorted order (after "` + strings.Repeat("z", 32) + `"...)`},
		{"dict key leading zero", "d01:ai1ee", 1, "string length has a leading zero"},
		{"dict key too long", "d5:ab", 1, "string length 5 exceeds remaining input (2 bytes)"},
		{"dict unsorted nested", "d1:ad1:bi1e1:ai2eee", 11, `dict key "a" not in sorted order (after "b")`},
		{"dict value error", "d1:ai03ee", 5, "integer has a leading zero"},

		// Depth.
		{"too deep lists", tooDeep, MaxDepth, "nesting deeper than 64 levels"},
		{"too deep dicts", tooDeepDict, 4 * MaxDepth, "nesting deeper than 64 levels"},
		{"hostile run of l", strings.Repeat("l", 1<<20), MaxDepth, "nesting deeper than 64 levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%q) = %#v, want error", tt.in, v)
			}
			if v != nil {
				t.Errorf("Decode(%q) returned value %#v with error", tt.in, v)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Decode(%q) error %T %v, want *SyntaxError", tt.in, err, err)
			}
			if se.Offset != tt.offset || !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("Decode(%.40q) error at offset %d: %q; want offset %d, message containing %q",
					tt.in, se.Offset, se.Msg, tt.offset, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), "bencode: syntax error at offset ") {
				t.Errorf("Error() = %q, want bencode: syntax error at offset ... prefix", err.Error())
			}
		})
	}
}

// TestDecodeHugeClaimedLength checks that a claimed length far beyond the
// input is rejected without allocating anything near that size.
func TestDecodeHugeClaimedLength(t *testing.T) {
	in := []byte("2000000000:abc")
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := Decode(in); err == nil {
			t.Fatal("want error")
		}
	})
	// The only allocations are the error value and its message.
	if allocs > 5 {
		t.Errorf("Decode of huge claimed length: %v allocs", allocs)
	}
}

func TestSyntaxErrorString(t *testing.T) {
	e := &SyntaxError{Offset: 7, Msg: "duplicate dict key \"a\""}
	want := `bencode: syntax error at offset 7: duplicate dict key "a"`
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}

// TestRoundTripCanonical is the round-trip property on hand-picked
// canonical inputs: Marshal(Decode(x)) == x.
func TestRoundTripCanonical(t *testing.T) {
	inputs := []string{
		"0:", "1:\x00", "i0e", "i-1e", "i9223372036854775807e", "i-9223372036854775808e",
		"le", "de", "llelee", "d0:dee", "d1:a0:1:b0:e",
		"d8:completei10e10:incompletei3e8:intervali1800e12:min intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e",
		"d5:filesd20:" + strings.Repeat("\xaa", 20) + "d8:completei1e10:downloadedi2e10:incompletei3eeee",
		"d14:failure reason13:bad info_hashe",
	}
	for _, in := range inputs {
		v, err := Decode([]byte(in))
		if err != nil {
			t.Errorf("Decode(%q): %v", in, err)
			continue
		}
		out, err := Marshal(v)
		if err != nil || string(out) != in {
			t.Errorf("Marshal(Decode(%q)) = %q, %v", in, out, err)
		}
	}
}

// TestRoundTripRandom is the round-trip property on random value trees:
// Decode(Marshal(v)) equals v (after normalising integer types), and
// re-marshalling gives the same bytes.
func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		v := randomValue(r, 0)
		enc, err := Marshal(v)
		if err != nil {
			t.Fatalf("#%d Marshal(%#v): %v", i, v, err)
		}
		dec, err := Decode(enc)
		if err != nil {
			t.Fatalf("#%d Decode(%q): %v", i, enc, err)
		}
		if !reflect.DeepEqual(dec, v) {
			t.Fatalf("#%d Decode(Marshal(v)) = %#v, want %#v", i, dec, v)
		}
		enc2, err := Marshal(dec)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("#%d re-Marshal = %q, %v; want %q", i, enc2, err, enc)
		}
	}
}

// randomValue returns a random tree in Decode's output types.
func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(5)
	if depth >= 6 {
		k = r.IntN(2)
	}
	switch k {
	case 0:
		b := make([]byte, r.IntN(8))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	case 1:
		switch r.IntN(4) {
		case 0:
			return int64(math.MaxInt64)
		case 1:
			return int64(math.MinInt64)
		case 2:
			return int64(r.IntN(21) - 10)
		default:
			return int64(r.Uint64())
		}
	case 2:
		l := []any{}
		for range r.IntN(4) {
			l = append(l, randomValue(r, depth+1))
		}
		return l
	default:
		m := map[string]any{}
		for range r.IntN(4) {
			m[string(rune('a'+r.IntN(4)))+string([]byte{byte(r.IntN(256))})[:r.IntN(2)]] = randomValue(r, depth+1)
		}
		return m
	}
}
