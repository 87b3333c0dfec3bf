package udp

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// fixture is a Handler over a real in-memory store, with a clock the test
// moves.
type fixture struct {
	h   *Handler
	tr  *tracker.Tracker
	now *time.Time
}

var testSecret = []byte("trackd udp test secret")

func newFixture(tb testing.TB, cfg tracker.Config, opts Options) *fixture {
	tb.Helper()
	return newFixtureOf(tb, cfg, opts, false)
}

// plainStore hides every ability of the store it wraps, among them
// store.CompactAnnouncer: the tracker then hands out bittorrent.Peer
// values, as from the Redis store.
type plainStore struct{ store.Store }

// newFixtureOf is newFixture, on a plainStore if plain.
func newFixtureOf(tb testing.TB, cfg tracker.Config, opts Options, plain bool) *fixture {
	tb.Helper()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	var s store.Store = memory.New(store.Options{PeerLifetime: time.Hour, Now: clock})
	tb.Cleanup(func() { s.Close() })
	if plain {
		s = plainStore{s}
	}
	opts.Now = clock
	if opts.Secret == nil {
		opts.Secret = testSecret
	}
	tr := tracker.New(cfg, s)
	return &fixture{h: NewHandler(tr, opts), tr: tr, now: &now}
}

// do sends pkt from from and returns the reply (a fresh slice).
func (f *fixture) do(from netip.AddrPort, pkt []byte) []byte {
	return f.h.Handle(context.Background(), from, pkt, make([]byte, 0, 8192))
}

// connect performs a connect from from and returns the connection id.
func (f *fixture) connect(tb testing.TB, from netip.AddrPort) uint64 {
	tb.Helper()
	reply := f.do(from, connectPkt(0x1234))
	if len(reply) != 16 || be32(reply[0:]) != actionConnect || be32(reply[4:]) != 0x1234 {
		tb.Fatalf("connect from %v: reply %x", from, reply)
	}
	return binary.BigEndian.Uint64(reply[8:])
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

func hash20(s string) (h [20]byte) {
	return sha1.Sum([]byte(s))
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func connectPkt(tid uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, protocolID)
	b = binary.BigEndian.AppendUint32(b, actionConnect)
	return binary.BigEndian.AppendUint32(b, tid)
}

func header(id uint64, action, tid uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, id)
	b = binary.BigEndian.AppendUint32(b, action)
	return binary.BigEndian.AppendUint32(b, tid)
}

// announce is an announce packet's fields.
type announce struct {
	id                         uint64
	tid                        uint32
	ih, pid                    [20]byte
	downloaded, left, uploaded int64
	event                      uint32
	ip                         [4]byte
	key                        uint32
	numWant                    int32
	port                       uint16
	options                    []byte // BEP 41, appended as is
}

func (a announce) bytes() []byte {
	be := binary.BigEndian
	b := header(a.id, actionAnnounce, a.tid)
	b = append(b, a.ih[:]...)
	b = append(b, a.pid[:]...)
	b = be.AppendUint64(b, uint64(a.downloaded))
	b = be.AppendUint64(b, uint64(a.left))
	b = be.AppendUint64(b, uint64(a.uploaded))
	b = be.AppendUint32(b, a.event)
	b = append(b, a.ip[:]...)
	b = be.AppendUint32(b, a.key)
	b = be.AppendUint32(b, uint32(a.numWant))
	b = be.AppendUint16(b, a.port)
	return append(b, a.options...)
}

func scrapePkt(id uint64, tid uint32, hashes ...[20]byte) []byte {
	b := header(id, actionScrape, tid)
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return b
}

// announceReply is a decoded announce reply.
type announceReply struct {
	interval, leechers, seeders int32
	peers                       []netip.AddrPort
}

func decodeAnnounce(tb testing.TB, reply []byte, tid uint32, v6 bool) announceReply {
	tb.Helper()
	if len(reply) >= 8 && be32(reply) == actionError {
		tb.Fatalf("announce failed: %q", reply[8:])
	}
	size := 6
	if v6 {
		size = 18
	}
	if len(reply) < 20 || be32(reply) != actionAnnounce || be32(reply[4:]) != tid || (len(reply)-20)%size != 0 {
		tb.Fatalf("bad announce reply %x", reply)
	}
	r := announceReply{
		interval: int32(be32(reply[8:])),
		leechers: int32(be32(reply[12:])),
		seeders:  int32(be32(reply[16:])),
	}
	for p := reply[20:]; len(p) > 0; p = p[size:] {
		var a netip.Addr
		if v6 {
			a = netip.AddrFrom16([16]byte(p[:16]))
		} else {
			a = netip.AddrFrom4([4]byte(p[:4]))
		}
		r.peers = append(r.peers, netip.AddrPortFrom(a, binary.BigEndian.Uint16(p[size-2:])))
	}
	return r
}

// errorText returns the message of an error reply, failing the test if
// reply is not one for tid.
func errorText(tb testing.TB, reply []byte, tid uint32) string {
	tb.Helper()
	if len(reply) < 8 || be32(reply) != actionError || be32(reply[4:]) != tid {
		tb.Fatalf("want an error reply for transaction %#x, got %x", tid, reply)
	}
	return string(reply[8:])
}

// fill adds n peers from 10.x.y.z (IPv4) or 2001:db8::x (IPv6) to the
// swarm of ih through the tracker: the first seeders of them with left=0.
func (f *fixture) fill(tb testing.TB, ih [20]byte, n, seeders int, v6 bool) {
	tb.Helper()
	var resp tracker.AnnounceResponse
	for i := range n {
		var a netip.Addr
		if v6 {
			var b [16]byte
			copy(b[:], netip.MustParseAddr("2001:db8::").AsSlice())
			binary.BigEndian.PutUint32(b[12:], uint32(i+1))
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		req := tracker.AnnounceRequest{
			InfoHash: ih,
			PeerID:   hash20(a.String()),
			Addr:     netip.AddrPortFrom(a, 6881),
			Left:     1,
			NumWant:  0,
			Compact:  true,
		}
		if i < seeders {
			req.Left = 0
		}
		if err := f.tr.Announce(context.Background(), &req, &resp); err != nil {
			tb.Fatal(err)
		}
	}
}
