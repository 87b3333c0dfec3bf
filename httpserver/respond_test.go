package httpserver

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestResponseHead: what the Server writes for a Response's fields: a
// 204 without Content-Type and Content-Length, a Content-Type of the
// Handler's, fields added with AddHeader (those that would split the
// reply dropped), and a status out of range as 500.
func TestResponseHead(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, w *Response, r *Request) {
		switch r.Path {
		case "/204":
			w.Status = http.StatusNoContent
		case "/json":
			w.ContentType = "application/json"
			w.AddHeader("X-One", "1")
			w.AddHeader("X-Bad", "a\r\nInjected: yes")
			w.AddHeader("X-Bad\n", "b")
			w.Body = append(w.Body, "{}"...)
		case "/bad":
			w.Status = 42
		}
	})
	r := newResponder(context.Background(), h, &Options{MaxHeaderBytes: 1024})
	in := []byte("GET /204 HTTP/1.1\r\nHost: tracker\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nHost: tracker\r\n\r\n")
	b := r.respond(in, 0, netip.AddrPort{}, nil, false, time.Unix(0, 0))
	br := bufio.NewReader(strings.NewReader(string(b.out)))
	var got []*http.Response
	for range 3 {
		res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("reply %d of %q: %v", len(got), b.out, err)
		}
		io.Copy(io.Discard, res.Body)
		got = append(got, res)
	}
	if res := got[0]; res.StatusCode != 204 || res.Header["Content-Length"] != nil || res.Header["Content-Type"] != nil {
		t.Errorf("204: header %v", res.Header)
	}
	if res := got[1]; res.Header.Get("Content-Type") != "application/json" || res.Header.Get("X-One") != "1" ||
		res.Header["X-Bad"] != nil || res.Header["Injected"] != nil || res.ContentLength != 2 {
		t.Errorf("json: header %v", res.Header)
	}
	if res := got[2]; res.StatusCode != 500 {
		t.Errorf("status 42 sent as %d", res.StatusCode)
	}
}
