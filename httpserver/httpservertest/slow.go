package httpservertest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"trackd/httpserver"
)

// A Stream is a body for Response.Stream (or any streamed reply) of N
// bytes, byte i being byte(i % 251), which CheckBody checks; with Fail
// above 0 it ends early, after Fail bytes. It counts its Close calls.
type Stream struct {
	N    int64
	Fail int64

	off    int64
	closes atomic.Int32
}

func (s *Stream) Read(p []byte) (int, error) {
	end := s.N
	if s.Fail > 0 {
		end = s.Fail
	}
	if s.off >= end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), end-s.off)]
	for i := range p {
		p[i] = byte((s.off + int64(i)) % 251)
	}
	s.off += int64(len(p))
	return len(p), nil
}

// Close counts a call.
func (s *Stream) Close() error {
	s.closes.Add(1)
	return nil
}

// WaitClosed waits (5 s at most) for s to be closed, and checks that it
// was closed once.
func (s *Stream) WaitClosed(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second Close would show by now
	if n := s.closes.Load(); n != 1 {
		t.Errorf("stream closed %d times, want once", n)
	}
}

// CheckBody reads n bytes of a Stream's body from r and checks each.
func CheckBody(t testing.TB, r io.Reader, n int64) {
	t.Helper()
	buf := make([]byte, 32<<10)
	var off int64
	for off < n {
		m, err := r.Read(buf)
		for i := range m {
			if buf[i] != byte((off+int64(i))%251) {
				t.Fatalf("byte %d is %d", off+int64(i), buf[i])
			}
		}
		off += int64(m)
		if err != nil {
			if off < n {
				t.Fatalf("after %d of %d bytes: %v", off, n, err)
			}
			break
		}
	}
}

// SlowReader returns a reader of r that takes at most 8 KiB a read and
// pauses 1 ms every 16 reads: a client slower than the server, for a
// reply of a few megabytes.
func SlowReader(r io.Reader) io.Reader {
	return &slowReader{r: r, max: 8 << 10, every: 16, pause: time.Millisecond}
}

// SteadyReader returns a reader of r that takes at most 32 KiB a read and
// pauses 2 ms every second read (each 64 KiB or so): a 50 MB body takes
// well over a write timeout of a few hundred milliseconds, read steadily.
func SteadyReader(r io.Reader) io.Reader {
	return &slowReader{r: r, max: 32 << 10, every: 2, pause: 2 * time.Millisecond}
}

type slowReader struct {
	r          io.Reader
	max, every int
	pause      time.Duration
	n          int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.n++; s.n%s.every == 0 {
		time.Sleep(s.pause)
	}
	return s.r.Read(p[:min(len(p), s.max)])
}

// DialSmallWindow connects to addr with a receive buffer of 4 KiB, so that
// a large reply does not fit in the sockets' buffers and the server must
// wait for the client to read; it closes the connection when the test
// ends.
func DialSmallWindow(t testing.TB, addr net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { setRcvBuf(fd, 4096) })
	}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// CheckBigReply checks, in two subtests, how a Server started with listen
// for h sends want, its reply to the request text req, where want is far
// larger than the sockets' buffers (more than the kernel's largest send
// buffer, 4 MiB by default, and the client's receive buffer together):
// "slow reader", that a client that reads slowly (DialSmallWindow,
// SlowReader) gets it whole, and then a 200 reply to a GET for next that
// it had pipelined; "non-reader dropped", that with a WriteTimeout of
// 400 ms a client that does not read is dropped, before it has the whole
// reply.
func CheckBigReply(t *testing.T, listen ListenFunc, h httpserver.Handler, req string, want []byte, next string) {
	const wt = 400 * time.Millisecond
	t.Run("slow reader", func(t *testing.T) {
		s := Start(t, listen, h, httpserver.Options{WriteTimeout: 20 * time.Second})
		c := DialSmallWindow(t, s.Addr())
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, req+Get(next))
		br := bufio.NewReaderSize(SlowReader(c), 4096)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(body), err)
		}
		if !bytes.Equal(body, want) {
			t.Fatalf("body of %d bytes, want %d", len(body), len(want))
		}
		res, err = http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("pipelined request after the big reply: %v", err)
		}
	})
	t.Run("non-reader dropped", func(t *testing.T) {
		s := Start(t, listen, h, httpserver.Options{WriteTimeout: wt})
		c := DialSmallWindow(t, s.Addr())
		io.WriteString(c, req)
		time.Sleep(wt + 700*time.Millisecond)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err == nil && n > int64(len(want)) {
			t.Fatalf("read %d bytes and the whole reply", n)
		}
		if n >= int64(len(want)) {
			t.Errorf("read %d bytes of a %d-byte reply though it was dropped", n, len(want))
		}
	})
}
