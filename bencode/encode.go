package bencode

import (
	"fmt"
	"slices"
	"strconv"
)

// MaxDepth is the deepest nesting of lists and dictionaries that [Decode]
// accepts and that [Append] and [Marshal] produce. A top-level list is at
// depth 1. The limit bounds recursion so that hostile input (for example a
// long run of 'l' bytes) or a cyclic value cannot exhaust the stack; real
// BitTorrent messages nest only a few levels.
const MaxDepth = 64

// AppendString appends the bencoding of the byte string s ("<len>:<s>") to
// dst and returns the extended slice. s may hold arbitrary bytes. It does
// not allocate when dst has enough spare capacity.
func AppendString(dst []byte, s string) []byte {
	dst = strconv.AppendUint(dst, uint64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// AppendBytes is like [AppendString] for a []byte, so that binary data such
// as compact peer lists need not be converted to a string first. A nil or
// empty b encodes as "0:".
func AppendBytes(dst []byte, b []byte) []byte {
	dst = strconv.AppendUint(dst, uint64(len(b)), 10)
	dst = append(dst, ':')
	return append(dst, b...)
}

// AppendInt appends the bencoding of i ("i<i>e", canonical decimal) to dst
// and returns the extended slice. It does not allocate when dst has enough
// spare capacity.
func AppendInt(dst []byte, i int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, i, 10)
	return append(dst, 'e')
}

// AppendUint is like [AppendInt] for unsigned values, which covers counters
// such as uploaded/downloaded byte totals without a lossy conversion.
// Note that [Decode] only accepts integers that fit in an int64, so values
// above math.MaxInt64 are valid bencode that this package cannot read back.
func AppendUint(dst []byte, u uint64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendUint(dst, u, 10)
	return append(dst, 'e')
}

// UnsupportedTypeError is returned by [Append] and [Marshal] when the value
// tree contains a type that has no bencode representation (for example a
// float, a bool, nil, a struct, or a map with non-string keys).
type UnsupportedTypeError struct {
	// Type is the Go type of the offending value, as printed by %T.
	Type string
}

func (e *UnsupportedTypeError) Error() string {
	return "bencode: unsupported type " + e.Type
}

// Append appends the bencoding of v to dst and returns the extended slice.
//
// Supported types are string and []byte (byte strings); int, int8, int16,
// int32, int64, uint, uint8, uint16, uint32, uint64 and uintptr (integers);
// []any (lists); and map[string]any (dictionaries, whose keys are written
// in sorted raw byte order as bencode requires). Elements of lists and
// dictionaries may be any supported type. Any other type, including a nil
// interface, yields an [*UnsupportedTypeError]; nesting deeper than
// [MaxDepth] (which also catches cyclic values) is an error as well.
//
// Append is meant for tests, tools and infrequent replies: it uses a type
// switch rather than reflection but allocates to sort dictionary keys. Hot
// paths should use [AppendString], [AppendInt] and friends directly.
//
// On error Append returns the error and a slice holding just the original
// contents of dst, so a caller can fall back without truncating by hand;
// bytes beyond len(dst) in dst's backing array may have been overwritten.
func Append(dst []byte, v any) ([]byte, error) {
	n := len(dst)
	dst, err := appendValue(dst, v, 0)
	if err != nil {
		return dst[:n], err
	}
	return dst, nil
}

// Marshal returns the bencoding of v. See [Append] for the supported types.
func Marshal(v any) ([]byte, error) {
	b, err := Append(nil, v)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return AppendString(dst, v), nil
	case []byte:
		return AppendBytes(dst, v), nil
	case int:
		return AppendInt(dst, int64(v)), nil
	case int8:
		return AppendInt(dst, int64(v)), nil
	case int16:
		return AppendInt(dst, int64(v)), nil
	case int32:
		return AppendInt(dst, int64(v)), nil
	case int64:
		return AppendInt(dst, v), nil
	case uint:
		return AppendUint(dst, uint64(v)), nil
	case uint8:
		return AppendUint(dst, uint64(v)), nil
	case uint16:
		return AppendUint(dst, uint64(v)), nil
	case uint32:
		return AppendUint(dst, uint64(v)), nil
	case uint64:
		return AppendUint(dst, v), nil
	case uintptr:
		return AppendUint(dst, uint64(v)), nil
	case []any:
		if depth >= MaxDepth {
			return dst, errTooDeep
		}
		dst = append(dst, 'l')
		for _, e := range v {
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, 'e'), nil
	case map[string]any:
		if depth >= MaxDepth {
			return dst, errTooDeep
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// Go compares strings bytewise, which is exactly bencode's
		// required raw byte order.
		slices.Sort(keys)
		dst = append(dst, 'd')
		for _, k := range keys {
			dst = AppendString(dst, k)
			var err error
			if dst, err = appendValue(dst, v[k], depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, 'e'), nil
	default:
		return dst, &UnsupportedTypeError{Type: fmt.Sprintf("%T", v)}
	}
}

var errTooDeep = fmt.Errorf("bencode: value nested deeper than %d levels (cyclic?)", MaxDepth)
