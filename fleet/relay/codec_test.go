package relay

import (
	"bytes"
	"encoding/binary"
	"testing"

	"trackd/bittorrent"
	"trackd/fleet"
)

// appendEntry encodes e as the encoder does.
func appendEntry(b []byte, e *entry) []byte {
	switch e.kind {
	case kindChange:
		return appendChange(b, e.ih, e.id, e.op, e.seeder)
	case kindMessage:
		return appendMessage(b, e.ih, e.id, e.msg)
	case kindHint:
		return appendHint(b, e.ih, e.id, e.op, e.seeder, e.seq)
	case kindSeq, kindDump:
		return appendSeqKind(b, e.kind, e.seq)
	}
	return append(b, e.kind)
}

// parseAll returns frame's origin and entries, or the parser's error.
func parseAll(frame []byte) (fleet.Instance, []entry, error) {
	origin, err := checkFrame(frame)
	if err != nil {
		return origin, nil, err
	}
	fr, _ := readHeader(frame)
	var list []entry
	for {
		var e entry
		ok, err := fr.next(&e)
		if err != nil || !ok {
			return origin, list, err
		}
		list = append(list, e)
	}
}

// TestFrameRoundTrip: frames encoded parse back to what was encoded.
func TestFrameRoundTrip(t *testing.T) {
	origin := fleet.Instance{1, 2, 3, 4, 5, 6, 7, 8}
	ih := bittorrent.InfoHash{0xaa, 19: 0xbb}
	id := bittorrent.PeerID{'-', 'W', 'W', 19: 'z'}
	big := bytes.Repeat([]byte("x"), MaxMessageBytes)
	tests := []struct {
		name    string
		entries []entry
	}{
		{"heartbeat", nil},
		{"bye", []entry{{kind: kindBye}}},
		{"sync", []entry{{kind: kindSync}, {kind: kindChange, ih: ih, id: id}}},
		{"numbered", []entry{{kind: kindSeq, seq: 1 << 40}, {kind: kindChange, ih: ih, id: id}, {kind: kindChange, ih: ih, id: id, op: opLeave}}},
		{"dump", []entry{{kind: kindSync}, {kind: kindDump, seq: 3}, {kind: kindChange, ih: ih, id: id, seeder: true}}},
		{"hint", []entry{{kind: kindHint, ih: ih, id: id, op: opCompleted, seeder: true, seq: 7}, {kind: kindMessage, ih: ih, id: id, msg: []byte("offer")}}},
		{"changes", []entry{
			{kind: kindChange, ih: ih, id: id, op: opAnnounce},
			{kind: kindChange, ih: ih, id: id, op: opCompleted, seeder: true},
			{kind: kindChange, ih: ih, id: id, op: opLeave},
		}},
		{"messages", []entry{
			{kind: kindMessage, ih: ih, id: id, msg: []byte(`{"offer":1}`)},
			{kind: kindMessage, ih: ih, id: id, msg: bytes.Repeat([]byte("y"), 200)},
			{kind: kindMessage, ih: ih, id: id, msg: big},
		}},
		{"mixed", []entry{
			{kind: kindChange, ih: ih, id: id, op: opAnnounce, seeder: true},
			{kind: kindMessage, ih: ih, id: id, msg: []byte("m")},
			{kind: kindBye},
		}},
	}
	for _, tt := range tests {
		frame := appendHeader(nil, origin)
		for i := range tt.entries {
			frame = appendEntry(frame, &tt.entries[i])
		}
		got, list, err := parseAll(frame)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != origin || len(list) != len(tt.entries) {
			t.Errorf("%s: origin %v, %d entries; want %v, %d", tt.name, got, len(list), origin, len(tt.entries))
			continue
		}
		for i, e := range list {
			w := tt.entries[i]
			if e.kind != w.kind || e.ih != w.ih && w.kind != kindBye && w.kind != kindSync && w.kind != kindSeq && w.kind != kindDump || e.seq != w.seq || e.op != w.op || e.seeder != w.seeder || !bytes.Equal(e.msg, w.msg) {
				t.Errorf("%s: entry %d is %+v, want %+v", tt.name, i, e, w)
			}
		}
	}
}

// invalidFrames are frames the parser refuses, each for one reason.
func invalidFrames() []struct {
	name  string
	frame []byte
} {
	origin := fleet.Instance{9, 9, 9, 9, 9, 9, 9, 9}
	hdr := appendHeader(nil, origin)
	var ih bittorrent.InfoHash
	var id bittorrent.PeerID
	change := appendChange(nil, ih, id, opAnnounce, false)
	msgHead := append(append([]byte{kindMessage}, ih[:]...), id[:]...)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	return []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"short header", hdr[:5]},
		{"magic only", []byte(magic)},
		{"short magic", []byte(magic[:1])},
		{"version 0", cat([]byte(magic), []byte{0}, origin[:])},
		{"version 2", cat([]byte(magic), []byte{2}, origin[:])},
		{"zero origin", cat([]byte(magic), []byte{version}, make([]byte, 8))},
		{"unknown kind", cat(hdr, []byte{8})},
		{"dump seq 0", cat(hdr, appendSeqKind(nil, kindDump, 0))},
		{"seq 0", cat(hdr, appendSeq(nil, 0))},
		{"short seq", cat(hdr, appendSeq(nil, 1)[:seqLen-1])},
		{"hint seq 0", cat(hdr, appendHint(nil, ih, id, opAnnounce, false, 0))},
		{"short hint", cat(hdr, appendHint(nil, ih, id, opAnnounce, false, 1)[:hintLen-1])},
		{"hint op 3", cat(hdr, appendHint(nil, ih, id, 3, false, 1))},
		{"kind 0", cat(hdr, []byte{0})},
		{"short change", cat(hdr, change[:changeLen-1])},
		{"op 3", cat(hdr, change[:changeLen-1], []byte{3})},
		{"unknown flag", cat(hdr, change[:changeLen-1], []byte{0x08})},
		{"change then junk", cat(hdr, change, []byte{0xff})},
		{"message without length", cat(hdr, msgHead)},
		{"message length 0", cat(hdr, msgHead, []byte{0})},
		{"message too long", cat(hdr, binary.AppendUvarint(msgHead, MaxMessageBytes+1), make([]byte, MaxMessageBytes+1))},
		{"message length overflows", cat(hdr, msgHead, bytes.Repeat([]byte{0xff}, 10), []byte{1})},
		{"message length unterminated", cat(hdr, msgHead, []byte{0x80})},
		{"message length padded", cat(hdr, msgHead, []byte{0x81, 0x00}, []byte{'x'})},
		{"message truncated", cat(hdr, msgHead, []byte{5}, []byte("abc"))},
		{"short message head", cat(hdr, msgHead[:30])},
	}
}

// TestFrameInvalid: every invalid frame is refused whole, as invalid;
// a message without the magic is foreign.
func TestFrameInvalid(t *testing.T) {
	for _, tt := range invalidFrames() {
		if _, err := checkFrame(tt.frame); err == nil || err == errForeign {
			t.Errorf("%s: %v, want invalid", tt.name, err)
		}
	}
	for _, m := range [][]byte{[]byte("xx"), {1, 0, 0, 0, 0, 0, 0, 0, 1}, []byte(`{"join":1}`)} {
		if _, err := checkFrame(m); err != errForeign {
			t.Errorf("%q: %v, want errForeign", m, err)
		}
	}
}

// FuzzFrame: the parser never panics, and a frame it accepts encodes
// back to the same bytes (one encoding per frame: the parser is strict).
// The seed corpus (valid and invalid frames) runs as an ordinary test.
func FuzzFrame(f *testing.F) {
	origin := fleet.Instance{1, 1, 1, 1, 1, 1, 1, 1}
	var ih bittorrent.InfoHash
	var id bittorrent.PeerID
	hdr := appendHeader(nil, origin)
	f.Add(hdr)
	f.Add(append(appendHeader(nil, origin), kindBye))
	f.Add(appendChange(appendHeader(nil, origin), ih, id, opCompleted, true))
	f.Add(appendMessage(appendChange(appendHeader(nil, origin), ih, id, opLeave, false), ih, id, []byte(`{"answer":{}}`)))
	f.Add(appendChange(appendSeq(appendHeader(nil, origin), 3), ih, id, opAnnounce, false))
	f.Add(appendMessage(appendHint(appendHeader(nil, origin), ih, id, opAnnounce, true, 9), ih, id, []byte("o")))
	for _, tt := range invalidFrames() {
		f.Add(tt.frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		got, list, err := parseAll(frame)
		if err != nil {
			return
		}
		re := appendHeader(nil, got)
		for i := range list {
			re = appendEntry(re, &list[i])
		}
		if !bytes.Equal(re, frame) {
			t.Fatalf("frame %x parsed and encoded again is %x", frame, re)
		}
	})
}
