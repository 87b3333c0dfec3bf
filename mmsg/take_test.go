package mmsg

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// takeConn returns a Conn made by Take, closed when the test ends, and
// after 20 s at the latest: deadlines do not apply to it, and a Read
// that waits for a datagram that never comes must fail the test, not
// hang it.
func takeConn(t testing.TB, c *net.UDPConn, batch, bufSize int) *Conn {
	t.Helper()
	m, err := Take(c, batch, bufSize)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	watchdog := time.AfterFunc(20*time.Second, func() { m.Close() })
	t.Cleanup(func() {
		watchdog.Stop()
		m.Close()
	})
	return m
}

// TestTakeClosesConn: Take closes the *net.UDPConn it takes (on Linux;
// elsewhere Take is New and leaves it open). TestIPv4, TestIPv6 and
// TestDualStack run on Conns made by Take too.
func TestTakeClosesConn(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	takeConn(t, s, 8, 2048)
	c := listen(t, "udp4", "127.0.0.1:0")
	if _, err := s.WriteToUDPAddrPort([]byte("x"), addrPort(c)); takeClosesConn && !errors.Is(err, net.ErrClosed) {
		t.Errorf("the taken *net.UDPConn still writes: %v", err)
	}
}

// TestTakeCloseWhileBusy: Close in the middle of traffic, with a reader
// and a writer on the Conn, ends both with net.ErrClosed and returns
// (run with -race).
func TestTakeCloseWhileBusy(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	m := takeConn(t, s, 8, 2048)
	sink := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, "udp4", "127.0.0.1", port(s))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(3)
	go func() { // a client that keeps sending
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				c.Write([]byte("req"))
			}
		}
	}()
	go func() { // the reader
		defer wg.Done()
		for {
			if _, err := m.Read(); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // the writer
		defer wg.Done()
		for {
			for range 8 {
				m.Queue([]byte("reply"), addrPort(sink))
			}
			if _, err := m.Flush(); err != nil {
				errs <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the reader or the writer did not stop")
		}
	}
	close(stop)
	wg.Wait()
}

// TestTakeControl: Control reaches the socket Take took.
func TestTakeControl(t *testing.T) {
	s := listen(t, "udp4", "127.0.0.1:0")
	m := takeConn(t, s, 4, 2048)
	ran := false
	if err := m.Control(func(fd uintptr) { ran = fd > 0 }); err != nil || !ran {
		t.Errorf("Control: %v, ran %v", err, ran)
	}
}
