package httpserver

import (
	"context"
	"io"
	"net"
	"net/netip"
)

// A Handler answers the requests a Server reads: it looks at r and fills
// in w. It is called on the Server's goroutines, one request at a time
// per event loop (or per connection), so it must be safe for concurrent
// use; on an event loop it holds up the loop's other connections for as
// long as it runs, so it should answer from memory (see
// Options.GoroutinePerConn).
//
// r's strings, r.Fields and w.Body's initial buffer belong to the Server
// and are reused once Respond returns: the Handler must not keep them.
// ctx is canceled when the Server is closed.
type Handler interface {
	Respond(ctx context.Context, w *Response, r *Request)
}

// HandlerFunc makes a function a Handler.
type HandlerFunc func(ctx context.Context, w *Response, r *Request)

// Respond calls f(ctx, w, r).
func (f HandlerFunc) Respond(ctx context.Context, w *Response, r *Request) { f(ctx, w, r) }

// A Request is a GET request as the Server read it: whole, without a body
// (a request with one is refused before it reaches a Handler). Its
// strings point into the Server's read buffer and are valid only during
// the Respond call.
type Request struct {
	// Method is "GET" (the Server refuses other methods with 405).
	Method string
	// Path is the request target's path, percent-decoded ("/announce");
	// RawQuery the query after '?', as sent (not decoded).
	Path, RawQuery string
	// Remote is the connection's peer address.
	Remote netip.AddrPort
	// HTTP10 reports an HTTP/1.0 request; anything else is served as
	// HTTP/1.1.
	HTTP10 bool

	fields []Field
}

// A Field is a header field of a request, as sent: the name in the case
// the client wrote it, the value without surrounding whitespace.
type Field struct {
	Name, Value string
}

// Fields returns the request's header fields in the order they came. The
// slice is the Server's, reused for the next request: read it, do not
// keep it.
func (r *Request) Fields() []Field { return r.fields }

// Header returns the value of the first field named name (compared
// without regard to ASCII case), or "" if there is none. It allocates
// nothing.
func (r *Request) Header(name string) string {
	for i := range r.fields {
		if equalFoldString(r.fields[i].Name, name) {
			return r.fields[i].Value
		}
	}
	return ""
}

// AppendValues appends to dst the value of every field named name
// (compared without regard to ASCII case), in the order they came, and
// returns the extended slice: a field that may be repeated
// (X-Forwarded-For, Accept-Encoding) is read with a slice the caller
// reuses, without allocating.
func (r *Request) AppendValues(dst []string, name string) []string {
	for i := range r.fields {
		if equalFoldString(r.fields[i].Name, name) {
			dst = append(dst, r.fields[i].Value)
		}
	}
	return dst
}

// A Response is what a Handler answers. The zero value, as the Handler
// gets it but for Body's buffer, is an empty 200 reply.
//
// The Server writes the status line, Date, Content-Type (text/plain
// unless ContentType says otherwise), the fields added with AddHeader,
// the Connection field the connection needs, Content-Length, and the
// body: Stream if it is set, else Body.
type Response struct {
	// Status is the status code; 0 means 200.
	Status int
	// ContentType is the Content-Type; "" means text/plain.
	ContentType string
	// Body is the reply's body. The Handler gets it empty with a buffer
	// of the Server's behind it, to append to: a reply built so
	// allocates nothing (a longer one than the buffer grows it, once).
	// It may instead be a slice of the Handler's own: without Shared,
	// the Server copies it before it calls the Handler again on the
	// same event loop or connection.
	Body []byte
	// Shared reports that Body is not the Server's buffer but a slice
	// the Handler never modifies (a cached reply, a fixed text): the
	// Server may write it from where it is, without a copy, and hold on
	// to it until it is written.
	Shared bool
	// Stream, when not nil, is the body instead of Body: StreamLen
	// bytes, too many to put in a buffer. The Server copies it to the
	// connection a chunk at a time as the socket takes it, its write
	// timeout counted from the last progress, and calls Close exactly
	// once when it is done with it: written whole, or the connection
	// gone. The connection closes after it.
	Stream    io.ReadCloser
	StreamLen int64
	// Takeover, when not nil, takes the connection over once the reply
	// is written: a WebSocket handler answers an upgrade request with
	// 101 Switching Protocols and speaks WebSocket from then on. The
	// Server writes the reply and stops serving the connection: it reads
	// no more requests from it, its timeouts no longer run, it no longer
	// counts against MaxConns and MaxConnsPerIP, and neither Shutdown nor
	// Close closes it. Then it calls Takeover on a goroutine of its own
	// (never on an event loop) with the connection as a net.Conn, its
	// deadlines cleared. The bytes the client sent after the request
	// head, which the Server may have read already (a client that does
	// not wait for the 101), are the first the net.Conn's Read returns;
	// a net.Conn with such bytes has the methods Buffered() []byte, which
	// returns those not read yet, and NetConn() net.Conn, the connection
	// under it, for a taker that serves the descriptor itself (wsserver).
	//
	// From then on the taker owns the connection, as with net/http's
	// Hijacker: it must bound what the client can hold (deadlines, a
	// count of its own) and close it. If the reply cannot be written (the
	// client is gone, or does not read it within WriteTimeout), the
	// Server closes the connection and does not call Takeover.
	//
	// A reply with Takeover is written as any other but for the
	// Connection field, which the Server leaves to the Handler
	// (AddHeader("Connection", "Upgrade")); with a 1xx or 204 status it
	// has no Content-Type or Content-Length. It may not have a Stream:
	// one is closed unread.
	Takeover func(net.Conn)

	header []byte // the AddHeader fields, each "name: value\r\n"
}

// AddHeader adds a header field to the reply. A field the Server writes
// itself (Date, Content-Type, Content-Length, Connection) must not be
// added, except Connection on a reply with Takeover, on which the Server
// writes none. A name or value with a CR, LF or NUL in it is dropped:
// it would split the reply.
func (w *Response) AddHeader(name, value string) {
	if name == "" || !validHeaderText(name) || !validHeaderText(value) {
		return
	}
	w.header = append(w.header, name...)
	w.header = append(w.header, ": "...)
	w.header = append(w.header, value...)
	w.header = append(w.header, "\r\n"...)
}

func validHeaderText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// equalFoldString reports whether a and b are equal ignoring ASCII case.
func equalFoldString(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
