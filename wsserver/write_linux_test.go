package wsserver

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The event loop's deferred writes (epoll_linux.go): what a pass sends to
// one connection is written at its end in one system call, in order, and
// MaxQueueBytes still bounds what the socket does not take.

// numbered is message i of a burst to, padded to size bytes.
func numbered(to string, i, size int) string {
	m := fmt.Sprintf("%s %05d ", to, i)
	return m + strings.Repeat("x", max(size-len(m), 0))
}

// burstHandler's Sessions, on "burst N SIZE", send N numbered messages
// of SIZE bytes to their own connection and to the other connection
// (other), interleaved, from the loop's pass; on "flood N SIZE", to the
// other only, and reply "flooded"; other messages are echoed.
func burstHandler(other *atomic.Pointer[Conn]) *testHandler {
	h := newTestHandler()
	h.onMessage = func(c Conn, msg []byte) {
		var n, size int
		if _, err := fmt.Sscanf(string(msg), "flood %d %d", &n, &size); err == nil {
			o := *other.Load()
			for i := range n {
				o.Send([]byte(numbered("other", i, size)))
			}
			c.Send([]byte("flooded"))
			return
		}
		if _, err := fmt.Sscanf(string(msg), "burst %d %d", &n, &size); err != nil {
			c.Send(msg)
			return
		}
		o := *other.Load()
		for i := range n {
			c.Send([]byte(numbered("self", i, size)))
			o.Send([]byte(numbered("other", i, size)))
		}
	}
	return h
}

// TestCoalesce: the messages one pass sends to a connection reach it in
// order and cost one write per connection, not one per message.
func TestCoalesce(t *testing.T) {
	var other atomic.Pointer[Conn]
	h := burstHandler(&other)
	s, url, d := setup{name: "epoll"}.start(t, h, Options{Loops: 1})
	if s.loops == nil {
		t.Skip("no event loops here")
	}
	a := dial(t, url, d)
	waitConn(t, h.opened, "a")
	b := dial(t, url, d)
	bc := waitConn(t, h.opened, "b")
	other.Store(&bc)
	a.echo("warm") // both registered on the loop
	l := s.loops.ls[0]
	for _, size := range []int{10, 300, 2000} {
		w0 := l.writes.Load()
		const n = 20
		a.text(fmt.Sprintf("burst %d %d", n, size))
		for i := range n {
			a.expectText(numbered("self", i, size))
		}
		for i := range n {
			b.expectText(numbered("other", i, size))
		}
		if w := l.writes.Load() - w0; w != 2 {
			t.Errorf("%d messages of %d bytes to each of 2 connections in one pass: %d writes, want 2", n, size, w)
		}
	}
	b.echo("still open")
}

// TestCoalesceBound: a pass may send more than MaxQueueBytes to a
// connection that reads (the deferred bytes are offered to the socket
// before the bound is applied, and only what it refuses counts), in
// order; a connection that does not read is closed once its queue
// passes the bound, and the others go on.
func TestCoalesceBound(t *testing.T) {
	var other atomic.Pointer[Conn]
	h := burstHandler(&other)
	const bound = 8 << 10
	s, url, d := setup{name: "epoll"}.start(t, h, Options{Loops: 1, MaxQueueBytes: bound})
	if s.loops == nil {
		t.Skip("no event loops here")
	}
	a := dial(t, url, d)
	waitConn(t, h.opened, "a")
	slow := dial(t, url, d) // never reads
	slowConn := waitConn(t, h.opened, "slow")
	other.Store(&slowConn)
	a.echo("warm")

	// 3 × the bound to each, in one pass: the socket of a takes it.
	const size = 1000
	n := 3 * bound / size
	a.text(fmt.Sprintf("burst %d %d", n, size))
	for i := range n {
		a.expectText(numbered("self", i, size))
	}
	a.echo("a is open")

	// Floods until slow's socket and then its queue are full: it is
	// closed, and a is answered meanwhile.
	closed := false
	for round := 0; round < 200 && !closed; round++ {
		a.text("flood 16 4000")
		a.expectText("flooded")
		select {
		case c := <-h.closed:
			if c != slowConn {
				t.Fatalf("closed %v, want the one that does not read", c)
			}
			closed = true
		default:
		}
	}
	if !closed {
		t.Fatal("the connection that does not read was never closed")
	}
	if slowConn.Send([]byte("late")) {
		t.Error("Send on a closed connection reported true")
	}
	a.echo("a is still open")
	_ = slow
}

// TestSendDuringPass: Sends from another goroutine to a connection of a
// busy loop (deferred while it is in a pass, written at once while it
// waits) all arrive, in order, beside the loop's own.
func TestSendDuringPass(t *testing.T) {
	h := newTestHandler()
	s, url, d := setup{name: "epoll"}.start(t, h, Options{Loops: 1})
	if s.loops == nil {
		t.Skip("no event loops here")
	}
	x := dial(t, url, d)
	xc := waitConn(t, h.opened, "x")
	y := dial(t, url, d)
	waitConn(t, h.opened, "y")
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the loop is kept busy with y's echoes meanwhile
		defer wg.Done()
		for i := range n {
			if !xc.Send([]byte(numbered("x", i, 100))) {
				t.Errorf("Send %d failed", i)
				return
			}
		}
	}()
	for i := range n {
		y.text(numbered("y", i, 100))
		if i%16 == 15 {
			for j := i - 15; j <= i; j++ {
				y.expectText(numbered("y", j, 100))
			}
		}
	}
	for i := range n {
		f, err := x.read()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := numbered("x", i, 100); !bytes.Equal(f.Payload, []byte(want)) {
			t.Fatalf("message %d: %.20q, want %.20q", i, f.Payload, want)
		}
	}
	wg.Wait()
	select {
	case c := <-h.closed:
		t.Fatalf("%v closed", c)
	case <-time.After(10 * time.Millisecond):
	}
}

// TestTrimFree: the sweep frees the write buffers no pass has needed
// since the sweep before; those in use meanwhile stay.
func TestTrimFree(t *testing.T) {
	l := &loop{}
	c := &econn{l: l}
	put := func(n int) {
		for range n {
			c.out = make([]byte, 0, outSize)
			c.putOut()
		}
	}
	put(10)
	l.trimFree() // the first sweep: freeLow was 0
	if len(l.free) != 10 {
		t.Fatalf("%d free after the first sweep, want 10", len(l.free))
	}
	var used [][]byte
	for range 3 {
		l.dmu.Lock()
		used = append(used, l.getOut())
		l.dmu.Unlock()
	}
	for _, b := range used { // written and given back
		c.out = b
		c.putOut()
	}
	l.trimFree()
	if len(l.free) != 3 {
		t.Fatalf("%d free after a sweep interval that used 3, want 3", len(l.free))
	}
	l.trimFree()
	if len(l.free) != 0 {
		t.Fatalf("%d free after an interval that used none, want 0", len(l.free))
	}
	c.out = make([]byte, 0, keepOut+1)
	c.putOut()
	if len(l.free) != 0 {
		t.Fatalf("a buffer over keepOut was kept")
	}
}
