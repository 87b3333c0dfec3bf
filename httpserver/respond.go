package httpserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// A responder turns the bytes read from a connection into the bytes to
// write back: it parses the request heads, has the Handler answer each
// request, and formats the replies. It is the part of the Server that
// does not depend on how connections are polled. Not safe for concurrent
// use: the Server has one per event loop (or connection).
type responder struct {
	h         Handler
	ctx       context.Context
	maxHeader int // most bytes of request line and header fields

	head reqHead
	path [64]byte // a percent-decoded path
	// req and w are the Handler's arguments, here rather than on the
	// stack: through an interface call they would escape to the heap.
	req Request
	w   Response
	// body and header are the buffers a Response gets, kept from one
	// request to the next.
	body, header []byte

	// date is the Date header's value, formatted once a second.
	date    [len(http.TimeFormat)]byte
	dateSec int64
}

// Buffers a responder keeps for the next request, at most: a Handler
// that needs more for a reply gets it by append, once.
const (
	bodyKeep   = 64 << 10
	headerKeep = 4 << 10
	// fieldsKeep bounds the header fields kept room for: a request with
	// more (a legitimate one has about ten) gets a slice of its own.
	fieldsKeep = 64
)

func newResponder(ctx context.Context, h Handler, opts *Options) *responder {
	return &responder{h: h, ctx: ctx, maxHeader: opts.MaxHeaderBytes, dateSec: -1,
		body: make([]byte, 0, 1024), header: make([]byte, 0, 256)}
}

// batch is what respond made of the input.
type batch struct {
	// n is how many bytes of the input were used: the requests answered,
	// and any refused one. The rest is the start of a request not yet
	// whole.
	n int
	// out holds the replies, to be written in order, then tail.
	out []byte
	// tail is a large shared reply body (Response.Shared), to be written
	// after out, without a copy. A batch with a tail ends with it.
	tail []byte
	// stream is a body to copy after out, streamLen bytes of it
	// (Response.Stream); the connection closes after it. The server owns
	// it and must Close it.
	stream    io.ReadCloser
	streamLen int64
	// take, when not nil, takes the connection over once out is
	// written (Response.Takeover); the input after n is the client's
	// first bytes for it. A batch with take ends with its reply.
	take func(net.Conn)
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
		r.req = Request{
			Method:   hd.method,
			Path:     path,
			RawQuery: query,
			Remote:   remote,
			HTTP10:   hd.http10,
			fields:   hd.fields,
		}
		r.w = Response{Body: r.body[:0], header: r.header[:0]}
		r.h.Respond(r.ctx, &r.w, &r.req)
		rep := &r.w
		if !rep.Shared && cap(rep.Body) > cap(r.body) && cap(r.body) < bodyKeep {
			// The body outgrew the buffer: a larger one for the next
			// request (not Body's array, which may be the Handler's).
			r.body = make([]byte, 0, min(cap(rep.Body), bodyKeep))
		}
		if cap(rep.header) > cap(r.header) && cap(rep.header) <= headerKeep {
			r.header = rep.header[:0]
		}
		r.req = Request{} // keeps nothing of the input
		if cap(hd.fields) > fieldsKeep {
			hd.fields = nil
		}
		keep := !draining && !hd.close && (!hd.http10 || hd.keepAlive)
		switch {
		case rep.Takeover != nil:
			if rep.Stream != nil {
				rep.Stream.Close()
			}
			b.out = r.appendHead(b.out, int64(len(rep.Body)), rep, connTakeover, now)
			b.out = append(b.out, rep.Body...)
			b.take = rep.Takeover
			r.w = Response{}
			return b
		case rep.Stream != nil:
			b.out = r.appendHead(b.out, rep.StreamLen, rep, connClose, now)
			b.stream, b.streamLen, b.close = rep.Stream, rep.StreamLen, true
			r.w = Response{}
			return b
		}
		conn := connKeep
		if !keep {
			conn = connClose
			b.close = true
		} else if hd.http10 {
			conn = connKeepAlive
		}
		b.out = r.appendHead(b.out, int64(len(rep.Body)), rep, conn, now)
		if rep.Shared && len(rep.Body) >= tailSize {
			b.tail = rep.Body
			r.w = Response{}
			return b
		}
		b.out = append(b.out, rep.Body...)
		r.w = Response{}
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

// What a reply's Connection field says.
const (
	connKeep      = iota // nothing: HTTP/1.1 keeps the connection
	connKeepAlive        // "keep-alive", to an HTTP/1.0 client that asked
	connClose            // "close"
	connTakeover         // nothing: the Handler says it (Response.Takeover)
)

// appendHead appends the status line and header fields of a reply whose
// body is length bytes.
func (r *responder) appendHead(out []byte, length int64, rep *Response, conn int, now time.Time) []byte {
	status := rep.Status
	switch {
	case status == 0 || status == http.StatusOK:
		out = append(out, "HTTP/1.1 200 OK\r\n"...)
		status = http.StatusOK
	default:
		if status < 100 || status > 999 {
			status = http.StatusInternalServerError
		}
		out = append(out, "HTTP/1.1 "...)
		out = strconv.AppendInt(out, int64(status), 10)
		out = append(out, ' ')
		out = append(out, http.StatusText(status)...)
		out = append(out, "\r\n"...)
	}
	// A 1xx or 204 reply has no content (RFC 9110, sections 8.6, 15.2).
	noContent := status < 200 || status == http.StatusNoContent
	if !noContent {
		out = append(out, "Content-Type: "...)
		if rep.ContentType == "" || !validHeaderText(rep.ContentType) {
			out = append(out, "text/plain"...)
		} else {
			out = append(out, rep.ContentType...)
		}
		out = append(out, "\r\n"...)
	}
	out = append(out, "Date: "...)
	out = append(out, r.httpDate(now)...)
	out = append(out, "\r\n"...)
	out = append(out, rep.header...)
	switch conn {
	case connClose:
		out = append(out, "Connection: close\r\n"...)
	case connKeepAlive:
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	if !noContent {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, length, 10)
		out = append(out, "\r\n"...)
	}
	return append(out, "\r\n"...)
}

// httpDate returns now as the Date header wants it.
func (r *responder) httpDate(now time.Time) []byte {
	if sec := now.Unix(); sec != r.dateSec {
		r.dateSec = sec
		now.UTC().AppendFormat(r.date[:0], http.TimeFormat)
	}
	return r.date[:]
}
