package http

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// A responder turns the bytes read from a connection into the bytes to
// write back: it parses the request heads, has the Handler answer each
// request, and formats the replies. It is the part of the Server that
// does not depend on how connections are polled. Not safe for concurrent
// use: the Server has one per event loop.
type responder struct {
	serve     serveFunc
	st        *state
	ctx       context.Context
	maxHeader int // most bytes of request line and header fields

	head reqHead
	req  request
	path [64]byte // a percent-decoded path

	// date is the Date header's value, formatted once a second.
	date    [len(http.TimeFormat)]byte
	dateSec int64
}

// serveFunc answers a request: Handler.serve, or a test's stand-in
// (ServerOptions.serve).
type serveFunc func(ctx context.Context, st *state, r *request) reply

func newResponder(ctx context.Context, h *Handler, opts *ServerOptions) *responder {
	serve := opts.serve
	if serve == nil {
		serve = h.serve
	}
	return &responder{serve: serve, st: newState(), ctx: ctx, maxHeader: opts.MaxHeaderBytes, dateSec: -1}
}

// batch is what respond made of the input.
type batch struct {
	// n is how many bytes of the input were used: the requests answered,
	// and any refused one. The rest is the start of a request not yet
	// whole.
	n int
	// out holds the replies, to be written in order, then tail.
	out []byte
	// tail is a large shared reply body (reply.shared), to be written
	// after out, without a copy. A batch with a tail ends with it.
	tail []byte
	// stream is a body to copy after out, streamLen bytes of it
	// (reply.stream); the connection closes after it. The server owns
	// it and must Close it.
	stream    io.ReadCloser
	streamLen int64
	// close: the connection is to be closed once out and tail are
	// written; the batch ends with the reply that says so.
	close bool
	// linger: the client may still be sending (a refused request, a
	// body): rather than close at once, which would make the kernel
	// reset the connection, perhaps before the client read the reply,
	// shut down the sending side and read until the client closes.
	linger bool
}

// Sizes that bound a batch.
const (
	// flushSize: respond stops answering once the replies reach this
	// size, and lets the Server write them.
	flushSize = 64 << 10
	// tailSize: a shared body at least this long is written from where
	// it is rather than copied.
	tailSize = 16 << 10
)

// respond answers the whole requests at the start of in and appends the
// replies to out. scanned is how much of in was searched for the end of
// a head before, in vain (0 if unknown). draining asks to close the
// connection after the first reply: the Server is shutting down.
func (r *responder) respond(in []byte, scanned int, remote netip.AddrPort, out []byte, draining bool, now time.Time) batch {
	b := batch{out: out}
	for b.n < len(in) && len(b.out) < flushSize {
		rest := in[b.n:]
		// Empty lines before a request line are ignored, but they are
		// the start of the request as far as the connection is
		// concerned: they are used only with the request that follows
		// them, so that a connection holding them waits for its request
		// under the read-header timeout, and not as an idle one.
		skip, lines := skipEmptyLines(rest)
		if lines > maxEmptyLines {
			r.refuse(&b, errEmptyLines, now)
			b.n = len(in)
			return b
		}
		end := headEnd(rest[skip:], max(scanned-skip, 0))
		scanned = 0
		if end < 0 && len(rest) < r.maxHeader {
			break // wait for the rest
		}
		if end >= 0 {
			end += skip
		}
		if end < 0 || end > r.maxHeader {
			r.refuse(&b, errTooLarge, now)
			b.n = len(in)
			return b
		}
		b.n += end
		if e := parseHead(rest[skip:end], &r.head); e.status != 0 {
			r.refuse(&b, e, now)
			return b
		}
		hd := &r.head
		switch {
		case hd.body:
			r.refuse(&b, errBody, now)
			return b
		case hd.method != "GET":
			r.refuse(&b, errMethod, now)
			return b
		case !hd.http10 && hd.hosts != 1, hd.hosts > 1:
			r.refuse(&b, errHost, now)
			return b
		}
		path, query, ok := splitTarget(hd.target, &r.path)
		if !ok {
			r.refuse(&b, errBadTarget, now)
			return b
		}
		// In the responder: through a func value, a request on the
		// stack would escape to the heap.
		r.req = request{
			path:           path,
			query:          query,
			remote:         remote,
			realIP:         hd.realIP,
			forwardedFor:   hd.forwardedFor,
			acceptEncoding: hd.acceptEncoding,
		}
		rep := r.serve(r.ctx, r.st, &r.req)
		r.req = request{} // keeps nothing of the input
		keep := !draining && !hd.close && (!hd.http10 || hd.keepAlive)
		if rep.stream != nil {
			b.out = r.appendHead(b.out, rep.status, rep.length, &rep, false, hd.http10, now)
			b.stream, b.streamLen, b.close = rep.stream, rep.length, true
			return b
		}
		b.out = r.appendHead(b.out, rep.status, int64(len(rep.body)), &rep, keep, hd.http10, now)
		if !keep {
			b.close = true
		}
		if rep.shared && len(rep.body) >= tailSize {
			b.tail = rep.body
			return b
		}
		b.out = append(b.out, rep.body...)
		if b.close {
			return b
		}
	}
	return b
}

// refuse appends an error reply that closes the connection.
func (r *responder) refuse(b *batch, e headError, now time.Time) {
	b.out = append(b.out, "HTTP/1.1 "...)
	b.out = strconv.AppendInt(b.out, int64(e.status), 10)
	b.out = append(b.out, ' ')
	b.out = append(b.out, http.StatusText(e.status)...)
	b.out = append(b.out, "\r\nContent-Type: text/plain\r\nDate: "...)
	b.out = append(b.out, r.httpDate(now)...)
	if e.status == http.StatusMethodNotAllowed {
		b.out = append(b.out, "\r\nAllow: GET"...)
	}
	b.out = append(b.out, "\r\nConnection: close\r\nContent-Length: "...)
	b.out = strconv.AppendInt(b.out, int64(len(e.text)+1), 10)
	b.out = append(b.out, "\r\n\r\n"...)
	b.out = append(b.out, e.text...)
	b.out = append(b.out, '\n')
	b.close, b.linger = true, true
}

// appendHead appends the status line and header fields of a reply.
func (r *responder) appendHead(out []byte, status int, length int64, rep *reply, keep, http10 bool, now time.Time) []byte {
	switch status {
	case http.StatusOK:
		out = append(out, "HTTP/1.1 200 OK\r\n"...)
	default:
		out = append(out, "HTTP/1.1 "...)
		out = strconv.AppendInt(out, int64(status), 10)
		out = append(out, ' ')
		out = append(out, http.StatusText(status)...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Content-Type: text/plain\r\nDate: "...)
	out = append(out, r.httpDate(now)...)
	if rep.gzip {
		out = append(out, "\r\nContent-Encoding: gzip"...)
	}
	if rep.vary {
		out = append(out, "\r\nVary: Accept-Encoding"...)
	}
	switch {
	case !keep:
		out = append(out, "\r\nConnection: close"...)
	case http10:
		out = append(out, "\r\nConnection: keep-alive"...)
	}
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, length, 10)
	return append(out, "\r\n\r\n"...)
}

// httpDate returns now as the Date header wants it.
func (r *responder) httpDate(now time.Time) []byte {
	if sec := now.Unix(); sec != r.dateSec {
		r.dateSec = sec
		now.UTC().AppendFormat(r.date[:0], http.TimeFormat)
	}
	return r.date[:]
}
