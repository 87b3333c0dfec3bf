package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"trackd/bencode"
	"trackd/config"
)

// Plain-HTTP checks of trackd's address families over real sockets: a
// listener on IPv6 loopback, and one listener reached over both families.

// requireIPv6Loopback skips t when ::1 cannot be bound (IPv6 off in the
// kernel or the container). This is a property of the machine, not an
// external program, so TRACKD_REQUIRE_EXTERNAL does not turn it into a
// failure.
func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback unavailable: %v", err)
	}
	ln.Close()
}

// httpAnnounce is one announce made by hand with net/http.
type httpAnnounce struct {
	infoHash [20]byte
	port     int
	left     int
	compact  bool
	ip       string // the "ip" parameter, if not empty
}

// do sends a to the tracker at base (such as "http://[::1]:1234") and
// returns the decoded reply. It fails t on a failure reason or a reply that
// is not canonical bencode.
func (a httpAnnounce) do(ctx context.Context, t *testing.T, hc *http.Client, base string) map[string]any {
	t.Helper()
	peerID := fmt.Sprintf("-E2E6-%014d", a.port)
	q := "info_hash=" + url.QueryEscape(string(a.infoHash[:])) +
		"&peer_id=" + url.QueryEscape(peerID) +
		"&port=" + strconv.Itoa(a.port) +
		"&uploaded=0&downloaded=0&left=" + strconv.Itoa(a.left)
	if a.compact {
		q += "&compact=1"
	} else {
		q += "&compact=0"
	}
	if a.ip != "" {
		q += "&ip=" + url.QueryEscape(a.ip)
	}
	reply := httpGet(ctx, t, hc, base+"/announce?"+q)
	if fr, ok := reply["failure reason"]; ok {
		t.Fatalf("announce of port %d to %s: failure reason %q", a.port, base, fr)
	}
	return reply
}

// httpGet fetches url and decodes the reply as a bencoded dictionary.
func httpGet(ctx context.Context, t *testing.T, hc *http.Client, url string) map[string]any {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %q", url, resp.Status, body)
	}
	v, err := bencode.Decode(body)
	if err != nil {
		t.Fatalf("GET %s: reply %q is not canonical bencode: %v", url, body, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("GET %s: reply is a %T, want a dictionary", url, v)
	}
	return d
}

// compactPeers decodes a reply's "peers" (v6 false) or "peers6" (v6 true)
// string, sorted. A missing key is no peers.
func compactPeers(t *testing.T, reply map[string]any, v6 bool) []string {
	t.Helper()
	key, size := "peers", 6
	if v6 {
		key, size = "peers6", 18
	}
	v, ok := reply[key]
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s is a %T, want a compact string", key, v)
	}
	if len(s)%size != 0 {
		t.Fatalf("%s has %d bytes, not a multiple of %d", key, len(s), size)
	}
	var out []string
	for i := 0; i < len(s); i += size {
		b := []byte(s[i : i+size])
		addr, _ := netip.AddrFromSlice(b[:size-2])
		if !v6 && !addr.Is4() || v6 && !addr.Is6() {
			t.Errorf("%s entry %x is not of its family", key, b)
		}
		out = append(out, netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[size-2:])).String())
	}
	slices.Sort(out)
	return out
}

// checkPeers fails t unless reply's peers and peers6 are exactly v4 and v6.
func checkPeers(t *testing.T, step string, reply map[string]any, v4, v6 []string) {
	t.Helper()
	slices.Sort(v4)
	slices.Sort(v6)
	if got := compactPeers(t, reply, false); !slices.Equal(got, v4) {
		t.Errorf("%s: peers %q, want %q", step, got, v4)
	}
	if got := compactPeers(t, reply, true); !slices.Equal(got, v6) {
		t.Errorf("%s: peers6 %q, want %q", step, got, v6)
	}
	if _, ok := reply["peers"]; !ok {
		t.Errorf("%s: no peers key (BEP 23 wants it even when empty)", step)
	}
}

// checkExternalIP fails t unless the reply's "external ip" is want in its
// family's byte form (4 or 16 bytes).
func checkExternalIP(t *testing.T, step string, reply map[string]any, want netip.Addr) {
	t.Helper()
	got, _ := reply["external ip"].(string)
	if w := string(want.AsSlice()); got != w {
		t.Errorf("%s: external ip %x, want %x (%s)", step, got, w, want)
	}
}

func newLoopbackHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestHTTPIPv6Loopback runs trackd on [::1] only: it serves announces and
// scrapes over IPv6, gives IPv6 peers in peers6 (BEP 7) with an empty
// peers, and puts an IPv4 peer (announced with a trusted "ip" parameter,
// since nothing can reach this listener over IPv4) in peers.
func TestHTTPIPv6Loopback(t *testing.T) {
	requireIPv6Loopback(t)
	ctx := deadline(t, 20*time.Second)
	srv := startTracker(t, func(c *config.Config) {
		c.HTTP = "[::1]:0"
		c.TrustIPParam = []string{"::1"}
	})
	addr := srv.HTTPAddr().(*net.TCPAddr)
	if addr.IP.To4() != nil || !addr.IP.IsLoopback() {
		t.Fatalf("listening on %s, want [::1]", addr)
	}
	base := "http://" + addr.String()
	hc := newLoopbackHTTPClient(t)
	ih := [20]byte{0: 6, 19: 6}
	ann := func(port int, ip string) httpAnnounce {
		return httpAnnounce{infoHash: ih, port: port, left: 100, compact: true, ip: ip}
	}
	loop6 := netip.IPv6Loopback()

	r := ann(53001, "").do(ctx, t, hc, base)
	checkPeers(t, "first peer", r, nil, nil)
	checkExternalIP(t, "first peer", r, loop6)

	r = ann(53002, "").do(ctx, t, hc, base)
	checkPeers(t, "second v6 peer", r, nil, []string{"[::1]:53001"})

	// An IPv4 peer, by trusted ip parameter.
	r = ann(53003, "127.0.0.1").do(ctx, t, hc, base)
	checkPeers(t, "v4 peer by ip parameter", r, nil, []string{"[::1]:53001", "[::1]:53002"})
	// external ip is where the request came from, not the ip parameter.
	checkExternalIP(t, "v4 peer by ip parameter", r, loop6)

	r = ann(53004, "").do(ctx, t, hc, base)
	checkPeers(t, "third v6 peer", r, []string{"127.0.0.1:53003"}, []string{"[::1]:53001", "[::1]:53002"})
	if r["complete"] != int64(0) || r["incomplete"] != int64(4) {
		t.Errorf("complete=%v incomplete=%v, want 0 and 4", r["complete"], r["incomplete"])
	}

	// Non-compact: addresses as text.
	nc := ann(53005, "")
	nc.compact = false
	got := nonCompactPeers(t, nc.do(ctx, t, hc, base))
	want := []string{"127.0.0.1:53003", "[::1]:53001", "[::1]:53002", "[::1]:53004"}
	if !slices.Equal(got, want) {
		t.Errorf("non-compact peers %q, want %q", got, want)
	}

	// Scrape over IPv6.
	s := httpGet(ctx, t, hc, base+"/scrape?info_hash="+url.QueryEscape(string(ih[:])))
	files, _ := s["files"].(map[string]any)
	f, _ := files[string(ih[:])].(map[string]any)
	if f["complete"] != int64(0) || f["incomplete"] != int64(5) || f["downloaded"] != int64(0) {
		t.Errorf("scrape over IPv6: %v, want complete 0, incomplete 5, downloaded 0", s)
	}
}

// TestHTTPDualStack reaches one trackd listener over IPv4 and IPv6: a peer
// that announced over IPv4 is in an IPv6 requester's compact "peers", and a
// peer that announced over IPv6 is in an IPv4 requester's "peers6".
//
// One listener receives both families only if it is the dual-stack wildcard
// "[::]:0", so trackd binds that here; every request still goes to
// 127.0.0.1 or ::1 and nothing leaves the machine. IPv4 clients reach it as
// IPv4-mapped IPv6 addresses, which trackd must unmap.
func TestHTTPDualStack(t *testing.T) {
	requireIPv6Loopback(t)
	ctx := deadline(t, 20*time.Second)
	srv := startTracker(t, func(c *config.Config) { c.HTTP = "[::]:0" })
	port := srv.HTTPAddr().(*net.TCPAddr).Port
	hc := newLoopbackHTTPClient(t)
	base4 := "http://127.0.0.1:" + strconv.Itoa(port)
	base6 := "http://[::1]:" + strconv.Itoa(port)
	ih := [20]byte{0: 46, 19: 46}
	ann := func(port int) httpAnnounce {
		return httpAnnounce{infoHash: ih, port: port, left: 100, compact: true}
	}
	loop4, loop6 := netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()

	r := ann(52001).do(ctx, t, hc, base4)
	checkPeers(t, "v4 peer", r, nil, nil)
	checkExternalIP(t, "v4 peer", r, loop4)

	r = ann(52002).do(ctx, t, hc, base6)
	checkPeers(t, "v6 peer", r, []string{"127.0.0.1:52001"}, nil)
	checkExternalIP(t, "v6 peer", r, loop6)

	r = ann(52003).do(ctx, t, hc, base4)
	checkPeers(t, "second v4 peer", r, []string{"127.0.0.1:52001"}, []string{"[::1]:52002"})
	checkExternalIP(t, "second v4 peer", r, loop4)

	r = ann(52001).do(ctx, t, hc, base4)
	checkPeers(t, "v4 peer again", r, []string{"127.0.0.1:52003"}, []string{"[::1]:52002"})
	if r["complete"] != int64(0) || r["incomplete"] != int64(3) {
		t.Errorf("complete=%v incomplete=%v, want 0 and 3 (a re-announce is not a new peer)", r["complete"], r["incomplete"])
	}
}
