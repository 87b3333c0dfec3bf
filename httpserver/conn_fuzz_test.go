package httpserver

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// feedConn does with chunks what a Server does with the reads of a
// connection: it keeps the start of a request not yet whole (and how much
// of it was searched for a head's end), has the responder answer what is
// whole, and stops at a reply that closes the connection.
func feedConn(r *responder, chunks [][]byte) (out []byte, closed bool) {
	var buf []byte
	scanned := 0
	remote := netip.MustParseAddrPort("192.0.2.1:6881")
	for _, ch := range chunks {
		buf = append(buf, ch...)
		for {
			b := r.respond(buf, scanned, remote, nil, false, time.Unix(0, 0))
			out = append(append(out, b.out...), b.tail...)
			if b.stream != nil {
				body, _ := io.ReadAll(io.LimitReader(b.stream, b.streamLen))
				b.stream.Close()
				out = append(out, body...)
			}
			buf = append(buf[:0], buf[b.n:]...)
			if b.close {
				return out, true
			}
			if b.n == 0 || len(buf) == 0 {
				scanned = len(buf)
				break
			}
			scanned = 0
		}
	}
	return out, false
}

// wholeHeads counts the whole request heads in in, as the responder
// delimits them, stopping at too many empty lines.
func wholeHeads(in []byte) int {
	heads := 0
	for rest := in; ; {
		skip, lines := skipEmptyLines(rest)
		if lines > maxEmptyLines {
			return heads
		}
		rest = rest[skip:]
		e := headEnd(rest, 0)
		if e < 0 {
			return heads
		}
		heads++
		rest = rest[e:]
	}
}

// FuzzConn feeds a byte stream to the connection logic cut at arbitrary
// points (cuts: the lengths of the pieces, one a byte) and checks that
// nothing panics; that the replies are the same wherever the stream is
// cut; that they are well-formed HTTP/1.1, each with a Content-Length;
// that a reply which closes the connection is the last; and that on a
// connection left open every whole request got its reply, in order.
func FuzzConn(f *testing.F) {
	req := "GET /announce?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, s := range []struct {
		in   string
		cuts []byte
	}{
		{req + req + req, []byte{1, 7, 40, 3}},
		{"\r\n\r\n" + req + "\n" + req, []byte{1, 1, 1, 2}},
		{strings.Repeat("\r\n", 9) + req, []byte{2}},
		{strings.Repeat("\r\n", 8) + req, []byte{3, 5}},
		{"GET /x HTTP/1.1\nHost: y\n\nGET /y HTTP/1.1\r\nHost: y\r\n\r", []byte{10, 10, 10}},
		{req + "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n" + req, []byte{50, 1}},
		{"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + req, []byte{20}},
		{"GET /a HTTP/1.0\r\n\r\n", []byte{4}},
		{"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx" + req, []byte{9}},
		{"GET /" + strings.Repeat("a", 2000) + " HTTP/1.1\r\n\r\n", []byte{200, 255}},
		{"GET /a HTTP/1.1\r\nHost: x\r\n \r\n\r\n", []byte{1}},
		{"\r\r\n\r\n", []byte{1}},
	} {
		f.Add([]byte(s.in), s.cuts)
	}
	opts := Options{MaxHeaderBytes: 1024}
	whole := newResponder(context.Background(), EchoHandler, &opts)
	split := newResponder(context.Background(), EchoHandler, &opts)
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		want, wantClosed := feedConn(whole, [][]byte{in})
		var chunks [][]byte
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i])+1)
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		got, closed := feedConn(split, chunks)
		if !bytes.Equal(got, want) || closed != wantClosed {
			t.Fatalf("cut %v: replies %q (closed %v), whole %q (closed %v)", cuts, got, closed, want, wantClosed)
		}

		br := bufio.NewReader(bytes.NewReader(got))
		replies := 0
		for {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("reply %d of %q: %v", replies, got, err)
			}
			if res.ProtoMajor != 1 || res.ProtoMinor != 1 || res.ContentLength < 0 {
				t.Fatalf("reply %d: %s, Content-Length %d", replies, res.Proto, res.ContentLength)
			}
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				t.Fatalf("reply body: %v", err)
			}
			replies++
			if res.Close {
				if !closed {
					t.Fatalf("reply %d says close, the connection stays open", replies)
				}
				if _, err := br.Peek(1); err != io.EOF {
					t.Fatalf("a reply after one that closes: %q", got)
				}
			}
			if res.StatusCode >= 400 && res.StatusCode != 404 && !res.Close {
				t.Fatalf("refused (%d) without closing", res.StatusCode)
			}
		}
		heads := wholeHeads(in)
		if replies > heads+1 { // +1: a refused head that is not whole (too large, empty lines)
			t.Fatalf("%d replies to %d whole heads", replies, heads)
		}
		if !closed && replies != heads {
			t.Fatalf("open connection: %d replies to %d whole heads in %q", replies, heads, in)
		}
	})
}
