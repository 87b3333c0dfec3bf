package config

import (
	"bytes"
	"strings"
	"testing"

	"trackd/internal/sysmem"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "536870912", want: 512 << 20},
		{in: "512MiB", want: 512 << 20},
		{in: "2GiB", want: 2 << 30},
		{in: " 2 GiB ", want: 2 << 30},
		{in: "64KiB", want: 64 << 10},
		{in: "1TiB", want: 1 << 40},
		{in: "100B", want: 100},
		{in: "500MB", want: 500e6},
		{in: "3GB", want: 3e9},
		{in: "8kB", want: 8000},
		{in: "auto", want: Size(sysmem.Limit() / 2)},
		{in: "", bad: true},
		{in: "-1", bad: true},
		{in: "1.5GiB", bad: true},
		{in: "2gb", bad: true},
		{in: "GiB", bad: true},
		{in: "9999999TiB", bad: true},
		{in: "12 apples", bad: true},
	} {
		got, err := ParseSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		// String reads back
		if back, err := ParseSize(got.String()); err != nil || back != got {
			t.Errorf("ParseSize(%q) = %d, whose String %q reads back as %d, %v", tc.in, got, got.String(), back, err)
		}
	}
	for z, want := range map[Size]string{0: "0", 512 << 20: "512MiB", 2 << 30: "2GiB", 1000: "1000", 3 << 10: "3KiB"} {
		if got := z.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(z), got, want)
		}
	}
}

func TestLoadMaxMemory(t *testing.T) {
	def := Default()
	if want := Size(sysmem.Limit() / 2); def.MaxMemory != want {
		t.Errorf("default max_memory %v, want half of sysmem.Limit() %v", def.MaxMemory, want)
	}
	for _, tc := range []struct {
		file string
		args []string
		want Size
		err  string
	}{
		{file: "max_memory = 268435456\n", want: 256 << 20},
		{file: "max_memory = \"256MiB\"\n", want: 256 << 20},
		{file: "max_memory = 0\n", want: 0},
		{file: "max_memory = \"auto\"\n", want: def.MaxMemory},
		{file: "max_memory = \"1GiB\"\n", args: []string{"-max-memory", "2GiB"}, want: 2 << 30},
		{args: []string{"-max-memory", "536870912"}, want: 512 << 20},
		{args: []string{"-max-memory", "0"}, want: 0},
		{args: []string{"-max-memory", "lots"}, err: "512MiB"},
		{file: "max_memory = -5\n", err: "negative"},
		{file: "max_memory = 1.5\n", err: "want an integer or a string"},
		{args: []string{"-max-memory", "16MiB"}, err: "max_memory must be 0 (no bound) or at least 32MiB"},
	} {
		args := tc.args
		if tc.file != "" {
			args = append([]string{"-config", writeFile(t, tc.file)}, args...)
		}
		cfg, err := Load(args, &bytes.Buffer{})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q %v: err %v, want one saying %q", tc.file, tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || cfg.MaxMemory != tc.want {
			t.Errorf("%q %v: max_memory %v, %v; want %v", tc.file, tc.args, cfg.MaxMemory, err, tc.want)
		}
	}
}
