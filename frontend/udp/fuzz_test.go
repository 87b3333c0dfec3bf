package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"trackd/store"
	"trackd/store/memory"
	"trackd/tracker"
)

// fuzzSenders are the senders the seeds come from; the fuzzer may pick
// any other address too.
var fuzzSenders = []netip.AddrPort{
	ap("192.0.2.1:6881"),
	ap("[2001:db8::1]:6881"),
	ap("[::ffff:192.0.2.1]:6881"),
}

// fuzzFrom turns fuzz input into a sender: 4 bytes are an IPv4 address, 16
// an IPv6 one (possibly v4-mapped), none the zero AddrPort (which a socket
// never reports, but Handle must survive), anything else 192.0.2.1.
func fuzzFrom(addr []byte, port uint16) netip.AddrPort {
	switch len(addr) {
	case 0:
		return netip.AddrPort{}
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr)), port)
	case 16:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr)), port)
	}
	return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port)
}

// fuzzHandler is a Handler at a fixed time whose store is replaced every
// few thousand packets, so that a long fuzzing run does not fill memory
// with the swarms of mutated info hashes. The secret is fixed too, so the
// ids in the seeds stay valid in every fuzzing worker.
type fuzzHandler struct {
	h     *Handler
	s     *memory.Store
	calls int
}

var fuzzNow = time.Unix(1_700_000_000, 0)

func (fh *fuzzHandler) get() *Handler {
	if fh.h == nil || fh.calls%5000 == 0 {
		if fh.s != nil {
			fh.s.Close()
		}
		clock := func() time.Time { return fuzzNow }
		fh.s = memory.New(store.Options{PeerLifetime: time.Hour, Now: clock})
		fh.h = NewHandler(tracker.New(tracker.Config{}, fh.s), Options{
			Secret:       testSecret,
			Now:          clock,
			TrustIPParam: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		})
	}
	fh.calls++
	return fh.h
}

func FuzzHandle(f *testing.F) {
	fh := &fuzzHandler{}
	f.Cleanup(func() {
		if fh.s != nil {
			fh.s.Close()
		}
	})
	h := fh.get()
	for _, from := range fuzzSenders {
		var buf idScratch
		id := h.ids.issue(&buf, canonicalAddrPort(from))
		addr := from.Addr().AsSlice()
		a := announce{id: id, tid: 0x01020304, ih: hash20("fuzz"), pid: hash20("peer"), left: 1, event: udpEventStarted, numWant: 50, port: 6881}
		seeds := [][]byte{
			connectPkt(7),
			a.bytes(),
			scrapePkt(id, 9, hash20("fuzz")),
			scrapePkt(id, 9, hash20("a"), hash20("b"), hash20("fuzz")),
			header(id, 7, 1),
			header(id+1, actionAnnounce, 1),
		}
		a.options = []byte{optNOP, optURLData, 9, '/', 'a', 'n', 'n', 'o', 'u', 'n', 'c', 'e', optURLData, 4, '?', 'k', '=', 'v', optEndOfOptions, 0xff}
		seeds = append(seeds, a.bytes())
		a.options = []byte{optURLData, 200, 'x'}
		seeds = append(seeds, a.bytes())
		a.options, a.ip, a.event, a.left = nil, [4]byte{198, 51, 100, 1}, udpEventCompleted, 0
		seeds = append(seeds, a.bytes())
		// What real clients send that trackd once refused: WebTorrent's
		// stopped announce with left = 2^64-1, libtorrent's paused (4),
		// negative counts and events past 3.
		a.ip, a.event, a.left = [4]byte{}, udpEventStopped, -1
		seeds = append(seeds, a.bytes())
		a.event, a.left, a.downloaded, a.uploaded, a.key = udpEventPaused, 0, -1, -1<<63, 0xffffffff
		seeds = append(seeds, a.bytes())
		a.event = 0xffffffff
		seeds = append(seeds, a.bytes())
		for _, s := range seeds {
			f.Add(s, addr, from.Port())
		}
	}
	f.Add([]byte{}, []byte{}, uint16(0))
	f.Add(connectPkt(1)[:15], []byte{1, 2, 3, 4}, uint16(1))

	f.Fuzz(func(t *testing.T, pkt, addr []byte, port uint16) {
		h := fh.get()
		from := fuzzFrom(addr, port)
		orig := bytes.Clone(pkt)
		reply := h.Handle(context.Background(), from, pkt, make([]byte, 0, 64))
		if !bytes.Equal(pkt, orig) {
			t.Fatalf("Handle modified the request")
		}
		if len(pkt) < headerLen || !from.Addr().IsValid() {
			if len(reply) != 0 {
				t.Fatalf("reply %x to a packet that must be dropped", reply)
			}
			return
		}
		canon := canonicalAddrPort(from)
		connID := binary.BigEndian.Uint64(pkt)
		action := be32(pkt[8:])
		var buf idScratch
		verified := action != actionConnect && h.ids.valid(&buf, canon, connID)

		// The amplification rule.
		if !verified && len(reply) > len(pkt) {
			t.Fatalf("%d-byte reply %x to a %d-byte packet from %v without a valid connection id", len(reply), reply, len(pkt), from)
		}
		if action == actionConnect && connID != protocolID {
			if len(reply) != 0 {
				t.Fatalf("reply %x to a connect without the magic", reply)
			}
			return
		}
		if len(reply) < replyHeaderLen {
			t.Fatalf("reply %x: no header", reply)
		}
		if !bytes.Equal(reply[4:8], pkt[12:16]) {
			t.Fatalf("reply %x does not echo transaction id %x", reply, pkt[12:16])
		}
		got := be32(reply)
		if got == actionError {
			for _, c := range reply[8:] {
				if c < ' ' || c > '~' {
					t.Fatalf("error message %q is not printable ASCII", reply[8:])
				}
			}
			if !verified && string(reply[8:]) != errInvalidConnID[:min(len(errInvalidConnID), len(pkt)-8)] {
				t.Fatalf("unverified sender got %q", reply[8:])
			}
			return
		}
		if got != action {
			t.Fatalf("reply action %d to action %d", got, action)
		}
		switch action {
		case actionConnect:
			if len(reply) != 16 || !h.ids.valid(&buf, canon, binary.BigEndian.Uint64(reply[8:])) {
				t.Fatalf("bad connect reply %x", reply)
			}
		case actionAnnounce:
			size := 6
			if canon.Addr().Is6() {
				size = 18
			}
			if len(reply) < 20 || (len(reply)-20)%size != 0 {
				t.Fatalf("announce reply of %d bytes from %v", len(reply), from)
			}
		case actionScrape:
			if n := (len(pkt) - headerLen) / hashLen; len(reply) != 8+12*n {
				t.Fatalf("scrape reply of %d bytes for %d hashes", len(reply), n)
			}
		default:
			t.Fatalf("answered unknown action %d with %x", action, reply)
		}
	})
}

// refCheckOptions is a second, deliberately naive BEP 41 parser to check
// checkOptions against: it consumes the options as a queue.
func refCheckOptions(opts []byte) bool {
	for len(opts) > 0 {
		typ := opts[0]
		opts = opts[1:]
		switch typ {
		case 0:
			return true
		case 1:
		case 2:
			if len(opts) == 0 {
				return false
			}
			n := int(opts[0])
			opts = opts[1:]
			if len(opts) < n {
				return false
			}
			opts = opts[n:]
		default:
			return false
		}
	}
	return true
}

func FuzzCheckOptions(f *testing.F) {
	for _, s := range [][]byte{
		nil,
		{optEndOfOptions},
		{optNOP, optNOP},
		{optURLData, 3, 'a', 'b', 'c'},
		{optURLData, 3, 'a', 'b', 'c', optNOP, optURLData, 1, 'd', optEndOfOptions, 9, 9},
		{optURLData, 4, 'a'},
		{optURLData},
		{0x7f},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts []byte) {
		orig := bytes.Clone(opts)
		ok := refCheckOptions(opts)
		err := checkOptions(opts)
		if !bytes.Equal(opts, orig) {
			t.Fatal("checkOptions modified its input")
		}
		if ok != (err == nil) {
			t.Fatalf("error %v, reference parser ok=%v", err, ok)
		}
		if err != nil && err != errBadOption {
			t.Fatalf("error %v", err)
		}
		// Through parseAnnounce: the same verdict.
		a := announce{ih: hash20("x"), pid: hash20("y"), port: 1, options: opts}
		var req tracker.AnnounceRequest
		if perr := parseAnnounce(a.bytes(), &req); perr != err {
			t.Fatalf("parseAnnounce: %v, checkOptions: %v", perr, err)
		}
	})
}
