package udp

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"trackd/bittorrent"
	"trackd/tracker"
)

func TestCheckOptions(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 255)
	for _, tc := range []struct {
		name string
		opts []byte
		err  bool
	}{
		{"none", nil, false},
		{"EndOfOptions", []byte{optEndOfOptions}, false},
		{"NOPs", []byte{optNOP, optNOP, optNOP}, false},
		{"URLData", append([]byte{optURLData, 9}, "/announce"...), false},
		{"URLData twice", append(append([]byte{optURLData, 3}, "/an"...), append([]byte{optURLData, 6}, "nounce"...)...), false},
		{"NOPs between URLData", append(append([]byte{optNOP, optURLData, 2}, "/a"...), append([]byte{optNOP, optNOP, optURLData, 2}, "?x"...)...), false},
		{"255-byte URLData", append([]byte{optURLData, 255}, long...), false},
		{"empty URLData", []byte{optURLData, 0}, false},
		{"data after EndOfOptions is ignored", []byte{optURLData, 1, 'a', optEndOfOptions, optURLData, 200, 0xff}, false},
		{"unknown option after EndOfOptions is ignored", []byte{optEndOfOptions, 0x7f}, false},
		{"URLData without length", []byte{optURLData}, true},
		{"URLData one byte short", []byte{optURLData, 3, 'a', 'b'}, true},
		{"URLData far past the end", []byte{optURLData, 255, 'a'}, true},
		{"second URLData truncated", []byte{optURLData, 1, 'a', optURLData, 2, 'b'}, true},
		{"unknown option 3", []byte{3, 0}, true},
		{"unknown option 0xff", []byte{optNOP, 0xff}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkOptions(tc.opts)
			if tc.err {
				if err != errBadOption {
					t.Errorf("error %v, want %v", err, errBadOption)
				}
				return
			}
			if err != nil {
				t.Errorf("error %v", err)
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
	if err := parseAnnounce(a.bytes(), &req); err != nil {
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
	if !reflect.DeepEqual(req, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", req, want)
	}

	// ip 0, num_want -1, no options: no address, NumWantUnset.
	a.ip, a.numWant, a.options, a.event = [4]byte{}, -1, nil, udpEventStarted
	if err := parseAnnounce(a.bytes(), &req); err != nil {
		t.Fatal(err)
	}
	if req.Addr != netip.AddrPortFrom(netip.Addr{}, 51413) || req.NumWant != tracker.NumWantUnset || req.Event != bittorrent.EventStarted {
		t.Errorf("parsed %+v", req)
	}
	// Options that are all NOPs are accepted; a malformed one is refused.
	a.options = []byte{optNOP, optNOP}
	if err := parseAnnounce(a.bytes(), &req); err != nil {
		t.Errorf("NOP options: error %v", err)
	}
	a.options = []byte{optURLData, 3, 'a'}
	if err := parseAnnounce(a.bytes(), &req); err != errBadOption {
		t.Errorf("truncated URLData: error %v, want %v", err, errBadOption)
	}
	a.options = nil
	// The largest counts are accepted.
	a.downloaded, a.left, a.uploaded = 1<<63-1, 1<<63-1, 1<<63-1
	if err := parseAnnounce(a.bytes(), &req); err != nil || req.Left != 1<<63-1 {
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
		if err := parseAnnounce(a.bytes(), &req); err != nil || req.Left != tc.want || req.Uploaded != tc.wantUp {
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
		if err := parseAnnounce(a.bytes(), &req); err != nil || req.Event != want {
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
