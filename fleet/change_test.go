package fleet

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"trackd/bittorrent"
)

func hash(s string) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	copy(h[:], s)
	return h
}

func peerID(s string) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], s)
	return id
}

var testOrigin = Instance{1, 2, 3, 4, 5, 6, 7, 8}

func TestBatchRoundTrip(t *testing.T) {
	v4 := netip.MustParseAddrPort("10.1.2.3:6881")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:51413")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("10.9.9.9").As16()), 1)
	tests := []struct {
		name    string
		first   uint64
		changes []Change
		size    int // bytes of the records
	}{
		{"one IPv4 no id", 1, []Change{{InfoHash: hash("a"), Peer: bittorrent.Peer{Addr: v4}}}, 27},
		{"IPv4 with id", 7, []Change{{InfoHash: hash("a"), Peer: bittorrent.Peer{ID: peerID("-TR3000-x"), Addr: v4}}}, 47},
		{"IPv6 with id, seeder, completed", 1 << 40, []Change{{InfoHash: hash("b"), Peer: bittorrent.Peer{ID: peerID("-qB-"), Addr: v6}, Event: bittorrent.EventCompleted, Seeder: true}}, 59},
		{"IPv6 no id stopped", 2, []Change{{InfoHash: hash("c"), Peer: bittorrent.Peer{Addr: v6}, Event: bittorrent.EventStopped}}, 39},
		{"4in6 stays 16 bytes", 3, []Change{{InfoHash: hash("d"), Peer: bittorrent.Peer{Addr: mapped}, Event: bittorrent.EventStarted}}, 39},
		{"last number", ^uint64(0) - 1, []Change{
			{InfoHash: hash("e"), Peer: bittorrent.Peer{Addr: v4}},
			{InfoHash: hash("e"), Peer: bittorrent.Peer{Addr: v6}, Seeder: true},
		}, 27 + 39},
		{"every event and role", 1, func() []Change {
			var cs []Change
			for ev := bittorrent.EventNone; ev <= bittorrent.EventStopped; ev++ {
				for _, seeder := range []bool{false, true} {
					cs = append(cs, Change{InfoHash: hash("f"), Peer: bittorrent.Peer{Addr: v4}, Event: ev, Seeder: seeder})
				}
			}
			return cs
		}(), 8 * 27},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("kept")
			b, err := AppendBatch(prefix, Header{Origin: testOrigin, First: tt.first}, tt.changes)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("kept")) {
				t.Fatal("AppendBatch overwrote what b held")
			}
			b = b[len(prefix):]
			if want := headerSize + tt.size; len(b) != want {
				t.Errorf("batch of %d bytes, want %d", len(b), want)
			}
			h, got, err := DecodeBatch(b, []Change{{}})
			if err != nil {
				t.Fatal(err)
			}
			if want := (Header{Origin: testOrigin, First: tt.first, Count: len(tt.changes)}); h != want {
				t.Errorf("header %+v, want %+v", h, want)
			}
			if !reflect.DeepEqual(got[1:], tt.changes) {
				t.Errorf("decoded %+v\nwant %+v", got[1:], tt.changes)
			}
		})
	}
}

func TestAppendBatchRefuses(t *testing.T) {
	good := Change{InfoHash: hash("a"), Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort("10.0.0.1:1")}}
	tests := []struct {
		name    string
		changes []Change
		err     string
	}{
		{"empty", nil, "empty batch"},
		{"no address", []Change{good, {InfoHash: hash("a")}}, "valid peer address"},
		{"unknown event", []Change{{InfoHash: hash("a"), Peer: good.Peer, Event: 4}}, "unknown event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendBatch([]byte("x"), Header{Origin: testOrigin, First: 1}, tt.changes)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want one saying %q", err, tt.err)
			}
			if string(b) != "x" {
				t.Errorf("b = %q after the error, want it as it was", b)
			}
		})
	}
}

// validBatch is a batch of three changes for the decoder's tests.
func validBatch(t testing.TB) []byte {
	b, err := AppendBatch(nil, Header{Origin: testOrigin, First: 5}, []Change{
		{InfoHash: hash("a"), Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort("10.0.0.1:1")}},
		{InfoHash: hash("b"), Peer: bittorrent.Peer{ID: peerID("id"), Addr: netip.MustParseAddrPort("[::1]:2")}, Seeder: true},
		{InfoHash: hash("c"), Peer: bittorrent.Peer{Addr: netip.MustParseAddrPort("10.0.0.3:3")}, Event: bittorrent.EventStopped},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeBatchRefuses(t *testing.T) {
	valid := validBatch(t)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	tests := []struct {
		name  string
		batch []byte
		err   string
	}{
		{"nil", nil, "shorter than its header"},
		{"truncated header", valid[:headerSize-4], "shorter than its header"},
		{"other version", edit(func(b []byte) []byte { b[0] = 2; return b }), "format version 2"},
		{"count 0", edit(func(b []byte) []byte { setCount(b, 0); return b }), "no change"},
		{"number 0", edit(func(b []byte) []byte { copy(b[9:17], make([]byte, 8)); return b }), "out of range"},
		{"numbers past 2^64-1", edit(func(b []byte) []byte { copy(b[9:17], bytes.Repeat([]byte{0xff}, 8)); return b }), "out of range"},
		{"count too big for the bytes", edit(func(b []byte) []byte { setCount(b, 1<<30); return b }), "truncated"},
		{"count one more", edit(func(b []byte) []byte { setCount(b, 4); return b }), "truncated"},
		{"count one less", edit(func(b []byte) []byte { setCount(b, 2); return b }), "bytes after the last"},
		{"truncated in a record", valid[:len(valid)-1], "truncated"},
		{"a byte more", append(bytes.Clone(valid), 0), "bytes after the last"},
		{"unknown flag", edit(func(b []byte) []byte { b[headerSize] |= 0x20; return b }), "unknown flags"},
		{"zero id sent", edit(func(b []byte) []byte {
			i := headerSize + 27 + 1 + 20 + 16 + 2
			copy(b[i:i+20], make([]byte, 20))
			return b
		}), "zero peer id"},
		{"IPv4 flagged IPv6", edit(func(b []byte) []byte { b[headerSize+27+59] |= flagIPv6; return b }), "truncated at change 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keep := []Change{{Seeder: true}}
			h, got, err := DecodeBatch(tt.batch, keep)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want one saying %q", err, tt.err)
			}
			if h != (Header{}) || len(got) != 1 || !got[0].Seeder {
				t.Errorf("DecodeBatch returned %+v, %+v with its error; want nothing", h, got)
			}
		})
	}
}

// TestAppendChangeAllocs checks that encoding a change into a buffer with
// room allocates nothing: it runs on every announce.
func TestAppendChangeAllocs(t *testing.T) {
	c := Change{InfoHash: hash("a"), Peer: bittorrent.Peer{ID: peerID("x"), Addr: netip.MustParseAddrPort("[2001:db8::1]:1")}}
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		b := appendHeader(buf[:0], Header{Origin: testOrigin, First: 1})
		for range 10 {
			b, _ = appendChange(b, &c)
		}
		setCount(b, 10)
	})
	if allocs != 0 {
		t.Errorf("%v allocs per batch, want 0", allocs)
	}
}

// FuzzBatch feeds DecodeBatch arbitrary bytes: it must never panic, and a
// batch it accepts must encode back to the same bytes (the format is
// canonical), with as many changes as its header counts.
func FuzzBatch(f *testing.F) {
	f.Add(validBatch(f))
	f.Add([]byte{})
	f.Add([]byte{Version})
	b, _ := hex.DecodeString("01" + "0102030405060708" + "0000000000000001" + "00000001" +
		"1c" + strings.Repeat("ab", 20) + strings.Repeat("00", 16) + "1ae1" + strings.Repeat("01", 20))
	f.Add(b)
	f.Add(b[:len(b)-1])
	v := validBatch(f)
	setCount(v, 0xffffffff)
	f.Add(v)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, changes, err := DecodeBatch(b, nil)
		if err != nil {
			if h != (Header{}) || len(changes) != 0 {
				t.Fatalf("error %v with header %+v and %d changes", err, h, len(changes))
			}
			return
		}
		if h.Count != len(changes) || h.Count == 0 {
			t.Fatalf("header counts %d, decoded %d", h.Count, len(changes))
		}
		again, err := AppendBatch(nil, h, changes)
		if err != nil {
			t.Fatalf("decoded changes do not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded\n%x\nfrom\n%x", again, b)
		}
	})
}
