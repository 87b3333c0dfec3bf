package relay

import (
	"testing"

	"trackd/bittorrent"
	"trackd/fleet"
)

// changesIn returns the peer ids' first bytes of the changes in frames,
// in order.
func changesIn(t *testing.T, frames [][]byte) []byte {
	t.Helper()
	var ids []byte
	for _, f := range frames {
		_, list, err := parseAll(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			if e.kind == kindChange {
				ids = append(ids, e.id[0])
			}
		}
	}
	return ids
}

// TestQueue: entries are refused past the bound; frames split at
// frameBytes; requeued frames go first and the oldest are dropped past
// the bound.
func TestQueue(t *testing.T) {
	self := fleet.Instance{1}
	add := func(q *queue, ids ...byte) int {
		n := 0
		for _, id := range ids {
			if _, ok := q.addChange(bittorrent.InfoHash{}, bittorrent.PeerID{id}, opAnnounce, false); ok {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name        string
		max         int // in changes
		first       []byte
		then        []byte // added after the first were taken
		wantDropped int
		want        []byte
	}{
		{"fits", 10, []byte{1, 2, 3}, []byte{4, 5}, 0, []byte{1, 2, 3, 4, 5}},
		{"requeued over bound drops oldest frame", 4, []byte{1, 2, 3}, []byte{4, 5}, 3, []byte{4, 5}},
		{"nothing new", 4, []byte{1, 2}, nil, 0, []byte{1, 2}},
	}
	for _, tt := range tests {
		q := newQueue(self, tt.max*changeLen, false)
		if n := add(q, tt.first...); n != len(tt.first) {
			t.Fatalf("%s: %d added", tt.name, n)
		}
		taken := q.take(nil)
		add(q, tt.then...)
		if d := q.requeue(taken); d != tt.wantDropped {
			t.Errorf("%s: requeue dropped %d, want %d", tt.name, d, tt.wantDropped)
		}
		if got := changesIn(t, q.take(nil)); string(got) != string(tt.want) {
			t.Errorf("%s: queue holds %v, want %v", tt.name, got, tt.want)
		}
	}

	q := newQueue(self, 2*changeLen, false)
	if n := add(q, 1, 2, 3); n != 2 {
		t.Errorf("%d of 3 added under a bound of 2", n)
	}
	q.close()
	if add(q, 4) != 0 {
		t.Error("added to a closed queue")
	}

	q = newQueue(self, 1<<30, true)
	const n = 5000
	for i := range n {
		add(q, byte(i))
	}
	frames := q.take(nil)
	if want := (n*changeLen + frameBytes - 1) / (frameBytes - headerLen); len(frames) < want {
		t.Errorf("%d frames for %d changes, want at least %d", len(frames), n, want)
	}
	for _, f := range frames {
		if len(f) > frameBytes {
			t.Errorf("a frame of %d bytes, over %d", len(f), frameBytes)
		}
	}
	if got := len(changesIn(t, frames)); got != n {
		t.Errorf("%d changes in the frames, want %d", got, n)
	}
}
