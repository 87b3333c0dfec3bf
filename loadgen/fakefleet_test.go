package loadgen

import (
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/bittorrent"
)

// fakeFleet is a fleet of tiny trackers (UDP and HTTP) in the test that
// share their swarms with a delay: a change made on one instance is seen
// on the others delay later, or never when delay is negative. Each
// instance issues its own UDP connection id and refuses the others', and
// records which peers announced to it.
type fakeFleet struct {
	delay time.Duration

	mu     sync.Mutex
	swarms map[bittorrent.InfoHash]map[netip.AddrPort]*fakePeer
	seen   []map[netip.AddrPort]int // per instance: announces of each peer
	badIDs int

	udp  []*net.UDPConn
	http []*http.Server
	lns  []net.Listener
	wg   sync.WaitGroup
}

// fakePeer is a peer's last change: made on instance origin at at; before
// the others see it, they see the state before it.
type fakePeer struct {
	origin          int
	at              time.Time
	present, before bool
}

func fakeConnID(i int) uint64 { return 0x66616b6500000000 + uint64(i) }

// startFakeFleet starts n instances, UDP and HTTP, on loopback.
func startFakeFleet(t *testing.T, n int, delay time.Duration) *fakeFleet {
	t.Helper()
	f := &fakeFleet{delay: delay, swarms: map[bittorrent.InfoHash]map[netip.AddrPort]*fakePeer{}}
	f.seen = make([]map[netip.AddrPort]int, n)
	for i := range n {
		f.seen[i] = map[netip.AddrPort]int{}
	}
	for i := range n {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		pc.SetReadBuffer(4 << 20)
		f.udp = append(f.udp, pc)
		f.wg.Go(func() { f.serveUDP(i, pc) })
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/announce", func(w http.ResponseWriter, r *http.Request) { f.serveHTTP(i, w, r, false) })
		mux.HandleFunc("/scrape", func(w http.ResponseWriter, r *http.Request) { f.serveHTTP(i, w, r, true) })
		srv := &http.Server{Handler: mux}
		f.http = append(f.http, srv)
		f.lns = append(f.lns, ln)
		f.wg.Go(func() { srv.Serve(ln) })
	}
	t.Cleanup(f.close)
	return f
}

func (f *fakeFleet) close() {
	for _, c := range f.udp {
		c.Close()
	}
	for _, s := range f.http {
		s.Close()
	}
	f.wg.Wait()
}

// list returns the instances' addresses, comma-separated, as -udp and
// -http take them.
func (f *fakeFleet) list(proto string) string {
	s := ""
	for i := range f.udp {
		if i > 0 {
			s += ","
		}
		if proto == "udp" {
			s += f.udp[i].LocalAddr().String()
		} else {
			s += "http://" + f.lns[i].Addr().String() + "/announce"
		}
	}
	return s
}

// announce applies an announce to instance i and returns the peers i sees
// (less the announcer, at most numwant) and the swarm's size there.
func (f *fakeFleet) announce(i int, h bittorrent.InfoHash, p netip.AddrPort, stopped bool, numwant int) ([]netip.AddrPort, int) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[i][p]++
	sw := f.swarms[h]
	if sw == nil {
		sw = map[netip.AddrPort]*fakePeer{}
		f.swarms[h] = sw
	}
	e := sw[p]
	if e == nil {
		e = &fakePeer{}
		sw[p] = e
	}
	e.before = f.visible(i, e, now)
	e.origin, e.at, e.present = i, now, !stopped
	var peers []netip.AddrPort
	size := 0
	for q, e := range sw {
		if !f.visible(i, e, now) {
			continue
		}
		size++
		if q != p && len(peers) < numwant {
			peers = append(peers, q)
		}
	}
	return peers, size
}

func (f *fakeFleet) visible(i int, e *fakePeer, now time.Time) bool {
	if e.origin == i || f.delay >= 0 && now.Sub(e.at) >= f.delay {
		return e.present
	}
	return e.before
}

func (f *fakeFleet) serveUDP(i int, pc *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		req := buf[:n]
		if n < 16 {
			continue
		}
		action, tx := binary.BigEndian.Uint32(req[8:]), binary.BigEndian.Uint32(req[12:])
		out := binary.BigEndian.AppendUint32(nil, action)
		out = binary.BigEndian.AppendUint32(out, tx)
		switch {
		case action == actionConnect:
			out = binary.BigEndian.AppendUint64(out, fakeConnID(i))
		case binary.BigEndian.Uint64(req) != fakeConnID(i):
			f.mu.Lock()
			f.badIDs++
			f.mu.Unlock()
			out = binary.BigEndian.AppendUint32(out[:0], actionError)
			out = binary.BigEndian.AppendUint32(out, tx)
			out = append(out, "bad connection id"...)
		case action == actionAnnounce && n >= udpAnnounceLen:
			var h bittorrent.InfoHash
			copy(h[:], req[16:36])
			p := netip.AddrPortFrom(from.Addr().Unmap(), binary.BigEndian.Uint16(req[96:]))
			peers, size := f.announce(i, h, p, binary.BigEndian.Uint32(req[80:]) == probeStopped, int(int32(binary.BigEndian.Uint32(req[92:]))))
			out = binary.BigEndian.AppendUint32(out, 60)
			out = binary.BigEndian.AppendUint32(out, uint32(size)) // leechers
			out = binary.BigEndian.AppendUint32(out, 0)
			for _, q := range peers {
				a := q.Addr().As4()
				out = append(out, a[:]...)
				out = binary.BigEndian.AppendUint16(out, q.Port())
			}
		case action == actionScrape:
			for range (n - 16) / 20 {
				out = append(out, make([]byte, 12)...)
			}
		default:
			continue
		}
		pc.WriteToUDPAddrPort(out, from)
	}
}

func (f *fakeFleet) serveHTTP(i int, w http.ResponseWriter, r *http.Request, scrape bool) {
	q := r.URL.Query()
	b := []byte{'d'}
	if scrape {
		b = bencode.AppendString(b, "files")
		b = append(b, 'd')
		hashes := q["info_hash"]
		slices.Sort(hashes) // a dictionary's keys are sorted
		for _, h := range hashes {
			b = bencode.AppendString(b, h)
			b = append(b, "d8:completei0e10:downloadedi0e10:incompletei0ee"...)
		}
		w.Write(append(b, "ee"...))
		return
	}
	var h bittorrent.InfoHash
	copy(h[:], q.Get("info_hash"))
	port, _ := strconv.Atoi(q.Get("port"))
	numwant, _ := strconv.Atoi(q.Get("numwant"))
	from := netip.MustParseAddrPort(r.RemoteAddr)
	peers, size := f.announce(i, h, netip.AddrPortFrom(from.Addr().Unmap(), uint16(port)), q.Get("event") == "stopped", numwant)
	var compact []byte
	for _, p := range peers {
		a := p.Addr().As4()
		compact = binary.BigEndian.AppendUint16(append(compact, a[:]...), p.Port())
	}
	b = bencode.AppendString(b, "complete")
	b = bencode.AppendInt(b, 0)
	b = bencode.AppendString(b, "incomplete")
	b = bencode.AppendInt(b, int64(size))
	b = bencode.AppendString(b, "interval")
	b = bencode.AppendInt(b, 60)
	b = bencode.AppendString(b, "peers")
	b = bencode.AppendBytes(b, compact)
	w.Write(append(b, 'e'))
}

// wrongIDs returns the number of UDP requests with another instance's
// connection id.
func (f *fakeFleet) wrongIDs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.badIDs
}

// peersOn returns, for each peer that announced, on how many instances
// it did.
func (f *fakeFleet) peersOn() map[netip.AddrPort]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	on := map[netip.AddrPort]int{}
	for _, m := range f.seen {
		for p := range m {
			on[p]++
		}
	}
	return on
}
