package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"trackd/config"
	"trackd/fleet"
	"trackd/fleet/redisbus"
	"trackd/internal/ratelog"
	"trackd/internal/redisurl"
	"trackd/store"
	"trackd/store/memory"
	redisstore "trackd/store/redis"
)

// checkStore reports what in cfg the store it names cannot take: a store
// that is neither the in-memory one nor a Redis URL, a peer_lifetime
// longer than the in-memory store keeps, a state file for a store that
// keeps its own. It is config.Config.Validate's other half: config knows
// no store.
func checkStore(cfg config.Config) error {
	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	memoryStore := cfg.Store == "memory"
	check(memoryStore || redisstore.IsURL(cfg.Store), "store %q: want memory or a Redis URL (redis://, rediss://, redis+cluster://)", cfg.Store)
	check(!memoryStore || cfg.PeerLifetime <= memory.MaxPeerLifetime, "peer_lifetime must be at most %v with the memory store", memory.MaxPeerLifetime)
	check(cfg.State == "" || memoryStore, "state: only the memory store needs a state file (Redis keeps its own)")
	check(cfg.Sync == "" || redisbus.IsURL(cfg.Sync), "sync: want a Redis URL (redis://, rediss://, redis+cluster://)")
	return errors.Join(errs...)
}

// openStore opens the store cfg names: the in-memory store, or Redis. It
// tries Redis once; Open's retry loop is in openStoreRetry. This file
// (openStore, checkStore, openSync) is the one place in the server that
// names a backend: the rest asks the store for its abilities (package
// store's "Optional abilities").
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger, errs *ratelog.Logger) (store.Store, error) {
	opts := store.Options{PeerLifetime: cfg.PeerLifetime, PeerIDs: cfg.PeerIDs}
	if cfg.Store == "memory" {
		return memory.New(opts), nil
	}
	st, err := redisstore.Open(ctx, cfg.Store, opts, redisstore.Options{
		Timeout: cfg.RedisTimeout,
		Logger:  log.With("store", "redis"),
		Errors:  errs,
	})
	if err != nil {
		return nil, &storeError{err}
	}
	return st, nil
}

// fleetSync is what keeps the store in step with the other instances of a
// fleet (config.Sync): the Node that runs it and the Bus it runs on.
type fleetSync struct {
	node *fleet.Node
	bus  fleet.Bus
	// joined is whether the swarms came from a running instance of the
	// fleet (fleet.Node.Join): the state file, older, is not read then.
	joined bool
}

// openSync wraps st, the in-memory store, in a fleet.Store that records
// its announces, and opens the Bus (Redis at cfg.Sync) its Node exchanges
// them on. Then it joins the fleet: it fills st with the swarms of a
// running instance, if one answers within fleet.DefaultJoinWait, before
// any frontend serves (so that no local announce meets a swarm the
// snapshot is about to bring). An unreachable Redis is no error: the Node
// tries again while the store serves. st is closed on error.
func openSync(ctx context.Context, cfg config.Config, st store.Store, log *slog.Logger, errs *ratelog.Logger) (store.Store, *fleetSync, error) {
	local, ok := st.(fleet.Local)
	if !ok {
		st.Close()
		return nil, nil, errors.New("sync: the store is not one a fleet keeps in step (fleet.Local): only the memory store is")
	}
	log = log.With("sync", redisurl.Redact(cfg.Sync))
	bus, err := redisbus.Open(ctx, cfg.Sync, redisbus.Options{Timeout: cfg.RedisTimeout, Logger: log})
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("sync: %w", err)
	}
	fst := fleet.NewStore(local, fleet.StoreConfig{Streams: bus.NumStreams(), PeerIDs: cfg.PeerIDs})
	node, err := fleet.NewNode(fst, bus, fleet.Config{Logger: log, Errors: errs})
	if err != nil {
		bus.Close()
		st.Close()
		return nil, nil, fmt.Errorf("sync: %w", err)
	}
	log.Info("sync on: the swarms are kept in step with the other instances of the fleet", "instance", fst.Instance().String(), "streams", bus.NumStreams())
	info, err := node.Join(ctx, fleet.JoinConfig{})
	switch {
	case err == nil:
		log.Info("sync: joined the fleet: swarms taken from a running instance", "donor", info.Donor.String(),
			"swarms", info.Swarms, "peers", info.Peers, "bytes", info.Bytes, "took", info.Took.Round(time.Millisecond))
	case errors.Is(err, fleet.ErrNoDonor):
		log.Info("sync: no running instance answered; starting from the state file if there is one, else empty", "waited", fleet.DefaultJoinWait)
	default:
		log.Warn("sync: could not join the fleet; starting from the state file if there is one, else empty", "err", err)
	}
	return fst, &fleetSync{node: node, bus: bus, joined: err == nil}, nil
}

// storeError is a store that could not be opened: worth another try (Redis
// may come up), unlike a configuration error.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// retryEvery is how long Open waits between attempts to reach the store.
const retryEvery = 2 * time.Second

// openStoreRetry is openStore that, when the store cannot be reached, logs
// why and tries again every retryEvery until ctx ends.
func openStoreRetry(ctx context.Context, cfg config.Config, log *slog.Logger, errs *ratelog.Logger) (store.Store, error) {
	for attempt := 1; ; attempt++ {
		st, err := openStore(ctx, cfg, log, errs)
		var se *storeError
		if err == nil || !errors.As(err, &se) {
			if err == nil && attempt > 1 {
				log.Info("store reachable", "attempts", attempt)
			}
			return st, err
		}
		log.Error("cannot open the store; retrying", "err", err, "attempt", attempt, "retry_in", retryEvery)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("store: %w (gave up: %v)", err, context.Cause(ctx))
		case <-time.After(retryEvery):
		}
	}
}
