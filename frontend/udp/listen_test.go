package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"trackd/internal/race"
	"trackd/mmsg"
)

// echoHandler replies with the request, except to "drop" (no reply) and
// "panic" (a panic); it remembers the last sender and context it saw.
type echoHandler struct {
	mu      sync.Mutex
	from    netip.AddrPort
	ctx     context.Context
	handled atomic.Int64
}

func (h *echoHandler) Handle(ctx context.Context, from netip.AddrPort, req, out []byte) []byte {
	h.handled.Add(1)
	h.mu.Lock()
	h.from, h.ctx = from, ctx
	h.mu.Unlock()
	switch string(req) {
	case "drop":
		return out[:0]
	case "panic":
		panic("boom")
	}
	return append(out[:0], req...)
}

func (h *echoHandler) last() (netip.AddrPort, context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.from, h.ctx
}

// listen starts a Server on addr and closes it when the test ends.
func startServer(t testing.TB, addr string, h PacketHandler, opts ServeOptions) *Server {
	t.Helper()
	if opts.Logger == nil {
		w := &testLogWriter{t: t}
		t.Cleanup(func() {
			w.mu.Lock()
			w.done = true
			w.mu.Unlock()
		})
		opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := Listen(addr, h, opts)
	if err != nil {
		t.Fatalf("Listen(%q): %v", addr, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testLogWriter sends log lines to the test log while the test runs.
type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// requireIPv6Loopback skips t when ::1 cannot be bound.
func requireIPv6Loopback(t testing.TB) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback unavailable: %v", err)
	}
	c.Close()
}

// dial returns a UDP socket on laddr's loopback connected to the Server's
// port on host, closed when the test ends.
func dialServer(t testing.TB, network, host string, s *Server) *net.UDPConn {
	t.Helper()
	port := s.Addr().(*net.UDPAddr).Port
	raddr, err := net.ResolveUDPAddr(network, net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP(network, nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoRoundTrip sends msg on c and returns the reply, failing t if none comes
// within 5 s.
func echoRoundTrip(t testing.TB, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

// expectNoReply fails t if c receives anything within d.
func expectNoReply(t testing.TB, c *net.UDPConn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("unexpected reply %q", buf[:n])
	}
}

// listenUDP returns an unconnected IPv4 loopback socket, closed when the
// test ends.
func listenUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

func localAddrPort(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestEchoIPv4(t *testing.T) {
	h := &echoHandler{}
	s := startServer(t, "127.0.0.1:0", h, ServeOptions{Sockets: 2})
	a := s.Addr().(*net.UDPAddr)
	if a.Port == 0 || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("Addr %v, want 127.0.0.1 and a port", a)
	}
	c := dialServer(t, "udp4", "127.0.0.1", s)
	if got := echoRoundTrip(t, c, "hello"); got != "hello" {
		t.Errorf("reply %q", got)
	}
	if from, _ := h.last(); from != localAddrPort(c) || !from.Addr().Is4() {
		t.Errorf("handler saw sender %v, want %v", from, localAddrPort(c))
	}
}

func TestEchoIPv6(t *testing.T) {
	requireIPv6Loopback(t)
	h := &echoHandler{}
	s := startServer(t, "[::1]:0", h, ServeOptions{Sockets: 2})
	a := s.Addr().(*net.UDPAddr)
	if a.Port == 0 || !a.IP.Equal(net.IPv6loopback) {
		t.Fatalf("Addr %v, want [::1] and a port", a)
	}
	c := dialServer(t, "udp6", "::1", s)
	if got := echoRoundTrip(t, c, "hello6"); got != "hello6" {
		t.Errorf("reply %q", got)
	}
	if from, _ := h.last(); from != localAddrPort(c) || from.Addr() != netip.IPv6Loopback() {
		t.Errorf("handler saw sender %v, want %v", from, localAddrPort(c))
	}
	// An IPv6-only socket: IPv4 does not reach it.
	c4 := dialServer(t, "udp4", "127.0.0.1", s)
	c4.Write([]byte("v4?"))
	expectNoReply(t, c4, 200*time.Millisecond)
}

// TestDualStack: ":0" is one IPv6 socket per slot that IPv4 reaches too;
// the handler sees IPv4 senders as IPv4-mapped addresses, and the replies
// get back to them.
func TestDualStack(t *testing.T) {
	requireIPv6Loopback(t)
	h := &echoHandler{}
	s := startServer(t, ":0", h, ServeOptions{Sockets: 2})
	if a := s.Addr().(*net.UDPAddr); !a.IP.Equal(net.IPv6unspecified) {
		t.Fatalf("Addr %v, want the IPv6 wildcard", a)
	}
	c4 := dialServer(t, "udp4", "127.0.0.1", s)
	if got := echoRoundTrip(t, c4, "over v4"); got != "over v4" {
		t.Errorf("v4 reply %q", got)
	}
	from, _ := h.last()
	if !from.Addr().Is4In6() || from.Addr().Unmap() != netip.MustParseAddr("127.0.0.1") || from.Port() != localAddrPort(c4).Port() {
		t.Errorf("handler saw v4 sender as %v, want ::ffff:127.0.0.1 port %d", from, localAddrPort(c4).Port())
	}
	c6 := dialServer(t, "udp6", "::1", s)
	if got := echoRoundTrip(t, c6, "over v6"); got != "over v6" {
		t.Errorf("v6 reply %q", got)
	}
	if from, _ := h.last(); from != localAddrPort(c6) {
		t.Errorf("handler saw v6 sender %v, want %v", from, localAddrPort(c6))
	}
}

// TestSocketsSharePort: Sockets: 4 binds four sockets to one port, and the
// kernel spreads clients over them.
func TestSocketsSharePort(t *testing.T) {
	h := &echoHandler{}
	s := startServer(t, "127.0.0.1:0", h, ServeOptions{Sockets: 4})
	if len(s.readers) != 4 {
		t.Fatalf("%d sockets, want 4", len(s.readers))
	}
	// The kernel hashes the sender's address to pick a socket: 16 clients
	// all landing on one of 4 sockets has odds of 4^-15.
	for i := range 16 {
		c := dialServer(t, "udp4", "127.0.0.1", s)
		if got := echoRoundTrip(t, c, fmt.Sprint("client ", i)); got != fmt.Sprint("client ", i) {
			t.Fatalf("reply %q", got)
		}
	}
	used := 0
	for _, r := range s.readers {
		if r.packets.Load() > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("16 clients reached %d of 4 sockets", used)
	}
}

func TestDefaultsOneSocketPerCPU(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", &echoHandler{}, ServeOptions{})
	if want := runtime.GOMAXPROCS(0); len(s.readers) != want {
		t.Errorf("%d sockets, want GOMAXPROCS = %d", len(s.readers), want)
	}
	if b := s.readers[0].c.Batch(); b != defaultBatch {
		t.Errorf("batch %d, want %d", b, defaultBatch)
	}
}

// TestBurst: 2000 packets from 8 clients, each keeping up to 32 in flight,
// are all answered.
func TestBurst(t *testing.T) {
	const clients, perClient, window = 8, 250, 32
	h := &echoHandler{}
	s := startServer(t, "127.0.0.1:0", h, ServeOptions{Sockets: 4, Batch: 16})
	var wg sync.WaitGroup
	got := make([]int, clients)
	for id := range clients {
		c := dialServer(t, "udp4", "127.0.0.1", s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[id] = burstClient(c, id, perClient, window, 15*time.Second)
		}()
	}
	wg.Wait()
	total := 0
	for id, n := range got {
		total += n
		if n != perClient {
			t.Errorf("client %d: %d of %d answered", id, n, perClient)
		}
	}
	if total != clients*perClient {
		t.Errorf("%d of %d packets answered (handler saw %d)", total, clients*perClient, h.handled.Load())
	}
}

// burstClient sends n numbered packets on c, at most window unanswered at
// a time, and returns how many distinct ones were echoed before timeout.
func burstClient(c *net.UDPConn, id, n, window int, timeout time.Duration) int {
	c.SetDeadline(time.Now().Add(timeout))
	seen := make([]bool, n)
	pkt := make([]byte, 100)
	buf := make([]byte, 256)
	sent, got := 0, 0
	for got < n {
		for ; sent < n && sent-got < window; sent++ {
			binary.BigEndian.PutUint32(pkt[0:], uint32(id))
			binary.BigEndian.PutUint32(pkt[4:], uint32(sent))
			if _, err := c.Write(pkt); err != nil {
				return got
			}
		}
		k, err := c.Read(buf)
		if err != nil {
			return got
		}
		if k != len(pkt) || binary.BigEndian.Uint32(buf) != uint32(id) {
			continue
		}
		if seq := binary.BigEndian.Uint32(buf[4:]); int(seq) < n && !seen[seq] {
			seen[seq] = true
			got++
		}
	}
	return got
}

// TestNoReplyForEmpty: an empty result from the handler sends nothing;
// the next packet is answered as usual.
func TestNoReplyForEmpty(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", &echoHandler{}, ServeOptions{Sockets: 1})
	c := dialServer(t, "udp4", "127.0.0.1", s)
	c.Write([]byte("drop"))
	expectNoReply(t, c, 200*time.Millisecond)
	if got := echoRoundTrip(t, c, "after"); got != "after" {
		t.Errorf("reply %q", got)
	}
}

// TestHandlerPanic: a panic is logged and answers nothing; the reader goes
// on.
func TestHandlerPanic(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	s := startServer(t, "127.0.0.1:0", &echoHandler{}, ServeOptions{Sockets: 1, Logger: logger})
	c := dialServer(t, "udp4", "127.0.0.1", s)
	c.Write([]byte("panic"))
	expectNoReply(t, c, 200*time.Millisecond)
	if got := echoRoundTrip(t, c, "still there"); got != "still there" {
		t.Errorf("reply %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "handler panic") || !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged: %q", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestOversizePacketDropped: a datagram longer than the read buffer is cut
// by the kernel; it is not handed to the handler.
func TestOversizePacketDropped(t *testing.T) {
	h := &echoHandler{}
	s := startServer(t, "127.0.0.1:0", h, ServeOptions{Sockets: 1})
	c := dialServer(t, "udp4", "127.0.0.1", s)
	c.Write(bytes.Repeat([]byte("x"), recvBufSize+1))
	expectNoReply(t, c, 200*time.Millisecond)
	if n := h.handled.Load(); n != 0 {
		t.Errorf("handler called %d times for a cut datagram", n)
	}
	big := strings.Repeat("y", recvBufSize)
	if got := echoRoundTrip(t, c, big); got != big {
		t.Errorf("a datagram of exactly %d bytes: reply of %d bytes", recvBufSize, len(got))
	}
}

// TestBigReply: a reply longer than the reply buffer (the handler grows it)
// is sent whole.
func TestBigReply(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", packetHandlerFunc(func(_ context.Context, _ netip.AddrPort, req, out []byte) []byte {
		for range 3 {
			out = append(out, bytes.Repeat(req, replyBufSize/len(req))...)
		}
		return out
	}), ServeOptions{Sockets: 1})
	c := dialServer(t, "udp4", "127.0.0.1", s)
	for range 2 {
		if got := echoRoundTrip(t, c, "z"); len(got) != 3*replyBufSize {
			t.Errorf("reply of %d bytes, want %d", len(got), 3*replyBufSize)
		}
	}
}

type packetHandlerFunc func(ctx context.Context, from netip.AddrPort, req, out []byte) []byte

func (f packetHandlerFunc) Handle(ctx context.Context, from netip.AddrPort, req, out []byte) []byte {
	return f(ctx, from, req, out)
}

// TestClose: Close returns quickly with every reader blocked in recvmmsg,
// cancels the handler's context, frees the port, and can be called again.
func TestClose(t *testing.T) {
	h := &echoHandler{}
	s, err := Listen("127.0.0.1:0", h, ServeOptions{Sockets: 4})
	if err != nil {
		t.Fatal(err)
	}
	c := dialServer(t, "udp4", "127.0.0.1", s)
	echoRoundTrip(t, c, "before")
	_, ctx := h.last()
	if ctx.Err() != nil {
		t.Fatal("handler context done before Close")
	}
	addr := s.Addr().String()
	time.Sleep(50 * time.Millisecond) // let the readers block again
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if ctx.Err() == nil {
		t.Error("handler context not canceled by Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The port is free again.
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Errorf("port still held after Close: %v", err)
	} else {
		pc.Close()
	}
}

// TestCloseUnderLoad: Close while packets keep coming returns, and no
// reader is left running.
func TestCloseUnderLoad(t *testing.T) {
	s, err := Listen("127.0.0.1:0", &echoHandler{}, ServeOptions{Sockets: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := dialServer(t, "udp4", "127.0.0.1", s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Write([]byte("load"))
		}
	}()
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close under load did not return within 5s")
	}
	close(stop)
	wg.Wait()
}

// TestPortInUse: an address something else holds is refused, whether that
// is a plain socket or another Server (which sets SO_REUSEPORT).
func TestPortInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if s, err := Listen(pc.LocalAddr().String(), &echoHandler{}, ServeOptions{Sockets: 2}); err == nil {
		s.Close()
		t.Error("Listen on a port a plain socket holds succeeded")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("err = %v, want EADDRINUSE", err)
	}
	s := startServer(t, "127.0.0.1:0", &echoHandler{}, ServeOptions{Sockets: 2})
	if s2, err := Listen(s.Addr().String(), &echoHandler{}, ServeOptions{Sockets: 2}); err == nil {
		s2.Close()
		t.Error("a second Server joined the first one's port")
	}
}

func TestListenErrors(t *testing.T) {
	for _, addr := range []string{"nonsense", "127.0.0.1:notaport", "127.0.0.1:70000"} {
		if s, err := Listen(addr, &echoHandler{}, ServeOptions{}); err == nil {
			s.Close()
			t.Errorf("Listen(%q) succeeded", addr)
		}
	}
	if _, err := Listen("127.0.0.1:0", nil, ServeOptions{}); err == nil {
		t.Error("Listen with a nil handler succeeded")
	}
}

// TestWriteSkipsRefusedDestination: a reply the kernel refuses to send
// (port 0, an IPv6 address on an IPv4 socket) is dropped, and the replies
// after it in the batch still go out.
func TestWriteSkipsRefusedDestination(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", &echoHandler{}, ServeOptions{Sockets: 1})
	// A reader of its own, on a socket of its own, that the test drives.
	r, err := newSockReader(s, listenUDP(t), 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.c.Close() })
	a, b := listenUDP(t), listenUDP(t)
	dests := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:0"),
		localAddrPort(a),
		netip.MustParseAddrPort("[::1]:9"),
		netip.MustParseAddrPort("127.0.0.1:0"),
		localAddrPort(b),
		netip.MustParseAddrPort("127.0.0.1:0"),
	}
	for i, d := range dests {
		r.c.Queue([]byte(fmt.Sprint("reply ", i)), d)
		r.to[i] = d
	}
	done := make(chan struct{})
	go func() {
		r.write()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("write did not return")
	}
	for c, want := range map[*net.UDPConn]string{a: "reply 1", b: "reply 4"} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// TestSocketLoopAllocs: the whole path of a packet through a Server, from
// recvmmsg through the handler to sendmmsg, allocates nothing. The test
// counts every allocation in the process while a client (itself batched,
// through package mmsg, which allocates nothing either) sends batches of
// requests and reads the replies.
func TestSocketLoopAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	const batch = 8
	h := packetHandlerFunc(func(_ context.Context, from netip.AddrPort, req, out []byte) []byte {
		if !from.IsValid() {
			return nil
		}
		return append(out, req...)
	})
	s := startServer(t, "127.0.0.1:0", h, ServeOptions{Sockets: 1, Batch: batch})
	c := dialServer(t, "udp4", "127.0.0.1", s)
	c.SetReadBuffer(1 << 20)
	mc, err := mmsg.New(c, batch, 2048)
	if err != nil {
		t.Fatal(err)
	}
	reqs := make([][]byte, batch)
	for i := range reqs {
		reqs[i] = []byte(fmt.Sprintf("request %d of some bytes", i))
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	round := func() {
		for _, r := range reqs {
			mc.Queue(r, netip.AddrPort{})
		}
		if _, err := mc.Flush(); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < batch; {
			n, err := mc.Read()
			if err != nil {
				t.Fatalf("%d of %d replies: %v", got, batch, err)
			}
			for i := range n {
				if data, _ := mc.Message(i); !bytes.HasPrefix(data, []byte("request ")) {
					t.Fatalf("reply %q", data)
				}
			}
			got += n
		}
	}
	round()
	allocs := testing.AllocsPerRun(200, round)
	if allocs != 0 {
		t.Errorf("%.2f allocations per round of %d packets, want 0", allocs, batch)
	}
	if n := s.readers[0].packets.Load(); n != 202*batch { // AllocsPerRun runs one more, to warm up
		t.Errorf("server read %d packets, want %d", n, 202*batch)
	}
}

// TestPortZeroSenderIgnored: a datagram from port 0 (which no reply could
// reach) is not handed to the handler. Only a raw socket can send one, so
// the test needs CAP_NET_RAW and is skipped without it.
func TestPortZeroSenderIgnored(t *testing.T) {
	h := &echoHandler{}
	s := startServer(t, "127.0.0.1:0", h, ServeOptions{Sockets: 1})
	raw, err := net.ListenPacket("ip4:udp", "127.0.0.1")
	if err != nil {
		t.Skipf("no raw socket: %v", err)
	}
	defer raw.Close()
	dst := uint16(s.Addr().(*net.UDPAddr).Port)
	send := func(src uint16, payload string) {
		pkt := make([]byte, 8, 8+len(payload))
		binary.BigEndian.PutUint16(pkt[0:], src)
		binary.BigEndian.PutUint16(pkt[2:], dst)
		binary.BigEndian.PutUint16(pkt[4:], uint16(8+len(payload)))
		// Checksum 0: none, which IPv4 allows.
		pkt = append(pkt, payload...)
		if _, err := raw.WriteTo(pkt, &net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatalf("raw write: %v", err)
		}
	}
	send(0, "from port 0")
	// Then one from a real port, behind it in the socket's queue: once
	// it is handled, the first was read too.
	send(40000, "from port 40000")
	deadline := time.Now().Add(5 * time.Second)
	for h.handled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if n := h.handled.Load(); n != 1 {
		t.Fatalf("handler called %d times, want once (not for port 0)", n)
	}
	if from, _ := h.last(); from.Port() != 40000 {
		t.Errorf("handler saw a packet from %v, want port 40000", from)
	}
}

// BenchmarkLoopbackEcho measures round trips through a one-socket Server
// with a trivial handler: a client sends batches of 32 packets of 98 bytes
// (an announce's size) with sendmmsg and reads the 32 replies. ns/op and
// allocs/op are per packet; allocs/op counts the Server's and the
// client's (none either way). The sub-benchmark plain is the same
// client against the simplest server, one ReadFromUDPAddrPort and one
// WriteToUDPAddrPort per packet, for comparison.
func BenchmarkLoopbackEcho(b *testing.B) {
	b.Run("server", func(b *testing.B) {
		s, err := Listen("127.0.0.1:0", packetHandlerFunc(func(_ context.Context, _ netip.AddrPort, req, out []byte) []byte {
			return append(out, req...)
		}), ServeOptions{Sockets: 1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchEchoClient(b, s.Addr().(*net.UDPAddr))
	})
	b.Run("plain", func(b *testing.B) {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, recvBufSize)
			for {
				n, from, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				pc.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
		benchEchoClient(b, pc.LocalAddr().(*net.UDPAddr))
	})
}

func benchEchoClient(b *testing.B, addr *net.UDPAddr) {
	const batch = 32
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 98)}
	}
	buf := make([]byte, 2048) // one read per reply: no allocation
	lost := 0
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		for sent := 0; sent < n; {
			k, err := pc.WriteBatch(ms[sent:n], 0)
			if err != nil {
				b.Fatal(err)
			}
			sent += k
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for i := 0; i < n; i++ {
			if _, err := c.Read(buf); err != nil {
				lost += n - i
				break
			}
		}
		done += n
	}
	b.StopTimer()
	if lost > 0 {
		b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
	}
}
