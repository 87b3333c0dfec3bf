package fleet

import (
	"bytes"
	"testing"
)

func sampleHeader() joinHeader {
	return joinHeader{donor: Instance{1, 2, 3, 4, 5, 6, 7, 8}, streams: []joinStart{
		{pos: "1733555555555-12", next: 1},
		{pos: StreamStart, next: 1 << 40},
	}}
}

// The join's header, end and request read back what was written, and
// refuse what is cut, padded or out of range.
func TestJoinCodec(t *testing.T) {
	h := sampleHeader()
	b := appendJoinHeader(nil, &h)
	got, err := parseJoinHeader(b)
	if err != nil || got.donor != h.donor || len(got.streams) != 2 || got.streams[0] != h.streams[0] || got.streams[1] != h.streams[1] {
		t.Fatalf("header: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(b, 0), b[:13], nil} {
		if _, err := parseJoinHeader(bad); err == nil {
			t.Errorf("header of %d bytes accepted", len(bad))
		}
	}
	marks := []mark{{0, []uint64{1, 1 << 40}}, {5, []uint64{3, 1 << 40}}, {9, []uint64{3, 1<<40 + 1}}}
	e := appendMarks(nil, marks)
	if m, err := parseMarks(e, &h, 9); err != nil || len(m) != 3 || m[1].swarms != 5 || m[2].next[1] != 1<<40+1 {
		t.Fatalf("marks: %+v, %v", m, err)
	}
	for name, bad := range map[string][]mark{
		"past the end":     {{10, []uint64{1, 1 << 40}}},
		"below the header": {{0, []uint64{0, 1 << 40}}},
		"going back":       {{0, []uint64{2, 1 << 40}}, {1, []uint64{1, 1 << 40}}},
		"swarms back":      {{3, []uint64{1, 1 << 40}}, {2, []uint64{1, 1 << 40}}},
	} {
		if _, err := parseMarks(appendMarks(nil, bad), &h, 9); err == nil {
			t.Errorf("marks %s accepted", name)
		}
	}
	if _, err := parseMarks(append(e, 0), &h, 9); err == nil {
		t.Error("marks with a byte left over accepted")
	}
	r := joinRequest{joiner: Instance{9}, nonce: [16]byte{1, 2}}
	m := appendJoinRequest(nil, &r)
	if got, ok := parseJoinRequest(m); !ok || got != r {
		t.Fatalf("request: %+v, %v", got, ok)
	}
	if _, ok := parseJoinRequest(append(m, 0)); ok {
		t.Error("long request accepted")
	}
	if _, ok := parseJoinRequest(appendJoinRequest(nil, &joinRequest{})); ok {
		t.Error("request of no joiner accepted")
	}
	if _, ok := parseJoinRequest([]byte("wr\x01 a relay frame, not ours")); ok {
		t.Error("relay frame taken for a request")
	}
}

// FuzzJoinCodec: the parsers of what a joiner reads from the Bus never
// panic; a header and a request they accept are what they would write,
// marks are in order.
func FuzzJoinCodec(f *testing.F) {
	h := sampleHeader()
	f.Add(appendJoinHeader(nil, &h))
	f.Add(appendMarks(nil, []mark{{0, []uint64{1, 1 << 40}}, {5, []uint64{3, 1 << 40}}}))
	f.Add(appendJoinRequest(nil, &joinRequest{joiner: Instance{9}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, err := parseJoinHeader(b); err == nil {
			if again := appendJoinHeader(nil, &got); !bytes.Equal(again, b) {
				t.Fatalf("header %x reads as %+v, written %x", b, got, again)
			}
		}
		if m, err := parseMarks(b, &h, 1000); err == nil {
			for k := range m {
				if len(m[k].next) != len(h.streams) || m[k].swarms > 1000 || (k > 0 && m[k].swarms < m[k-1].swarms) {
					t.Fatalf("marks %x read as %+v", b, m)
				}
			}
		}
		if r, ok := parseJoinRequest(b); ok {
			if again := appendJoinRequest(nil, &r); !bytes.Equal(again, b) {
				t.Fatalf("request %x reads as %+v", b, r)
			}
		}
	})
}
