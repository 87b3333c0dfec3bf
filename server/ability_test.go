package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"trackd/config"
	"trackd/internal/ratelog"
	"trackd/store"
	"trackd/store/memory"
)

// networkStore hides every optional ability of the store it wraps: it is
// what a new backend that waits on the network looks like to the server.
type networkStore struct{ store.Store }

// inProcessStore is a backend of another type that declares
// store.InProcess, and nothing else.
type inProcessStore struct{ networkStore }

func (inProcessStore) InProcess() {}

// TestServingModelByAbility: the server picks the event loops and the UDP
// socket count by store.InProcess, whatever the store's type.
func TestServingModelByAbility(t *testing.T) {
	mem := memory.New(store.Options{PeerLifetime: time.Hour})
	t.Cleanup(func() { mem.Close() })
	many := max(networkStoreUDPSockets, runtime.NumCPU())
	for _, tt := range []struct {
		name           string
		st             store.Store
		udpSockets     int
		wantGoroutines bool
		wantSockets    int
	}{
		{"memory", mem, 0, false, 0},
		{"memory, udp_sockets set", mem, 4, false, 4},
		{"no abilities", networkStore{mem}, 0, true, many},
		{"no abilities, udp_sockets set", networkStore{mem}, 4, true, 4},
		{"another type, InProcess", inProcessStore{networkStore{mem}}, 0, false, 0},
	} {
		goroutines, sockets := servingModel(tt.st, tt.udpSockets)
		if goroutines != tt.wantGoroutines || sockets != tt.wantSockets {
			t.Errorf("%s: goroutine per connection %v, %d UDP sockets; want %v, %d",
				tt.name, goroutines, sockets, tt.wantGoroutines, tt.wantSockets)
		}
	}
}

// TestStoreWithoutAbilities: a store with none of the optional abilities
// serves, shows no expiry or memory metrics, and cannot have a state file.
func TestStoreWithoutAbilities(t *testing.T) {
	open := func(context.Context, config.Config, *slog.Logger, *ratelog.Logger) (store.Store, error) {
		return networkStore{memory.New(store.Options{PeerLifetime: time.Hour})}, nil
	}
	cfg := loopbackConfig()
	srv, err := build(context.Background(), cfg, nil, open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + srv.HTTPAddr().String() + announceQuery)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.HasPrefix(string(body), "d8:complete") {
		t.Errorf("announce: %q", body)
	}
	mt, err := srv.metricTotals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if mt.PeersExpiredObserved || mt.MemoryObserved {
		t.Errorf("metrics observe expiries %v, memory %v of a store with neither ability", mt.PeersExpiredObserved, mt.MemoryObserved)
	}

	cfg.State = filepath.Join(t.TempDir(), "state")
	if _, err := build(context.Background(), cfg, nil, open); err == nil || !strings.Contains(err.Error(), "Snapshotter") {
		t.Errorf("state file with a store that is no Snapshotter: %v", err)
	}
}
