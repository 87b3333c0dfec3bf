package mmsg

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"trackd/internal/race"
)

// listen returns an unconnected UDP socket on addr, closed when the test
// ends.
func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatalf("ListenPacket(%s, %s): %v", network, addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// dial returns a UDP socket connected to the given port on host.
func dial(t testing.TB, network, host string, port int) *net.UDPConn {
	t.Helper()
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

func newConn(t testing.TB, c *net.UDPConn, batch, bufSize int) *Conn {
	t.Helper()
	m, err := New(c, batch, bufSize)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// forBoth runs f as a subtest with a Conn maker that is New, then Take.
func forBoth(t *testing.T, f func(t *testing.T, open func(testing.TB, *net.UDPConn, int, int) *Conn)) {
	t.Run("New", func(t *testing.T) { f(t, newConn) })
	t.Run("Take", func(t *testing.T) { f(t, takeConn) })
}

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

func addrPort(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func requireIPv6(t testing.TB) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback unavailable: %v", err)
	}
	c.Close()
}

// readOne reads with a 5 s deadline and returns the first datagram.
func readOne(t testing.TB, m *Conn) ([]byte, netip.AddrPort) {
	t.Helper()
	m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := m.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if n < 1 || n > m.Batch() {
		t.Fatalf("Read returned %d datagrams, batch %d", n, m.Batch())
	}
	return m.Message(0)
}

// recvString reads one datagram on a plain socket within 5 s.
func recvString(t testing.TB, c *net.UDPConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

// echoCase sends "ping" from client to the server Conn, checks the sender
// it reports, replies to it with Queue and Flush, and checks the reply
// arrives.
func echoCase(t *testing.T, server *Conn, client *net.UDPConn, wantFrom netip.AddrPort) {
	t.Helper()
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	data, from := readOne(t, server)
	if string(data) != "ping" {
		t.Errorf("read %q", data)
	}
	if from != wantFrom {
		t.Errorf("from %v, want %v", from, wantFrom)
	}
	server.Queue([]byte("pong"), from)
	if n, err := server.Flush(); n != 1 || err != nil {
		t.Fatalf("Flush: %d, %v", n, err)
	}
	if got := recvString(t, client); got != "pong" {
		t.Errorf("reply %q", got)
	}
}

func TestIPv4(t *testing.T) {
	forBoth(t, func(t *testing.T, open func(testing.TB, *net.UDPConn, int, int) *Conn) {
		s := listen(t, "udp4", "127.0.0.1:0")
		m := open(t, s, 8, 2048)
		c := dial(t, "udp4", "127.0.0.1", port(s))
		echoCase(t, m, c, addrPort(c))
		if _, from := m.Message(0); !from.Addr().Is4() {
			t.Errorf("IPv4 sender %v is not a 4-byte address", from)
		}
		// A v4-mapped destination works on an IPv4 socket too.
		c.Write([]byte("again"))
		_, from := readOne(t, m)
		m.Queue([]byte("mapped"), netip.AddrPortFrom(netip.AddrFrom16(from.Addr().As16()), from.Port()))
		if n, err := m.Flush(); n != 1 || err != nil {
			t.Fatalf("Flush: %d, %v", n, err)
		}
		if got := recvString(t, c); got != "mapped" {
			t.Errorf("reply %q", got)
		}
	})
}

func TestIPv6(t *testing.T) {
	requireIPv6(t)
	forBoth(t, func(t *testing.T, open func(testing.TB, *net.UDPConn, int, int) *Conn) {
		s := listen(t, "udp6", "[::1]:0")
		m := open(t, s, 8, 2048)
		c := dial(t, "udp6", "::1", port(s))
		echoCase(t, m, c, addrPort(c))
	})
}

// TestDualStack: on a dual-stack socket an IPv4 sender is reported as
// IPv4-mapped, and a reply reaches it whether addressed mapped or not.
func TestDualStack(t *testing.T) {
	requireIPv6(t)
	forBoth(t, func(t *testing.T, open func(testing.TB, *net.UDPConn, int, int) *Conn) {
		s := listen(t, "udp", ":0")
		if a := s.LocalAddr().(*net.UDPAddr); a.IP.To4() != nil {
			t.Skipf("no dual-stack socket here (bound %v)", a)
		}
		m := open(t, s, 8, 2048)
		c4 := dial(t, "udp4", "127.0.0.1", port(s))
		mapped := netip.AddrPortFrom(netip.AddrFrom16(addrPort(c4).Addr().As16()), addrPort(c4).Port())
		echoCase(t, m, c4, mapped)
		m.Queue([]byte("unmapped"), addrPort(c4))
		if n, err := m.Flush(); n != 1 || err != nil {
			t.Fatalf("Flush: %d, %v", n, err)
		}
		if got := recvString(t, c4); got != "unmapped" {
			t.Errorf("reply %q", got)
		}
		c6 := dial(t, "udp6", "::1", port(s))
		echoCase(t, m, c6, addrPort(c6))
	})
}

// TestManyDatagrams: 200 datagrams from 4 senders, fewer than 16 per
// sender unread at a time, are all read, each with its sender and bytes;
// on Linux some Read returns more than one.
func TestManyDatagrams(t *testing.T) {
	const senders, per, window = 4, 50, 16
	s := listen(t, "udp4", "127.0.0.1:0")
	s.SetReadBuffer(1 << 20)
	m := newConn(t, s, 16, 256)
	var cs []*net.UDPConn
	for range senders {
		cs = append(cs, dial(t, "udp4", "127.0.0.1", port(s)))
	}
	seen := map[string]netip.AddrPort{}
	most := 0
	for round := 0; round < per; round += window / senders {
		// Everything is sent before the reads: the datagrams wait in
		// the socket's buffer, where one recvmmsg takes many.
		for k := round; k < min(round+window/senders, per); k++ {
			for j, c := range cs {
				if _, err := c.Write([]byte(fmt.Sprintf("%d/%d", j, k))); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := min(window/senders, per-round) * senders
		for got := 0; got < want; {
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := m.Read()
			if err != nil {
				t.Fatalf("Read after %d datagrams: %v", len(seen), err)
			}
			most = max(most, n)
			for i := range n {
				data, from := m.Message(i)
				if m.Truncated(i) {
					t.Errorf("datagram %q truncated", data)
				}
				var j, k int
				if _, err := fmt.Sscanf(string(data), "%d/%d", &j, &k); err != nil || j >= senders {
					t.Fatalf("datagram %q", data)
				}
				if from != addrPort(cs[j]) {
					t.Errorf("datagram %q from %v, want %v", data, from, addrPort(cs[j]))
				}
				if _, dup := seen[string(data)]; dup {
					t.Errorf("datagram %q read twice", data)
				}
				seen[string(data)] = from
			}
			got += n
		}
	}
	if len(seen) != senders*per {
		t.Errorf("%d distinct datagrams read, want %d", len(seen), senders*per)
	}
	if runtime.GOOS == "linux" && most < 2 {
		t.Errorf("no Read returned more than one datagram")
	}
}

// TestFlushToManySenders: one Flush answers several senders, each with
// its own reply.
func TestFlushToManySenders(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	m := newConn(t, s, 8, 2048)
	var cs []*net.UDPConn
	for i := range 6 {
		c := dial(t, "udp4", "127.0.0.1", port(s))
		cs = append(cs, c)
		m.Queue([]byte(fmt.Sprint("reply ", i)), addrPort(c))
	}
	if m.Queued() != 6 {
		t.Errorf("Queued %d", m.Queued())
	}
	if n, err := m.Flush(); n != 6 || err != nil {
		t.Fatalf("Flush: %d, %v", n, err)
	}
	if m.Queued() != 0 {
		t.Errorf("Queued %d after Flush", m.Queued())
	}
	for i, c := range cs {
		if got, want := recvString(t, c), fmt.Sprint("reply ", i); got != want {
			t.Errorf("client %d got %q, want %q", i, got, want)
		}
		if err := m.Err(i); err != nil {
			t.Errorf("Err(%d) = %v", i, err)
		}
	}
}

// TestFlushSkipsRefused: datagrams the kernel refuses (port 0, an IPv6
// destination on an IPv4 socket, longer than UDP allows) are dropped, the
// others in the same Flush still sent, and Err tells which is which.
func TestFlushSkipsRefused(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	m := newConn(t, s, 8, 2048)
	a := dial(t, "udp4", "127.0.0.1", port(s))
	b := dial(t, "udp4", "127.0.0.1", port(s))
	zero := netip.MustParseAddrPort("127.0.0.1:0")
	huge := make([]byte, 70000)
	dests := []struct {
		to   netip.AddrPort
		data []byte
		ok   bool
	}{
		{zero, []byte("reply 0"), false},
		{addrPort(a), []byte("reply 1"), true},
		{netip.MustParseAddrPort("[::1]:9"), []byte("reply 2"), false},
		{addrPort(b), huge, false},
		{zero, []byte("reply 4"), false},
		{addrPort(b), []byte("reply 5"), true},
		{zero, []byte("reply 6"), false},
	}
	for _, d := range dests {
		m.Queue(d.data, d.to)
	}
	done := make(chan struct{})
	var sent int
	var err error
	go func() {
		sent, err = m.Flush()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Flush did not return")
	}
	if sent != 2 || err == nil {
		t.Errorf("Flush: %d, %v; want 2 and an error", sent, err)
	}
	for i, d := range dests {
		if e := m.Err(i); (e == nil) != d.ok {
			t.Errorf("Err(%d) = %v for %v", i, e, d.to)
		}
	}
	if got := recvString(t, a); got != "reply 1" {
		t.Errorf("a got %q", got)
	}
	if got := recvString(t, b); got != "reply 5" {
		t.Errorf("b got %q", got)
	}
}

// TestConnected: on a connected socket the zero AddrPort is the peer.
func TestConnected(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, "udp4", "127.0.0.1", port(s))
	m := newConn(t, c, 4, 2048)
	m.Queue([]byte("one"), netip.AddrPort{})
	m.Queue([]byte("two"), netip.AddrPort{})
	if n, err := m.Flush(); n != 2 || err != nil {
		t.Fatalf("Flush: %d, %v", n, err)
	}
	buf := make([]byte, 64)
	for _, want := range []string{"one", "two"} {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := s.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("server read %q, %v; want %q", buf[:n], err, want)
		}
		s.WriteToUDPAddrPort(append([]byte("re "), want...), from)
	}
	for got := 0; got < 2; {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := m.Read()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			data, from := m.Message(i)
			if from != addrPort(s) || !bytes.HasPrefix(data, []byte("re ")) {
				t.Errorf("read %q from %v", data, from)
			}
		}
		got += n
	}
}

// TestConnectionRefused: on a connected socket whose peer has no
// socket, the ICMP port unreachable a datagram brings back makes the
// next call fail with ECONNREFUSED: a Flush drops that one datagram and
// sends the rest; a Read reads nothing, and the socket reads on.
func TestConnectionRefused(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ICMP errors on connected UDP sockets are reported differently elsewhere")
	}
	gone := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, "udp4", "127.0.0.1", port(gone))
	gone.Close()
	m := newConn(t, c, 4, 2048)
	refused := func() {
		t.Helper()
		m.Queue([]byte("probe"), netip.AddrPort{})
		if n, err := m.Flush(); n != 1 || err != nil {
			t.Fatalf("Flush: %d, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond) // the ICMP error comes back
	}
	refused()
	for range 3 {
		m.Queue([]byte("x"), netip.AddrPort{})
	}
	n, err := m.Flush()
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(m.Err(0), syscall.ECONNREFUSED) || m.Err(1) != nil || n < 1 {
		t.Errorf("Flush with an error pending: %d, %v; Err(0) = %v, Err(1) = %v", n, err, m.Err(0), m.Err(1))
	}
	time.Sleep(50 * time.Millisecond) // the x sent bring errors back too
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := m.Read(); n != 0 || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Read with an error pending: %d, %v", n, err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := m.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read after the error: %v", err)
	}
}

// TestTruncated: a datagram longer than bufSize is cut, and said to be.
func TestTruncated(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	m := newConn(t, s, 4, 100)
	c := dial(t, "udp4", "127.0.0.1", port(s))
	for _, size := range []int{101, 100, 5000, 1} {
		c.Write(bytes.Repeat([]byte("x"), size))
		data, _ := readOne(t, m)
		if want := min(size, 100); len(data) != want {
			t.Errorf("datagram of %d bytes read as %d, want %d", size, len(data), want)
		}
		if m.Truncated(0) != (size > 100) {
			t.Errorf("datagram of %d bytes: Truncated = %v", size, m.Truncated(0))
		}
	}
}

func TestReadDeadline(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	m := newConn(t, s, 4, 2048)
	start := time.Now()
	s.SetReadDeadline(start.Add(50 * time.Millisecond))
	n, err := m.Read()
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read past the deadline: %d, %v", n, err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 3*time.Second {
		t.Errorf("Read returned after %v, deadline 50ms", d)
	}
	// A datagram waiting is read at once once the deadline is lifted.
	s.SetReadDeadline(time.Time{})
	c := dial(t, "udp4", "127.0.0.1", port(s))
	c.Write([]byte("late"))
	if data, _ := readOne(t, m); string(data) != "late" {
		t.Errorf("read %q", data)
	}
}

// TestClose: closing the socket (New) or the Conn (Take) wakes a blocked
// Read with net.ErrClosed; Read, Flush (and, for Take, Control and Close)
// after it fail the same way.
func TestClose(t *testing.T) {
	for _, take := range []bool{false, true} {
		t.Run(fmt.Sprint("take=", take), func(t *testing.T) {
			s := listen(t, "udp4", "127.0.0.1:0")
			var m *Conn
			closeIt := s.Close
			if take {
				m = takeConn(t, s, 4, 2048)
				closeIt = m.Close
			} else {
				m = newConn(t, s, 4, 2048)
			}
			done := make(chan error, 1)
			go func() {
				_, err := m.Read()
				done <- err
			}()
			time.Sleep(50 * time.Millisecond) // let it block
			if err := closeIt(); err != nil {
				t.Errorf("Close: %v", err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("blocked Read after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not wake Read")
			}
			if _, err := m.Read(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read after Close: %v", err)
			}
			m.Queue([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9"))
			m.Queue([]byte("y"), netip.MustParseAddrPort("127.0.0.1:9"))
			if n, err := m.Flush(); n != 0 || !errors.Is(err, net.ErrClosed) {
				t.Errorf("Flush after Close: %d, %v", n, err)
			}
			if err := m.Err(1); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Err(1) after Close: %v", err)
			}
			if !take {
				return
			}
			if err := m.Control(func(uintptr) { t.Error("Control ran f after Close") }); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Control after Close: %v", err)
			}
			if err := m.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestReadWhileFlushing: one goroutine may read while another queues and
// flushes on the same Conn (run with -race).
func TestReadWhileFlushing(t *testing.T) {
	const count = 200
	s := listen(t, "udp4", "127.0.0.1:0")
	s.SetReadBuffer(1 << 20)
	m := newConn(t, s, 8, 2048)
	peer := listen(t, "udp4", "127.0.0.1:0")
	peer.SetReadBuffer(1 << 20)
	c := dial(t, "udp4", "127.0.0.1", port(s))
	done := make(chan error, 1)
	go func() {
		msg := []byte("out")
		for sent := 0; sent < count; {
			for range min(8, count-sent) {
				m.Queue(msg, addrPort(peer))
			}
			n, err := m.Flush()
			if err != nil {
				done <- err
				return
			}
			sent += n
		}
		done <- nil
	}()
	for i := range count {
		c.Write([]byte(fmt.Sprint(i)))
	}
	for got := 0; got < count; {
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := m.Read()
		if err != nil {
			t.Fatalf("Read after %d: %v", got, err)
		}
		got += n
	}
	if err := <-done; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	buf := make([]byte, 64)
	for i := range count {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := peer.Read(buf); err != nil {
			t.Fatalf("peer got %d of %d: %v", i, count, err)
		}
	}
}

func TestNewAndQueueMisuse(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	for _, args := range [][2]int{{0, 10}, {10, 0}, {-1, 10}} {
		if _, err := New(s, args[0], args[1]); err == nil {
			t.Errorf("New(batch %d, bufSize %d) succeeded", args[0], args[1])
		}
	}
	if _, err := New(nil, 1, 1); err == nil {
		t.Error("New(nil) succeeded")
	}
	m := newConn(t, s, 2, 10)
	m.Queue(nil, addrPort(s))
	m.Queue(nil, addrPort(s))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Queue on a full queue did not panic")
			}
		}()
		m.Queue(nil, addrPort(s))
	}()
	// Empty datagrams are datagrams.
	if n, err := m.Flush(); n != 2 || err != nil {
		t.Errorf("Flush of two empty datagrams: %d, %v", n, err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := m.Read(); err != nil || n < 1 {
		t.Fatalf("Read: %d, %v", n, err)
	} else if data, _ := m.Message(0); len(data) != 0 {
		t.Errorf("empty datagram read as %q", data)
	}
}

// echoPair is a server Conn and a client Conn connected to it.
type echoPair struct {
	server, client *Conn
	sconn, cconn   *net.UDPConn
	reqs           [][]byte
	replies        [][]byte
}

// newEchoPair returns a server and a client Conn, made by Take if take,
// else by New.
func newEchoPair(t testing.TB, batch int, take bool) *echoPair {
	s := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, "udp4", "127.0.0.1", port(s))
	s.SetReadBuffer(1 << 20)
	c.SetReadBuffer(1 << 20)
	p := &echoPair{sconn: s, cconn: c}
	if take {
		p.server, p.client = takeConn(t, s, batch, 2048), takeConn(t, c, batch, 2048)
	} else {
		p.server, p.client = newConn(t, s, batch, 2048), newConn(t, c, batch, 2048)
	}
	for i := range batch {
		req := make([]byte, 98) // an announce's size
		req[0] = byte(i)
		p.reqs = append(p.reqs, req)
		p.replies = append(p.replies, make([]byte, 0, 2048))
	}
	return p
}

// round sends the batch from the client, echoes it from the server and
// reads the replies: per datagram, Read, Message, Queue and Flush on both
// sides. It returns the replies read.
func (p *echoPair) round(t testing.TB) int {
	for _, r := range p.reqs {
		p.client.Queue(r, netip.AddrPort{})
	}
	if _, err := p.client.Flush(); err != nil {
		t.Fatal(err)
	}
	for echoed := 0; echoed < len(p.reqs); {
		n, err := p.server.Read()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			data, from := p.server.Message(i)
			p.replies[i] = append(p.replies[i][:0], data...)
			p.server.Queue(p.replies[i], from)
		}
		if _, err := p.server.Flush(); err != nil {
			t.Fatal(err)
		}
		echoed += n
	}
	got := 0
	for got < len(p.reqs) {
		n, err := p.client.Read()
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	return got
}

// TestNoAllocs: a whole cycle of Read, Message, Queue and Flush allocates
// nothing, on either side of the exchange.
func TestNoAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector allocates")
	}
	for _, take := range []bool{false, true} {
		p := newEchoPair(t, 16, take)
		p.sconn.SetReadDeadline(time.Now().Add(time.Minute))
		p.cconn.SetReadDeadline(time.Now().Add(time.Minute))
		p.round(t)
		allocs := testing.AllocsPerRun(200, func() { p.round(t) })
		if allocs != 0 {
			t.Errorf("take %v: %.2f allocations per round of %d datagrams each way, want 0", take, allocs, len(p.reqs))
		}
	}
}

// BenchmarkEcho: round trips of batches of datagrams between two Conns on
// the loopback; ns/op and allocs/op are per datagram (sent, echoed and
// read back: four system calls' share each).
func BenchmarkEcho(b *testing.B) {
	for _, c := range []struct {
		batch int
		take  bool
	}{{1, false}, {8, false}, {32, false}, {32, true}} {
		name := fmt.Sprint("batch=", c.batch)
		if c.take {
			name += "/take"
		}
		b.Run(name, func(b *testing.B) {
			batch := c.batch
			p := newEchoPair(b, batch, c.take)
			p.sconn.SetReadDeadline(time.Now().Add(time.Hour))
			p.cconn.SetReadDeadline(time.Now().Add(time.Hour))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				p.round(b)
			}
		})
	}
}
