package httpserver_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"trackd/httpserver"
)

// A Handler appends its reply to the Server's buffer: it allocates
// nothing.
func ExampleHandlerFunc() {
	hello := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		if r.Path != "/hello" {
			w.Status = http.StatusNotFound
			return
		}
		w.Body = append(w.Body, "hello, "...)
		w.Body = r.Remote.Addr().AppendTo(w.Body)
	})
	s, err := httpserver.Listen("127.0.0.1:0", hello, httpserver.Options{
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		WriteTimeout:      5 * time.Second,
		MaxConns:          httpserver.DefaultMaxConns,
		MaxConnsPerIP:     httpserver.DefaultMaxConnsPerIP,
	})
	if err != nil {
		return
	}
	defer s.Close()
}

// A Handler upgrades a connection to another protocol (here, an echo)
// and takes it over: the Server writes the 101 reply and hands the
// connection over on a goroutine of its own; from then on the taker
// bounds and closes it.
func ExampleResponse_takeover() {
	upgrade := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		if !strings.EqualFold(r.Header("Upgrade"), "echo") {
			w.Status = http.StatusBadRequest
			return
		}
		w.Status = http.StatusSwitchingProtocols
		w.AddHeader("Connection", "Upgrade")
		w.AddHeader("Upgrade", "echo")
		w.Takeover = func(c net.Conn) {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			io.Copy(c, c) // the client's bytes sent after the request come first
		}
	})
	s, err := httpserver.Listen("127.0.0.1:0", upgrade, httpserver.Options{})
	if err != nil {
		return
	}
	defer s.Close()
}
