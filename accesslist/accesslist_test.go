package accesslist

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trackd/bittorrent"
)

func hash(b byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

func TestParseHash(t *testing.T) {
	want := hash(0xa0)
	hexs := want.String()
	b32 := "UCQ2FI5EUWTKPKFJVKV2ZLNOV6YLDMVT" // base32 of hash(0xa0)
	for _, tc := range []struct {
		in   string
		want bittorrent.InfoHash
		err  error
	}{
		{hexs, want, nil},
		{strings.ToUpper(hexs), want, nil},
		{b32, want, nil},
		{strings.ToLower(b32), want, nil},
		{hexs[:39], bittorrent.InfoHash{}, errLength},
		{hexs + "0", bittorrent.InfoHash{}, errLength},
		{"g" + hexs[1:], bittorrent.InfoHash{}, errDigits},
		{"1" + b32[1:], bittorrent.InfoHash{}, errDigits}, // '1' is not base32
		{"", bittorrent.InfoHash{}, errLength},
	} {
		got, err := ParseHash(tc.in)
		if !errors.Is(err, tc.err) || (err == nil && got != tc.want) {
			t.Errorf("ParseHash(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParse(t *testing.T) {
	a, b := hash(1), hash(2)
	for _, tc := range []struct {
		name string
		in   string
		want []bittorrent.InfoHash
		line int // of the error; 0: no error
	}{
		{"empty", "", nil, 0},
		{"comments and blanks", "# a list\n\n   \n" + a.String() + "  # first\n\t" + b.String() + "\r\n", []bittorrent.InfoHash{a, b}, 0},
		{"no final newline", a.String(), []bittorrent.InfoHash{a}, 0},
		{"bad line", a.String() + "\n# ok\nnot a hash\n" + b.String() + "\n", nil, 3},
		{"too long", a.String() + "\n" + strings.Repeat("x", maxLine+10) + "\n", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if tc.line != 0 {
				var le *LineError
				if !errors.As(err, &le) || le.Line != tc.line {
					t.Fatalf("Parse: err %v; want a LineError at line %d", err, tc.line)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("hash %d: got %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	listed, other := hash(1), hash(9)
	for _, tc := range []struct {
		l                 *List
		listedOK, otherOK bool
	}{
		{nil, true, true},
		{&List{}, true, true},
		{New(Off, []bittorrent.InfoHash{listed}), true, true},
		{New(Allow, []bittorrent.InfoHash{listed}), true, false},
		{New(Deny, []bittorrent.InfoHash{listed}), false, true},
	} {
		if got := tc.l.Allowed(listed); got != tc.listedOK {
			t.Errorf("%v list: Allowed(listed) = %v", tc.l.Mode(), got)
		}
		if got := tc.l.Allowed(other); got != tc.otherOK {
			t.Errorf("%v list: Allowed(other) = %v", tc.l.Mode(), got)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Off, "off": Off, "Allow": Allow, "deny": Deny, "whitelist": Allow, "blacklist": Deny} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseMode("maybe"); err == nil {
		t.Error("ParseMode(maybe): no error")
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	// write and rename, as configuration tools do
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestSourceReload(t *testing.T) {
	a, b := hash(1), hash(2)
	path := filepath.Join(t.TempDir(), "list")
	write(t, path, a.String()+"\n")
	s, err := Open(Allow, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Allowed(a) || s.Allowed(b) {
		t.Fatal("first list not in force")
	}

	write(t, path, b.String()+"\n")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Allowed(a) || !s.Allowed(b) {
		t.Fatal("reloaded list not in force")
	}

	write(t, path, a.String()+"\nbad\n")
	err = s.Reload()
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad file: err %v; want line 2", err)
	}
	if s.Allowed(a) || !s.Allowed(b) {
		t.Fatal("a bad file changed the list in force")
	}

	os.Remove(path)
	if err := s.Reload(); err == nil {
		t.Fatal("missing file: no error")
	}
	if !s.Allowed(b) {
		t.Fatal("a missing file changed the list in force")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Deny, filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := Open(Allow, "", nil); err == nil {
		t.Error("no file: no error")
	}
	bad := filepath.Join(dir, "bad")
	write(t, bad, "zz\n")
	if _, err := Open(Allow, bad, nil); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad file: %v", err)
	}
	s, err := Open(Off, "", nil)
	if err != nil || !s.Allowed(hash(3)) || s.Reload() != nil {
		t.Errorf("off: %v", err)
	}
	var none *Source
	if !none.Allowed(hash(3)) {
		t.Error("nil Source refuses")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatch(t *testing.T) {
	a, b, c := hash(1), hash(2), hash(3)
	path := filepath.Join(t.TempDir(), "list")
	write(t, path, a.String()+"\n")
	s, err := Open(Deny, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	write(t, path, a.String()+"\n"+b.String()+"\n")
	waitFor(t, "the change", func() bool { return !s.Allowed(b) })

	write(t, path, "nonsense\n"+c.String()+"\n")
	time.Sleep(50 * time.Millisecond)
	if s.Allowed(b) || !s.Allowed(c) {
		t.Fatal("a bad file changed the list in force")
	}
	write(t, path, c.String()+"\n")
	waitFor(t, "the fixed file", func() bool { return !s.Allowed(c) && s.Allowed(a) })
}

func FuzzParse(f *testing.F) {
	f.Add("")
	f.Add(hash(1).String() + "\n# c\n")
	f.Add("UCQ2FI5EUWTKPKFJVKV2ZLNOV6YLDMVT\r\n")
	f.Add("zz\n")
	f.Fuzz(func(t *testing.T, s string) {
		hashes, err := Parse(strings.NewReader(s))
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		// every hash parsed back from its hex form is itself
		for _, h := range hashes {
			if g, err := ParseHash(h.String()); err != nil || g != h {
				t.Fatalf("round trip %v: %v %v", h, g, err)
			}
		}
	})
}
