package bencode

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestAppendString(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", "0:"},
		{"a", "1:a"},
		{"spam", "4:spam"},
		{"\x00", "1:\x00"},
		{"a\x00b\xff", "4:a\x00b\xff"},
		{"1:e", "3:1:e"},
		{strings.Repeat("x", 10), "10:xxxxxxxxxx"},
	}
	for _, tt := range tests {
		if got := string(AppendString(nil, tt.in)); got != tt.want {
			t.Errorf("AppendString(nil, %q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := string(AppendString([]byte("pre"), tt.in)); got != "pre"+tt.want {
			t.Errorf("AppendString(pre, %q) = %q, want %q", tt.in, got, "pre"+tt.want)
		}
	}
}

func TestAppendBytes(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{nil, "0:"},
		{[]byte{}, "0:"},
		{[]byte("spam"), "4:spam"},
		{[]byte{0, 0, 0}, "3:\x00\x00\x00"},
		{[]byte{127, 0, 0, 1, 0x1a, 0xe1}, "6:\x7f\x00\x00\x01\x1a\xe1"},
	}
	for _, tt := range tests {
		if got := string(AppendBytes(nil, tt.in)); got != tt.want {
			t.Errorf("AppendBytes(nil, %q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := string(AppendBytes([]byte("pre"), tt.in)); got != "pre"+tt.want {
			t.Errorf("AppendBytes(pre, %q) = %q, want %q", tt.in, got, "pre"+tt.want)
		}
	}
}

func TestAppendInt(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "i0e"},
		{1, "i1e"},
		{-1, "i-1e"},
		{42, "i42e"},
		{-42, "i-42e"},
		{1800, "i1800e"},
		{math.MaxInt64, "i9223372036854775807e"},
		{math.MinInt64, "i-9223372036854775808e"},
	}
	for _, tt := range tests {
		if got := string(AppendInt(nil, tt.in)); got != tt.want {
			t.Errorf("AppendInt(nil, %d) = %q, want %q", tt.in, got, tt.want)
		}
		if got := string(AppendInt([]byte("pre"), tt.in)); got != "pre"+tt.want {
			t.Errorf("AppendInt(pre, %d) = %q, want %q", tt.in, got, "pre"+tt.want)
		}
	}
}

func TestAppendUint(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{0, "i0e"},
		{7, "i7e"},
		{math.MaxInt64, "i9223372036854775807e"},
		{math.MaxInt64 + 1, "i9223372036854775808e"},
		{math.MaxUint64, "i18446744073709551615e"},
	}
	for _, tt := range tests {
		if got := string(AppendUint(nil, tt.in)); got != tt.want {
			t.Errorf("AppendUint(nil, %d) = %q, want %q", tt.in, got, tt.want)
		}
		if got := string(AppendUint([]byte("pre"), tt.in)); got != "pre"+tt.want {
			t.Errorf("AppendUint(pre, %d) = %q, want %q", tt.in, got, "pre"+tt.want)
		}
	}
}

// TestAppendNoAlloc checks the hot-path promise: no allocations when dst
// already has capacity.
func TestAppendNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 1024)
	peers := make([]byte, 300)
	allocs := testing.AllocsPerRun(100, func() {
		b := append(buf[:0], 'd')
		b = AppendString(b, "interval")
		b = AppendInt(b, math.MinInt64)
		b = AppendString(b, "total")
		b = AppendUint(b, math.MaxUint64)
		b = AppendString(b, "peers")
		b = AppendBytes(b, peers)
		b = append(b, 'e')
		buf = b
	})
	if allocs != 0 {
		t.Errorf("Append* with spare capacity: %v allocs/run, want 0", allocs)
	}
}

func TestMarshal(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"string", "spam", "4:spam"},
		{"empty string", "", "0:"},
		{"binary string", "\x00\xff\x00", "3:\x00\xff\x00"},
		{"bytes", []byte("ab"), "2:ab"},
		{"nil bytes", []byte(nil), "0:"},
		{"int", int(-3), "i-3e"},
		{"int8", int8(math.MinInt8), "i-128e"},
		{"int16", int16(math.MaxInt16), "i32767e"},
		{"int32", int32(math.MinInt32), "i-2147483648e"},
		{"int64 max", int64(math.MaxInt64), "i9223372036854775807e"},
		{"int64 min", int64(math.MinInt64), "i-9223372036854775808e"},
		{"uint", uint(3), "i3e"},
		{"uint8", uint8(255), "i255e"},
		{"uint16", uint16(65535), "i65535e"},
		{"uint32", uint32(math.MaxUint32), "i4294967295e"},
		{"uint64 max", uint64(math.MaxUint64), "i18446744073709551615e"},
		{"uintptr", uintptr(9), "i9e"},
		{"empty list", []any{}, "le"},
		{"nil list", []any(nil), "le"},
		{"list", []any{"spam", int64(42), []byte("x")}, "l4:spami42e1:xe"},
		{"empty dict", map[string]any{}, "de"},
		{"nil dict", map[string]any(nil), "de"},
		{
			"dict sorted by raw bytes",
			map[string]any{"b": 1, "a": 2, "B": 3, "\xff": 4, "": 5, "aa": 6, "\x00": 7},
			"d0:i5e1:\x00i7e1:Bi3e1:ai2e2:aai6e1:bi1e1:\xffi4ee",
		},
		{
			"nested",
			map[string]any{"l": []any{map[string]any{"k": []any{}}, []any{[]any{}}}, "d": map[string]any{}},
			"d1:dde1:l" + "l" + "d1:klee" + "llee" + "e" + "e",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.in)
			if err != nil {
				t.Fatalf("Marshal(%#v) error: %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Marshal(%#v) = %q, want %q", tt.in, got, tt.want)
			}
			got, err = Append([]byte("pre"), tt.in)
			if err != nil {
				t.Fatalf("Append(pre, %#v) error: %v", tt.in, err)
			}
			if string(got) != "pre"+tt.want {
				t.Fatalf("Append(pre, %#v) = %q, want %q", tt.in, got, "pre"+tt.want)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	cyclicList := make([]any, 1)
	cyclicList[0] = cyclicList
	cyclicMap := map[string]any{}
	cyclicMap["self"] = cyclicMap
	deep := any("x")
	for range MaxDepth + 1 {
		deep = []any{deep}
	}
	okDeep := any("x")
	for range MaxDepth {
		okDeep = []any{okDeep}
	}
	if _, err := Marshal(okDeep); err != nil {
		t.Errorf("Marshal of depth %d: %v", MaxDepth, err)
	}

	tests := []struct {
		name     string
		in       any
		wantType string // non-empty: expect *UnsupportedTypeError with this Type
		wantMsg  string // substring of the error message
	}{
		{"nil", nil, "<nil>", "unsupported type <nil>"},
		{"bool", true, "bool", "unsupported type bool"},
		{"float", 1.5, "float64", "unsupported type float64"},
		{"struct", struct{}{}, "struct {}", "unsupported type struct {}"},
		{"int-keyed map", map[int]any{1: 1}, "map[int]interface {}", "unsupported type"},
		{"string slice", []string{"a"}, "[]string", "unsupported type []string"},
		{"pointer", new(int), "*int", "unsupported type *int"},
		{"nested in list", []any{"ok", 1.5}, "float64", "unsupported type float64"},
		{"nested in dict", map[string]any{"a": 1, "b": []any{nil}}, "<nil>", "unsupported type <nil>"},
		{"cyclic list", cyclicList, "", "nested deeper than 64"},
		{"cyclic map", cyclicMap, "", "nested deeper than 64"},
		{"too deep", deep, "", "nested deeper than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.in)
			if err == nil {
				t.Fatalf("Marshal(%T) = %q, want error", tt.in, got)
			}
			if got != nil {
				t.Errorf("Marshal(%T) returned %q with error, want nil", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			var ute *UnsupportedTypeError
			if tt.wantType != "" {
				if !errors.As(err, &ute) || ute.Type != tt.wantType {
					t.Errorf("error %#v, want *UnsupportedTypeError{Type: %q}", err, tt.wantType)
				}
			}
			// Append leaves dst's length unchanged on error.
			dst := []byte("pre")
			out, err := Append(dst, tt.in)
			if err == nil || string(out) != "pre" {
				t.Errorf("Append(pre, %T) = %q, %v; want \"pre\" and an error", tt.in, out, err)
			}
		})
	}
}
