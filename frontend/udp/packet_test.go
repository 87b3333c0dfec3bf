package udp

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"trackd/bittorrent"
	"trackd/tracker"
)

func TestParseOptions(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 255)
	for _, tc := range []struct {
		name string
		opts []byte
		path string
		err  bool
	}{
		{"none", nil, "", false},
		{"EndOfOptions", []byte{optEndOfOptions}, "", false},
		{"NOPs", []byte{optNOP, optNOP, optNOP}, "", false},
		{"URLData", append([]byte{optURLData, 9}, "/announce"...), "/announce", false},
		{"URLData twice, concatenated", append(append([]byte{optURLData, 3}, "/an"...), append([]byte{optURLData, 6}, "nounce"...)...), "/announce", false},
		{"NOPs between URLData", append(append([]byte{optNOP, optURLData, 2}, "/a"...), append([]byte{optNOP, optNOP, optURLData, 2}, "?x"...)...), "/a?x", false},
		{"255-byte URLData", append([]byte{optURLData, 255}, long...), string(long), false},
		{"empty URLData", []byte{optURLData, 0}, "", false},
		{"data after EndOfOptions is ignored", []byte{optURLData, 1, 'a', optEndOfOptions, optURLData, 200, 0xff}, "a", false},
		{"unknown option after EndOfOptions is ignored", []byte{optEndOfOptions, 0x7f}, "", false},
		{"URLData without length", []byte{optURLData}, "", true},
		{"URLData one byte short", []byte{optURLData, 3, 'a', 'b'}, "", true},
		{"URLData far past the end", []byte{optURLData, 255, 'a'}, "", true},
		{"second URLData truncated", []byte{optURLData, 1, 'a', optURLData, 2, 'b'}, "", true},
		{"unknown option 3", []byte{3, 0}, "", true},
		{"unknown option 0xff", []byte{optNOP, 0xff}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, err := parseOptions(tc.opts, nil)
			if tc.err {
				if err != errBadOption {
					t.Errorf("error %v, want %v", err, errBadOption)
				}
				return
			}
			if err != nil || string(path) != tc.path {
				t.Errorf("path %q, error %v; want %q", path, err, tc.path)
			}
		})
	}
}

func TestParseAnnounce(t *testing.T) {
	a := announce{
		id: 1, tid: 2, ih: hash20("ih"), pid: hash20("pid"),
		downloaded: 100, left: 200, uploaded: 300, event: udpEventStopped,
		ip: [4]byte{198, 51, 100, 1}, key: 0xabcdef, numWant: 30, port: 51413,
		options: []byte{optNOP, optURLData, 9, '/', 'a', 'n', 'n', 'o', 'u', 'n', 'c', 'e', optURLData, 11, '?', 'p', 'a', 's', 's', 'k', 'e', 'y', '=', 'k', '1', optEndOfOptions, 'z'},
	}
	var req tracker.AnnounceRequest
	scratch := make([]byte, 0, 4)
	scratch, err := parseAnnounce(a.bytes(), &req, scratch)
	if err != nil {
		t.Fatal(err)
	}
	want := tracker.AnnounceRequest{
		InfoHash: a.ih, PeerID: a.pid,
		Addr:       ap("198.51.100.1:51413"),
		Uploaded:   300,
		Downloaded: 100,
		Left:       200,
		Event:      bittorrent.EventStopped,
		NumWant:    30,
		Compact:    true,
	}
	if string(req.Path) != "/announce?passkey=k1" {
		t.Errorf("Path %q", req.Path)
	}
	if &req.Path[0] != &scratch[0] {
		t.Error("Path is not in the returned scratch buffer")
	}
	req.Path = nil
	if !reflect.DeepEqual(req, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", req, want)
	}

	// ip 0, num_want -1, no options: no address, NumWantUnset, nil Path.
	a.ip, a.numWant, a.options, a.event = [4]byte{}, -1, nil, udpEventStarted
	if _, err := parseAnnounce(a.bytes(), &req, scratch); err != nil {
		t.Fatal(err)
	}
	if req.Addr != netip.AddrPortFrom(netip.Addr{}, 51413) || req.NumWant != tracker.NumWantUnset || req.Path != nil || req.Event != bittorrent.EventStarted {
		t.Errorf("parsed %+v", req)
	}
	// Options that are all NOPs leave Path nil too.
	a.options = []byte{optNOP, optNOP}
	if _, err := parseAnnounce(a.bytes(), &req, scratch); err != nil || req.Path != nil {
		t.Errorf("Path %q, error %v", req.Path, err)
	}
	// The largest counts are accepted.
	a.downloaded, a.left, a.uploaded = 1<<63-1, 1<<63-1, 1<<63-1
	if _, err := parseAnnounce(a.bytes(), &req, scratch); err != nil || req.Left != 1<<63-1 {
		t.Errorf("left %d, error %v", req.Left, err)
	}
	// Left read as signed and negative is unknown: a leecher. Negative
	// downloaded and uploaded (unused) are 0.
	for _, tc := range []struct {
		left, down, up int64
		want, wantUp   uint64
	}{
		{-1, -1, -1, tracker.LeftUnknown, 0}, // 2^64-1: WebTorrent's stopped announce
		{-1 << 63, 5, -1 << 63, tracker.LeftUnknown, 0},
		{0, 0, 0, 0, 0},
		{1<<63 - 1, 3, 3, 1<<63 - 1, 3},
	} {
		a.left, a.downloaded, a.uploaded = tc.left, tc.down, tc.up
		if _, err := parseAnnounce(a.bytes(), &req, scratch); err != nil || req.Left != tc.want || req.Uploaded != tc.wantUp {
			t.Errorf("left %d: parsed left %d, uploaded %d, error %v; want %d, %d", tc.left, req.Left, req.Uploaded, err, tc.want, tc.wantUp)
		}
	}
	// Events.
	for ev, want := range map[uint32]bittorrent.Event{
		0: bittorrent.EventNone, 1: bittorrent.EventCompleted, 2: bittorrent.EventStarted,
		3: bittorrent.EventStopped, 4: bittorrent.EventNone, 5: bittorrent.EventNone,
		0x80000000: bittorrent.EventNone, 0xffffffff: bittorrent.EventNone,
	} {
		a.event = ev
		if _, err := parseAnnounce(a.bytes(), &req, scratch); err != nil || req.Event != want {
			t.Errorf("event %d: %v, %v; want %v", ev, req.Event, err, want)
		}
	}
}

func TestAppendError(t *testing.T) {
	tid := []byte{1, 2, 3, 4}
	for _, tc := range []struct {
		limit int
		want  string
	}{
		{0, "invalid connection id"},
		{8, ""},
		{16, "invalid "},
		{29, "invalid connection id"},
		{1000, "invalid connection id"},
	} {
		b := appendError(nil, tid, "invalid connection id", tc.limit)
		if string(b[8:]) != tc.want || !bytes.Equal(b[:8], []byte{0, 0, 0, 3, 1, 2, 3, 4}) {
			t.Errorf("limit %d: %x", tc.limit, b)
		}
	}
}
