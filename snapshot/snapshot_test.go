package snapshot

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"trackd/bittorrent"
)

var update = flag.Bool("update", false, "rewrite testdata/v1.snap (only when Version is 1)")

func sample() []Swarm {
	exp := time.Unix(1_800_000_000, 0)
	id := bittorrent.PeerID{'-', 'T', 'D', '0', '0', '0', '1', '-'}
	return []Swarm{
		{InfoHash: bittorrent.InfoHash{1, 2, 3}, Downloaded: 7, Peers: []Peer{
			{Addr: netip.MustParseAddrPort("192.0.2.1:6881"), ID: id, Seeder: true, Completed: true, Expires: exp},
			{Addr: netip.MustParseAddrPort("[2001:db8::1]:51413"), ID: id, Expires: exp.Add(time.Second)},
			{Addr: netip.MustParseAddrPort("10.0.0.1:1"), Expires: exp.Add(2 * time.Second)},
		}},
		{InfoHash: bittorrent.InfoHash{0xff, 0, ' ', '+'}, Downloaded: 1<<32 - 1}, // no peers, a count
		{InfoHash: bittorrent.InfoHash{9}, Peers: []Peer{{Addr: netip.MustParseAddrPort("[::ffff:203.0.113.5]:80"), Seeder: true, Expires: exp}}},
	}
}

func writeAll(t *testing.T, path string, flags uint32, swarms []Swarm) Info {
	t.Helper()
	info, err := Write(path, flags, func(put func(*Swarm) error) error {
		for i := range swarms {
			if err := put(&swarms[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func readAll(path string) ([]Swarm, Info, error) {
	var got []Swarm
	info, err := Read(path, func(s *Swarm) error {
		c := *s
		c.Peers = append([]Peer(nil), s.Peers...)
		got = append(got, c)
		return nil
	})
	return got, info, err
}

// want is what a round trip gives: IPv4-mapped addresses come back as
// IPv4, ids only with FlagPeerIDs.
func want(swarms []Swarm, flags uint32) []Swarm {
	var out []Swarm
	for _, s := range swarms {
		c := s
		c.Peers = nil
		for _, p := range s.Peers {
			p.Addr = netip.AddrPortFrom(p.Addr.Addr().Unmap(), p.Addr.Port())
			if flags&FlagPeerIDs == 0 {
				p.ID = bittorrent.PeerID{}
			}
			c.Peers = append(c.Peers, p)
		}
		if c.Peers == nil {
			c.Peers = []Peer{}
		}
		out = append(out, c)
	}
	return out
}

func normalize(s []Swarm) []Swarm {
	for i := range s {
		if s[i].Peers == nil {
			s[i].Peers = []Peer{}
		}
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	for _, flags := range []uint32{0, FlagPeerIDs} {
		path := filepath.Join(t.TempDir(), "state.snap")
		wi := writeAll(t, path, flags, sample())
		got, ri, err := readAll(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), want(sample(), flags)) {
			t.Errorf("flags %d: got\n%+v\nwant\n%+v", flags, got, want(sample(), flags))
		}
		if ri.Swarms != 3 || ri.Peers != 4 || wi.Swarms != 3 || wi.Peers != 4 || ri.Version != Version || ri.Flags != flags {
			t.Errorf("info written %+v, read %+v", wi, ri)
		}
		if !ri.WrittenAt.Equal(wi.WrittenAt) {
			t.Errorf("written at %v, read %v", wi.WrittenAt, ri.WrittenAt)
		}
	}
}

func TestEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.snap")
	writeAll(t, path, 0, nil)
	got, info, err := readAll(path)
	if err != nil || len(got) != 0 || info.Swarms != 0 {
		t.Fatalf("empty snapshot: %v %+v %v", got, info, err)
	}
}

// TestCorrupt: a file cut at any length, or with any byte changed, is
// refused with ErrCorrupt before a single swarm is handed out.
func TestCorrupt(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeAll(t, good, FlagPeerIDs, sample())
	data, _ := os.ReadFile(good)
	bad := filepath.Join(dir, "bad")
	check := func(what string, b []byte) {
		t.Helper()
		os.WriteFile(bad, b, 0o600)
		calls := 0
		_, err := Read(bad, func(*Swarm) error { calls++; return nil })
		if !errors.Is(err, ErrCorrupt) || calls != 0 {
			t.Fatalf("%s: err %v after %d swarms; want ErrCorrupt and none", what, err, calls)
		}
	}
	for n := 0; n < len(data); n++ {
		check("cut", data[:n])
	}
	for i := range data {
		b := append([]byte(nil), data...)
		b[i] ^= 0x40
		check("altered", b)
	}
	check("not a snapshot", []byte(strings.Repeat("hello world\n", 10)))
}

// TestNewerVersion: a file from a later trackd (a version this one does not
// know) is refused, with a clear message, even with a valid checksum.
func TestNewerVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.snap")
	writeAll(t, path, 0, sample())
	data, _ := os.ReadFile(path)
	data[len(magic)+3] = 99 // version 99
	body := data[:len(data)-4]
	fixed := append(append([]byte(nil), body...), crcOf(body)...)
	os.WriteFile(path, fixed, 0o600)
	_, err := Read(path, func(*Swarm) error { return nil })
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("version 99: %v", err)
	}
}

func crcOf(b []byte) []byte {
	var out [4]byte
	s := crc32Sum(b)
	out[0], out[1], out[2], out[3] = byte(s>>24), byte(s>>16), byte(s>>8), byte(s)
	return out[:]
}

// TestCrashMidWrite: a write that fails half way (as a crash would cut it)
// leaves the previous snapshot in place, intact; the next write removes
// what a crashed write left behind.
func TestCrashMidWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.snap")
	writeAll(t, path, 0, sample())
	boom := errors.New("killed")
	_, err := Write(path, 0, func(put func(*Swarm) error) error {
		s := sample()
		put(&s[0])
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	got, _, err := readAll(path)
	if err != nil || !reflect.DeepEqual(normalize(got), want(sample(), 0)) {
		t.Fatalf("old snapshot after a failed write: %v, %v", got, err)
	}
	// a process killed mid-write leaves its temporary file
	leftover := filepath.Join(dir, ".state.snap.tmp-123")
	os.WriteFile(leftover, []byte("half a snapshot"), 0o600)
	writeAll(t, path, 0, sample()[:1])
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temporary file still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want only the snapshot", len(entries))
	}
}

func TestReadStopsAtCallbackError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.snap")
	writeAll(t, path, 0, sample())
	stop := errors.New("stop")
	calls := 0
	_, err := Read(path, func(*Swarm) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.snap")
	os.WriteFile(path, []byte("garbage"), 0o600)
	to, err := MoveAside(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(to), "state.snap.corrupt-") {
		t.Errorf("moved to %s", to)
	}
	if b, err := os.ReadFile(to); err != nil || string(b) != "garbage" {
		t.Errorf("moved file: %q %v", b, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("the corrupt file is still in place")
	}
}

// TestVersion1File reads a file written by format version 1, checked in
// under testdata: every later trackd must still read it.
func TestVersion1File(t *testing.T) {
	path := filepath.Join("testdata", "v1.snap")
	if *update {
		if Version != 1 {
			t.Fatal("-update rewrites the version 1 file only while Version is 1")
		}
		writeAll(t, path, FlagPeerIDs, sample())
	}
	got, info, err := readAll(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 1 || !reflect.DeepEqual(normalize(got), want(sample(), FlagPeerIDs)) {
		t.Fatalf("version %d: got %+v", info.Version, got)
	}
}

func FuzzDecode(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed")
	Write(path, FlagPeerIDs, func(put func(*Swarm) error) error {
		s := sample()
		for i := range s {
			put(&s[i])
		}
		return nil
	})
	data, _ := os.ReadFile(path)
	f.Add(data[:len(data)-4])
	f.Add(data[:len(data)/2])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		// the record decoder, behind the checksum Read verifies first: it
		// must fail cleanly or hand out sane swarms
		decode(bufio.NewReader(bytes.NewReader(b)), func(s *Swarm) error {
			for _, p := range s.Peers {
				if !p.Addr.Addr().IsValid() {
					t.Fatalf("invalid address handed out: %v", p.Addr)
				}
			}
			return nil
		})
	})
}

// Encode writes what Write writes to a file, and Decode reads it back;
// anything cut or altered is refused before a swarm is handed out.
func TestEncodeDecode(t *testing.T) {
	for _, flags := range []uint32{0, FlagPeerIDs} {
		var buf bytes.Buffer
		in, err := Encode(&buf, flags, func(put func(*Swarm) error) error {
			s := sample()
			for i := range s {
				if err := put(&s[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "f")
		os.WriteFile(path, buf.Bytes(), 0o600)
		fromFile, _, err := readAll(path)
		if err != nil {
			t.Fatalf("flags %d: the encoding is not a state file: %v", flags, err)
		}
		var got []Swarm
		out, err := Decode(buf.Bytes(), func(s *Swarm) error {
			c := *s
			c.Peers = append([]Peer(nil), s.Peers...)
			got = append(got, c)
			return nil
		})
		if err != nil || out.Swarms != in.Swarms || out.Peers != in.Peers {
			t.Fatalf("flags %d: Decode: %+v, %v; encoded %+v", flags, out, err, in)
		}
		if !reflect.DeepEqual(normalize(got), want(sample(), flags)) || !reflect.DeepEqual(normalize(fromFile), normalize(got)) {
			t.Fatalf("flags %d: got %+v", flags, got)
		}
		b := buf.Bytes()
		for _, bad := range [][]byte{nil, b[:len(b)-1], b[:len(b)/2], append(append([]byte(nil), b[:40]...), append([]byte{b[40] ^ 1}, b[41:]...)...)} {
			calls := 0
			_, err := Decode(bad, func(*Swarm) error { calls++; return nil })
			if !errors.Is(err, ErrCorrupt) || calls != 0 {
				t.Fatalf("flags %d: %d bytes of %d: err %v, %d swarms handed out", flags, len(bad), len(b), err, calls)
			}
		}
	}
}

// FuzzDecodeBytes: Decode never panics and hands out only valid
// addresses, whatever it is given.
func FuzzDecodeBytes(f *testing.F) {
	var buf bytes.Buffer
	Encode(&buf, FlagPeerIDs, func(put func(*Swarm) error) error {
		s := sample()
		for i := range s {
			put(&s[i])
		}
		return nil
	})
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:buf.Len()-4])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		Decode(b, func(s *Swarm) error {
			for _, p := range s.Peers {
				if !p.Addr.Addr().IsValid() {
					t.Fatalf("invalid address handed out: %v", p.Addr)
				}
			}
			return nil
		})
	})
}
