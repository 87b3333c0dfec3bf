package bencode

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error is a
// *SyntaxError with an offset inside the input, and that every input Decode
// accepts is canonical: Marshal(Decode(x)) == x.
//
// The seed corpus runs as an ordinary test under "go test"; run the fuzzer
// with: go test -fuzz=FuzzDecode -fuzztime=60s ./bencode/
func FuzzDecode(f *testing.F) {
	seeds := []string{
		// Valid.
		"0:",
		"4:spam",
		"3:\x00\xff\x00",
		"i0e",
		"i-9223372036854775808e",
		"i9223372036854775807e",
		"le",
		"de",
		"l4:spami42ee",
		"d3:bar4:spam3:fooi42ee",
		"d8:completei10e10:incompletei3e8:intervali1800e12:min intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe1e",
		"d1:ad1:bld0:leeee",
		// Invalid.
		"",
		"i-0e",
		"i03e",
		"i9223372036854775808e",
		"01:a",
		"9:abc",
		"d1:bi1e1:ai2ee",
		"d1:ai1e1:ai2ee",
		"di1ei2ee",
		"i1ei2e",
		strings.Repeat("l", MaxDepth+1) + strings.Repeat("e", MaxDepth+1),
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Decode(%q) error %T %v, want *SyntaxError", data, err, err)
			}
			if se.Offset < 0 || se.Offset > len(data) {
				t.Fatalf("Decode(%q) error offset %d outside [0, %d]", data, se.Offset, len(data))
			}
			if v != nil {
				t.Fatalf("Decode(%q) returned %#v with error", data, v)
			}
			return
		}
		out, err := Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(Decode(%q)) error: %v", data, err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("Marshal(Decode(%q)) = %q, want input", data, out)
		}
	})
}
