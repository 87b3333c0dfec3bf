package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeListener records its Shutdown and blocks in it until release is
// closed.
type fakeListener struct {
	name    string
	events  chan<- string
	release <-chan struct{}
	err     error
}

func (f *fakeListener) Addr() net.Addr    { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (f *fakeListener) serve(func(error)) {}
func (f *fakeListener) Close() error      { return nil }
func (f *fakeListener) Shutdown(context.Context) error {
	f.events <- f.name + " started"
	<-f.release
	f.events <- f.name + " done"
	return f.err
}

// TestShutdownListenersOrder: the frontends stop side by side (each has
// begun before any has finished draining), the admin endpoint only after
// every frontend is done; errors name their listener.
func TestShutdownListenersOrder(t *testing.T) {
	events := make(chan string, 16)
	release := make(chan struct{})
	s := &Server{}
	for _, f := range []frontend{{name: "http"}, {name: "udp"}, {name: "admin", operator: true}} {
		l := &fakeListener{name: f.name, events: events, release: release}
		if f.name == "udp" {
			l.err = errors.New("boom")
		}
		s.listeners = append(s.listeners, bound{f, l})
	}
	done := make(chan error, 1)
	go func() { done <- s.shutdownListeners(context.Background()) }()
	var started []string
	for range 2 {
		select {
		case e := <-events:
			started = append(started, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("frontends not shut down side by side: only %v began", started)
		}
	}
	for _, e := range started {
		if strings.HasPrefix(e, "admin") {
			t.Fatalf("admin began before the frontends were done: %v", started)
		}
	}
	close(release)
	var rest []string
	for range 4 {
		rest = append(rest, <-events)
	}
	if rest[2] != "admin started" || rest[3] != "admin done" {
		t.Errorf("after the frontends' start: %v, want both done, then admin", rest)
	}
	err := <-done
	if err == nil || err.Error() != "udp: boom" {
		t.Errorf("err = %v, want udp: boom", err)
	}
}

// TestBindClosesOnFailure: when a listener cannot be bound, those bound
// before it are closed and none is kept.
func TestBindClosesOnFailure(t *testing.T) {
	var mu sync.Mutex
	var closed []string
	s := &Server{}
	fake := func(name string) func(string) (listener, error) {
		return func(string) (listener, error) { return &closeRecorder{name: name, mu: &mu, closed: &closed}, nil }
	}
	fs := []frontend{
		{name: "a", addr: "x", listen: fake("a")},
		{name: "off", listen: func(string) (listener, error) { t.Error("bound a listener that is off"); return nil, nil }},
		{name: "b", addr: "x", listen: fake("b")},
		{name: "c", addr: "x", listen: func(string) (listener, error) { return nil, errors.New("taken") }},
	}
	err := s.bindAll(fs)
	if err == nil || err.Error() != "c listener: taken" {
		t.Errorf("err = %v, want c listener: taken", err)
	}
	if strings.Join(closed, ",") != "a,b" || s.listeners != nil {
		t.Errorf("closed %v, kept %d listeners; want a,b closed and none kept", closed, len(s.listeners))
	}
}

type closeRecorder struct {
	name   string
	mu     *sync.Mutex
	closed *[]string
}

func (c *closeRecorder) Addr() net.Addr                 { return nil }
func (c *closeRecorder) serve(func(error))              {}
func (c *closeRecorder) Shutdown(context.Context) error { return nil }
func (c *closeRecorder) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.closed = append(*c.closed, c.name)
	return nil
}
