package bencode

import (
	"fmt"
	"math"
	"strconv"
)

// SyntaxError describes why [Decode] rejected its input and where.
type SyntaxError struct {
	// Offset is the byte offset in the input at which the problem was
	// detected; it is len(input) for unexpected end of input.
	Offset int
	// Msg says what was wrong, without the offset.
	Msg string
}

func (e *SyntaxError) Error() string {
	return "bencode: syntax error at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// Decode parses data, which must hold exactly one canonical bencoded value,
// and returns it as a tree of:
//
//   - string for byte strings (binary-safe: any bytes, not necessarily UTF-8),
//   - int64 for integers,
//   - []any for lists (never nil, even when empty),
//   - map[string]any for dictionaries (never nil, even when empty).
//
// Decode is strict so that tests and tools can verify canonical output:
// trailing data after the value; integers with leading zeros, "-0", a '+'
// sign, no digits, or a value outside int64; string lengths with leading
// zeros or exceeding the remaining input; dictionary keys that are not byte
// strings or are not strictly increasing in raw byte order (so unsorted and
// duplicate keys); and nesting deeper than [MaxDepth] are all rejected with
// a [*SyntaxError].
//
// Decode is safe on untrusted input: it does not panic, its recursion is
// bounded by MaxDepth, and it allocates only in proportion to the bytes
// actually present in data, never to a length the input merely claims.
func Decode(data []byte) (any, error) {
	d := decoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.data) {
		return nil, d.errorf(d.pos, "trailing data after value (%d bytes)", len(d.data)-d.pos)
	}
	return v, nil
}

type decoder struct {
	data []byte
	pos  int
}

func (d *decoder) errorf(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) eof() error {
	return &SyntaxError{Offset: len(d.data), Msg: "unexpected end of input"}
}

// value decodes one value starting at d.pos. depth is the number of
// containers enclosing it.
func (d *decoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.eof()
	}
	switch c := d.data[d.pos]; {
	case c == 'i':
		return d.integer()
	case c >= '0' && c <= '9':
		return d.str()
	case c == 'l':
		return d.list(depth)
	case c == 'd':
		return d.dict(depth)
	default:
		return nil, d.errorf(d.pos, "invalid character %q at start of value", c)
	}
}

// integer decodes "i<n>e" at d.pos.
func (d *decoder) integer() (any, error) {
	start := d.pos
	d.pos++ // 'i'
	neg := false
	if d.pos < len(d.data) && d.data[d.pos] == '-' {
		neg = true
		d.pos++
	}
	digits := d.pos
	// limit is the magnitude bound: MaxInt64, or MaxInt64+1 for negatives.
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var n uint64
	for {
		if d.pos >= len(d.data) {
			return nil, d.eof()
		}
		c := d.data[d.pos]
		if c == 'e' {
			break
		}
		if c < '0' || c > '9' {
			return nil, d.errorf(d.pos, "invalid character %q in integer", c)
		}
		dv := uint64(c - '0')
		if n > (limit-dv)/10 {
			return nil, d.errorf(start, "integer overflows int64")
		}
		n = n*10 + dv
		d.pos++
	}
	switch {
	case d.pos == digits:
		return nil, d.errorf(d.pos, "integer has no digits")
	case d.data[digits] == '0' && d.pos-digits > 1:
		return nil, d.errorf(digits, "integer has a leading zero")
	case neg && n == 0:
		return nil, d.errorf(start+1, "negative zero integer")
	}
	d.pos++ // 'e'
	if neg {
		// n <= MaxInt64+1, so this is exact, including MinInt64.
		return -int64(n-1) - 1, nil
	}
	return int64(n), nil
}

// strBounds parses "<len>:" at d.pos, checks the length against the
// remaining input and returns the bounds of the string's bytes, leaving
// d.pos after them. It does not allocate.
func (d *decoder) strBounds() (lo, hi int, err error) {
	start := d.pos
	// Digits past the point where n could overflow only set big: such a
	// length exceeds any possible input anyway.
	n, big := 0, false
	for {
		if d.pos >= len(d.data) {
			return 0, 0, d.eof()
		}
		c := d.data[d.pos]
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return 0, 0, d.errorf(d.pos, "invalid character %q in string length", c)
		}
		if dv := int(c - '0'); big || n > (math.MaxInt-dv)/10 {
			big = true
		} else {
			n = n*10 + dv
		}
		d.pos++
	}
	if d.pos == start {
		// Unreachable from value(), which only calls here on a digit,
		// but kept so strBounds stands on its own.
		return 0, 0, d.errorf(d.pos, "string length has no digits")
	}
	if d.data[start] == '0' && d.pos-start > 1 {
		return 0, 0, d.errorf(start, "string length has a leading zero")
	}
	d.pos++ // ':'
	if rem := len(d.data) - d.pos; big || n > rem {
		if big {
			return 0, 0, d.errorf(start, "string length exceeds remaining input (%d bytes)", rem)
		}
		return 0, 0, d.errorf(start, "string length %d exceeds remaining input (%d bytes)", n, rem)
	}
	lo, hi = d.pos, d.pos+n
	d.pos = hi
	return lo, hi, nil
}

func (d *decoder) str() (any, error) {
	lo, hi, err := d.strBounds()
	if err != nil {
		return nil, err
	}
	return string(d.data[lo:hi]), nil
}

func (d *decoder) list(depth int) (any, error) {
	if depth >= MaxDepth {
		return nil, d.errorf(d.pos, "nesting deeper than %d levels", MaxDepth)
	}
	d.pos++ // 'l'
	l := []any{}
	for {
		if d.pos >= len(d.data) {
			return nil, d.eof()
		}
		if d.data[d.pos] == 'e' {
			d.pos++
			return l, nil
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		l = append(l, v)
	}
}

func (d *decoder) dict(depth int) (any, error) {
	if depth >= MaxDepth {
		return nil, d.errorf(d.pos, "nesting deeper than %d levels", MaxDepth)
	}
	d.pos++ // 'd'
	m := map[string]any{}
	var prev []byte
	first := true
	for {
		if d.pos >= len(d.data) {
			return nil, d.eof()
		}
		c := d.data[d.pos]
		if c == 'e' {
			d.pos++
			return m, nil
		}
		if c < '0' || c > '9' {
			return nil, d.errorf(d.pos, "dict key must be a byte string, found %q", c)
		}
		keyStart := d.pos
		lo, hi, err := d.strBounds()
		if err != nil {
			return nil, err
		}
		key := d.data[lo:hi]
		if !first {
			// Comparing as strings is bytewise and does not allocate.
			switch k, p := string(key), string(prev); {
			case k == p:
				return nil, d.errorf(keyStart, "duplicate dict key %s", quoteKey(key))
			case k < p:
				return nil, d.errorf(keyStart, "dict key %s not in sorted order (after %s)",
					quoteKey(key), quoteKey(prev))
			}
		}
		first = false
		prev = key
		if d.pos < len(d.data) && d.data[d.pos] == 'e' {
			return nil, d.errorf(d.pos, "dict key %s has no value", quoteKey(key))
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[string(key)] = v
	}
}

// quoteKey formats a dictionary key for an error message, truncating long
// (possibly hostile) keys so messages stay small.
func quoteKey(k []byte) string {
	const max = 32
	if len(k) > max {
		return strconv.Quote(string(k[:max])) + "..."
	}
	return strconv.Quote(string(k))
}
