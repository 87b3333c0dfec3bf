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

func TestHeadEnd(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 18},
		{"GET / HTTP/1.1\n\n", 16},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", 27},
		{"GET / HTTP/1.1\r\nHost: x\n\r\n", 26},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", -1},
		{"GET / HTTP/1.1\r\nHost: x\r\n", -1},
		{"GET / HTTP/1.1", -1},
		{"", -1},
	} {
		if got := headEnd([]byte(tt.in), 0); got != tt.want {
			t.Errorf("headEnd(%q) = %d, want %d", tt.in, got, tt.want)
		}
		// Searched in pieces, it finds the same end.
		for k := range len(tt.in) {
			if headEnd([]byte(tt.in[:k]), 0) < 0 {
				if got := headEnd([]byte(tt.in), k); got != tt.want {
					t.Errorf("headEnd(%q, %d) = %d, want %d", tt.in, k, got, tt.want)
				}
			}
		}
	}
}

// TestOnlyBlank: what a connection may hold and still be evicted at
// MaxConns like an idle one.
func TestOnlyBlank(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"", true},
		{"\r\n", true},
		{"\n", true},
		{"\r", true},
		{"\r\n\r\n\n\r", true},
		{"\r\r", false},
		{"G", false},
		{"\r\nGET /ann", false},
		{"GET / HTTP/1.1\r\n", false},
		{" \r\n", false},
	} {
		if got := onlyBlank([]byte(tt.in)); got != tt.want {
			t.Errorf("onlyBlank(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseHead(t *testing.T) {
	var h reqHead
	in := "GET /announce?x=1 HTTP/1.0\r\nhOsT: a\r\nConnection: Keep-Alive, Upgrade\r\nX-Real-IP:  1.2.3.4 \r\n" +
		"X-Forwarded-For: 5.6.7.8, 9.9.9.9\r\nx-forwarded-for: 10.0.0.1\r\nAccept-Encoding: gzip\r\nContent-Length: 0\r\n\r\n"
	if e := parseHead([]byte(in), &h); e.status != 0 {
		t.Fatal(e.text)
	}
	if h.method != "GET" || h.target != "/announce?x=1" || !h.http10 || !h.keepAlive || h.close || h.hosts != 1 || h.body {
		t.Errorf("parsed %+v", h)
	}
	// Every field is kept, in order, as sent; Request looks them up
	// without regard to case.
	r := Request{fields: h.fields}
	if len(r.Fields()) != 7 || r.Fields()[0] != (Field{"hOsT", "a"}) || r.Fields()[6] != (Field{"Content-Length", "0"}) {
		t.Errorf("fields %q", r.Fields())
	}
	if r.Header("x-real-ip") != "1.2.3.4" || strings.Join(r.AppendValues(nil, "X-FORWARDED-FOR"), "|") != "5.6.7.8, 9.9.9.9|10.0.0.1" ||
		strings.Join(r.AppendValues(nil, "Accept-Encoding"), "|") != "gzip" || r.Header("Connection") != "Keep-Alive, Upgrade" || r.Header("X-None") != "" {
		t.Errorf("lookups in %q", r.Fields())
	}
	for in, want := range map[string]headError{
		"GET / HTTP/1.1\r\n\r\n":                            {},
		"GET  / HTTP/1.1\r\n\r\n":                           errBadRequestLine,
		"GET / HTTP/1.1 x\r\n\r\n":                          errBadRequestLine,
		"G(T / HTTP/1.1\r\n\r\n":                            errBadRequestLine,
		"GET / HTTP/3\r\n\r\n":                              errVersion,
		"GET / HTCPCP/1.0\r\n\r\n":                          errBadRequestLine,
		"GET / HTTP/1.1\r\nA:b\r\n\r\n":                     {},
		"GET / HTTP/1.1\r\n:b\r\n\r\n":                      errBadHeader,
		"GET / HTTP/1.1\r\nA b: c\r\n\r\n":                  errBadHeader,
		"GET / HTTP/1.1\r\nA\r\n\r\n":                       errBadHeader,
		"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n":             errFolding,
		"GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n":      errBadLength,
		"GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n":    errBadLength,
		"GET / HTTP/1.1\r\nContent-Length: 00\r\n\r\n":      {},
		"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n":                 errBadHeader,
		"GET /\x00 HTTP/1.1\r\n\r\n":                        errBadTarget,
		"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n": {},
	} {
		if got := parseHead([]byte(in), &h); got != want {
			t.Errorf("parseHead(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	var buf [64]byte
	for _, tt := range []struct{ in, path, query string }{
		{"/announce?a=1", "/announce", "a=1"},
		{"/announce", "/announce", ""},
		{"/scrape?", "/scrape", ""},
		{"http://host:1/announce?a", "/announce", "a"},
		{"HTTP://host", "/", ""},
		{"http://host?a=b", "/", "a=b"},
		{"/%61nnounce?b", "/announce", "b"},
		{"/a+b", "/a+b", ""},
		{"/" + strings.Repeat("%61", 30) + "?q", "/" + strings.Repeat("a", 30), "q"}, // longer than the buffer
	} {
		p, q, ok := splitTarget(tt.in, &buf)
		if !ok || p != tt.path || q != tt.query {
			t.Errorf("splitTarget(%q) = %q, %q, %v", tt.in, p, q, ok)
		}
	}
	for _, in := range []string{"/%zz", "*", "host:80"} {
		if _, _, ok := splitTarget(in, &buf); ok {
			t.Errorf("splitTarget(%q) accepted", in)
		}
	}
}

// FuzzRequestHead feeds arbitrary bytes to the request parser and to the
// responder as a connection's input: nothing panics; the head's end is
// found the same whether the input comes whole or in two pieces; and the
// output is a sequence of well-formed HTTP/1.1 replies, each with a
// Content-Length, no more than there were request heads.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET /announce?info_hash=%01%02server+test&peer_id=peer&port=6881&uploaded=0&downloaded=0&left=0&compact=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /scrape HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"\r\nGET http://h/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa HTTP/1.1\nHost: y\n\n",
		"POST /announce HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"GET /announce HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4,\r\nX-Real-IP: ::1\r\n\r\n",
		"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
		"HEAD / HTTP/2\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	r := newResponder(context.Background(), EchoHandler, &Options{MaxHeaderBytes: 1024})
	remote := netip.MustParseAddrPort("10.0.0.1:1234")
	f.Fuzz(func(t *testing.T, in []byte) {
		end := headEnd(in, 0)
		for _, k := range []int{len(in) / 3, len(in) / 2} {
			if headEnd(in[:k], 0) < 0 {
				if got := headEnd(in, k); got != end {
					t.Fatalf("headEnd from %d = %d, from 0 = %d", k, got, end)
				}
			}
		}
		var hd reqHead
		if end > 0 && parseHead(in[:end], &hd).status == 0 {
			if hd.method == "" || hd.target == "" || strings.ContainsAny(hd.target, " \r\n") {
				t.Fatalf("parsed %+v", hd)
			}
		}

		heads := 0
		for rest := in; ; {
			skip, _ := skipEmptyLines(rest)
			rest = rest[skip:]
			e := headEnd(rest, 0)
			if e < 0 {
				if len(rest) > 0 {
					heads++ // perhaps refused as too large
				}
				break
			}
			heads++
			rest = rest[e:]
		}
		var out []byte
		closed := false
		for n := 0; n < len(in) && !closed; {
			b := r.respond(in[n:], 0, remote, nil, false, time.Unix(0, 0))
			out = append(append(out, b.out...), b.tail...)
			if b.n == 0 {
				break
			}
			n += b.n
			closed = b.close
		}
		br := bufio.NewReader(bytes.NewReader(out))
		replies := 0
		for {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("reply %d of %q: %v", replies, out, err)
			}
			if res.ContentLength < 0 {
				t.Fatalf("reply without Content-Length: %q", out)
			}
			if _, err := io.Copy(io.Discard, res.Body); err != nil {
				t.Fatalf("reply body: %v", err)
			}
			replies++
		}
		if replies > heads {
			t.Fatalf("%d replies to %d request heads", replies, heads)
		}
	})
}
