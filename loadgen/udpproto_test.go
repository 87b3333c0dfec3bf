package loadgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"trackd/bittorrent"
)

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func testPeer(seeder bool) Peer {
	p := Peer{Port: 51413, Key: 0xdeadbeef, Seeder: seeder}
	for i := range p.InfoHash {
		p.InfoHash[i] = byte(i)
		p.ID[i] = byte(0xa0 + i)
	}
	return p
}

func TestUDPRequests(t *testing.T) {
	leecher, seeder := testPeer(false), testPeer(true)
	h1 := bittorrent.InfoHash{1}
	h2 := bittorrent.InfoHash{2}
	buf := make([]byte, 256)
	for _, tc := range []struct {
		name string
		got  func() []byte
		want []byte
	}{
		{"connect", func() []byte { return putConnect(buf, 0x01020304) },
			cat(be64(0x41727101980), be32(0), be32(0x01020304))},
		{"announce started leecher", func() []byte {
			b := initAnnounce(buf, 30)
			patchAnnounce(b, 0x1122334455667788, 7, &leecher, evStarted)
			return b
		}, cat(be64(0x1122334455667788), be32(1), be32(7), leecher.InfoHash[:], leecher.ID[:],
			be64(0), be64(1<<30), be64(0), be32(2), be32(0), be32(0xdeadbeef), be32(30), []byte{0xc8, 0xd5})},
		{"announce seeder, template reused", func() []byte {
			b := initAnnounce(buf, 30)
			patchAnnounce(b, 1, 7, &leecher, evStarted)
			patchAnnounce(b, 2, 8, &seeder, evNone)
			return b
		}, cat(be64(2), be32(1), be32(8), seeder.InfoHash[:], seeder.ID[:],
			be64(0), be64(0), be64(0), be32(0), be32(0), be32(0xdeadbeef), be32(30), []byte{0xc8, 0xd5})},
		{"announce completed leecher: left=0", func() []byte {
			b := initAnnounce(buf, 50)
			patchAnnounce(b, 3, 9, &leecher, evCompleted)
			return b
		}, cat(be64(3), be32(1), be32(9), leecher.InfoHash[:], leecher.ID[:],
			be64(0), be64(0), be64(0), be32(1), be32(0), be32(0xdeadbeef), be32(50), []byte{0xc8, 0xd5})},
		{"announce stopped leecher", func() []byte {
			b := initAnnounce(buf, 30)
			patchAnnounce(b, 3, 9, &leecher, evStopped)
			return b
		}, cat(be64(3), be32(1), be32(9), leecher.InfoHash[:], leecher.ID[:],
			be64(0), be64(1<<30), be64(0), be32(3), be32(0), be32(0xdeadbeef), be32(30), []byte{0xc8, 0xd5})},
		{"announce numwant -1", func() []byte {
			b := initAnnounce(buf, -1)
			patchAnnounce(b, 2, 8, &seeder, evNone)
			return b[92:96]
		}, be32(0xffffffff)},
		{"scrape two", func() []byte { return putScrape(buf, 9, 10, []bittorrent.InfoHash{h1, h2}) },
			cat(be64(9), be32(2), be32(10), h1[:], h2[:])},
	} {
		if got := tc.got(); !bytes.Equal(got, tc.want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, got, tc.want)
		}
	}
}

func TestCheckUDPReply(t *testing.T) {
	peers := func(n, size int) []byte { return make([]byte, n*size) }
	announce := udpWant{action: actionAnnounce, tx: 5, numwant: 30, peerSize: 6}
	announce6 := udpWant{action: actionAnnounce, tx: 5, numwant: 30, peerSize: 18}
	scrape := udpWant{action: actionScrape, tx: 5, hashes: 2}
	connect := udpWant{action: actionConnect, tx: 5}
	hdr := func(action uint32) []byte { return cat(be32(action), be32(5)) }
	swarm := cat(be32(1800), be32(3), be32(4))
	for _, tc := range []struct {
		name  string
		reply []byte
		want  udpWant
		err   error  // nil, a sentinel, or trackerErr
		msg   string // for a *TrackerError
		peers int
		id    uint64
	}{
		{name: "connect", reply: cat(hdr(0), be64(42)), want: connect, id: 42},
		{name: "announce no peers", reply: cat(hdr(1), swarm), want: announce},
		{name: "announce 30 peers", reply: cat(hdr(1), swarm, peers(30, 6)), want: announce, peers: 30},
		{name: "announce IPv6 peers", reply: cat(hdr(1), swarm, peers(2, 18)), want: announce6, peers: 2},
		{name: "scrape", reply: cat(hdr(2), peers(2, 12)), want: scrape},

		{name: "empty", reply: nil, want: announce, err: errShort},
		{name: "short", reply: be32(1), want: announce, err: errShort},
		{name: "wrong tx", reply: cat(be32(1), be32(6), swarm), want: announce, err: errWrongTx},
		{name: "wrong action", reply: cat(hdr(2), peers(2, 12)), want: announce, err: errWrongAction},
		{name: "connect reply to announce", reply: cat(hdr(0), be64(42)), want: announce, err: errWrongAction},
		{name: "error packet", reply: cat(hdr(3), []byte("connection id expired")), want: announce, msg: "connection id expired"},
		{name: "error packet to connect", reply: cat(hdr(3), []byte("go away")), want: connect, msg: "go away"},
		{name: "connect too long", reply: cat(hdr(0), be64(42), []byte{0}), want: connect, err: errConnectLen},
		{name: "connect too short", reply: cat(hdr(0), be32(42)), want: connect, err: errConnectLen},
		{name: "announce header cut", reply: cat(hdr(1), be32(1800)), want: announce, err: errAnnounceLen},
		{name: "announce half a peer", reply: cat(hdr(1), swarm, peers(1, 6), []byte{1, 2, 3}), want: announce, err: errAnnounceLen},
		{name: "announce IPv4 peers to IPv6", reply: cat(hdr(1), swarm, peers(1, 6)), want: announce6, err: errAnnounceLen},
		{name: "announce too many peers", reply: cat(hdr(1), swarm, peers(31, 6)), want: announce, err: errTooManyPeers},
		{name: "announce negative count", reply: cat(hdr(1), be32(1800), be32(0xffffffff), be32(0)), want: announce, err: errBadSwarmCount},
		{name: "scrape one entry short", reply: cat(hdr(2), peers(1, 12)), want: scrape, err: errScrapeLen},
		{name: "scrape extra bytes", reply: cat(hdr(2), peers(2, 12), []byte{0}), want: scrape, err: errScrapeLen},
	} {
		got, err := checkUDPReply(tc.reply, tc.want)
		var te *TrackerError
		switch {
		case tc.msg != "":
			if !errors.As(err, &te) || te.Msg != tc.msg {
				t.Errorf("%s: err = %v, want tracker error %q", tc.name, err, tc.msg)
			}
		case err != tc.err:
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		case err == nil && (got.peers != tc.peers || got.connID != tc.id):
			t.Errorf("%s: got %+v, want %d peers, id %d", tc.name, got, tc.peers, tc.id)
		}
	}
}

// The canned server's replies must pass the generator's checks.
func TestCannedUDPRepliesCheck(t *testing.T) {
	c := &Canned{}
	p := testPeer(false)
	buf := make([]byte, 256)
	out := make([]byte, 0, 2048)
	for _, size := range []int{6, 18} {
		r := c.udpReply(putConnect(buf, 1), out, size)
		got, err := checkUDPReply(r, udpWant{action: actionConnect, tx: 1})
		if err != nil || got.connID != cannedConnID {
			t.Fatalf("connect: %v %+v", err, got)
		}
		for _, nw := range []int{-1, 0, 5, 30, 200} {
			b := initAnnounce(buf, nw)
			patchAnnounce(b, cannedConnID, 2, &p, evStarted)
			r = c.udpReply(b, out, size)
			want := min(max(nw, 0), 30)
			if nw < 0 {
				want = 30
			}
			got, err = checkUDPReply(r, udpWant{action: actionAnnounce, tx: 2, numwant: max(nw, 30), peerSize: size})
			if err != nil || got.peers != want {
				t.Fatalf("announce numwant %d: %v, %d peers, want %d", nw, err, got.peers, want)
			}
		}
		r = c.udpReply(putScrape(buf, cannedConnID, 3, make([]bittorrent.InfoHash, 3)), out, size)
		if _, err := checkUDPReply(r, udpWant{action: actionScrape, tx: 3, hashes: 3}); err != nil {
			t.Fatalf("scrape: %v", err)
		}
		b := initAnnounce(buf, 30)
		patchAnnounce(b, 12345, 4, &p, evStarted)
		r = c.udpReply(b, out, size)
		var te *TrackerError
		if _, err := checkUDPReply(r, udpWant{action: actionAnnounce, tx: 4, numwant: 30, peerSize: size}); !errors.As(err, &te) {
			t.Fatalf("announce with a wrong connection id: %v, want a tracker error", err)
		}
		if r := c.udpReply(buf[:15], out, size); len(r) != 0 {
			t.Fatalf("reply to a 15-byte packet: %x", r)
		}
	}
}

func TestUDPRequestBuildingDoesNotAllocate(t *testing.T) {
	w, _ := NewWorkload(100, 1000, 4, 1, 0.75)
	buf := make([]byte, 256)
	var p Peer
	b := initAnnounce(buf, 30)
	j := 0
	if n := testing.AllocsPerRun(1000, func() {
		w.Peer(j%1000, &p)
		patchAnnounce(b, 1, uint32(j), &p, event(j%4))
		j++
	}); n != 0 {
		t.Errorf("building an announce allocates %v times", n)
	}
}
