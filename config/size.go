package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"trackd/internal/sysmem"
)

// Size is a number of bytes. It is written as an integer, with or without
// a unit — B, KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB
// (powers of 1000), such as 536870912, 512MiB or 2GiB — or as "auto" for
// DefaultMaxMemory. In a TOML file it may be an integer or a string.
type Size int64

var sizeUnits = []struct {
	name string
	n    int64
}{
	// longest first, so that "MiB" is not read as "B"
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseSize parses a Size.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	if s == "auto" {
		return Size(DefaultMaxMemory()), nil
	}
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.name); ok {
			num, mult = strings.TrimSpace(rest), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, such as 536870912, 512MiB or 2GiB, or auto", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n * mult), nil
}

// String writes the size in the largest binary unit that divides it.
func (z Size) String() string {
	for i := 3; i >= 0; i-- {
		if u := sizeUnits[i]; z != 0 && int64(z)%u.n == 0 {
			return strconv.FormatInt(int64(z)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(z), 10)
}

// Set implements flag.Value.
func (z *Size) Set(s string) error {
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// UnmarshalTOML takes an integer or a string.
func (z *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size %d: must not be negative", v)
		}
		*z = Size(v)
		return nil
	case string:
		return z.Set(v)
	}
	return fmt.Errorf("size: want an integer or a string such as \"512MiB\", not %T", v)
}

// DefaultMaxMemory is the default max_memory ("auto"): half of the
// machine's memory or of its cgroup's limit if that is lower
// (sysmem.Limit), 0 (no bound) where neither can be read, and never below
// the smallest bound Validate takes (a container of under 64 MiB must
// still start with the defaults). Half, because the bound counts the
// store's torrents and peers only: the rest of the process (the Go heap,
// the full scrape's cache, what the store has freed and not given back)
// and the system need room too.
func DefaultMaxMemory() int64 {
	n := sysmem.Limit() / 2
	if n > 0 && n < minMaxMemory {
		n = minMaxMemory
	}
	return n
}
