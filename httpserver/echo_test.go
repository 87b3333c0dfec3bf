package httpserver

import (
	"context"
	"io"
	"net/http"
	"strings"
)

// EchoHandler answers a request with its path and query ("/announce?a=1"),
// so that a reply says which request it answers; /stream with a short
// streamed body; /index.html and /nope with 404 and "404 page not
// found\n". The parser's and responder's tests here use it, and, exported
// to the test binary only, the tests in package httpserver_test that
// serve it over sockets.
var EchoHandler = HandlerFunc(func(ctx context.Context, w *Response, r *Request) {
	switch r.Path {
	case "/stream":
		w.Stream, w.StreamLen = io.NopCloser(strings.NewReader("streamed")), 8
	case "/index.html", "/nope":
		w.Status, w.Body, w.Shared = http.StatusNotFound, notFound, true
	default:
		w.Body = append(append(append(w.Body, r.Path...), '?'), r.RawQuery...)
	}
})

var notFound = []byte("404 page not found\n")
