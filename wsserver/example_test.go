package wsserver_test

import (
	"context"
	"time"

	"trackd/httpserver"
	"trackd/wsserver"
)

// echo is a Handler whose Sessions send each message back.
type echo struct{}

func (echo) Open(c wsserver.Conn) wsserver.Session { return session{c} }

type session struct{ c wsserver.Conn }

func (s session) Message(ctx context.Context, msg []byte) { s.c.Send(msg) } // Send copies msg
func (s session) Closed()                                 {}

// ws:// on an httpserver port, beside its own handler, and wss:// on an
// httpserver port over TLS: both hand their upgrades to the same Server.
func Example() {
	ws := wsserver.New(echo{}, wsserver.Options{MaxConnsPerIP: 64})
	tracker := httpserver.HandlerFunc(func(ctx context.Context, w *httpserver.Response, r *httpserver.Request) {
		w.Body = append(w.Body, "not a WebSocket"...)
	})
	hs, err := httpserver.Listen("127.0.0.1:0", ws.Upgrade(tracker), httpserver.Options{})
	if err != nil {
		panic(err)
	}
	// With a certificate: httpserver.Listen(addr, ws.Upgrade(tracker),
	// httpserver.Options{TLSConfig: &tls.Config{Certificates: ...}}).

	// Shutting down: the listeners first, then the WebSocket connections
	// (they left httpserver's hands at their upgrade).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(ctx)
	ws.Shutdown(ctx)
}
