package server

import (
	"context"
	"errors"
	"io/fs"
	"sync"
	"time"

	"trackd/snapshot"
	"trackd/store"
)

// stateFile keeps the in-memory store across restarts: it is read once at
// start and written every StateInterval and at shutdown (config.State). It
// needs a store.Snapshotter.
type stateFile struct {
	path  string
	store store.Snapshotter
	flags uint32
	mu    sync.Mutex // one write at a time
}

// loadState reads the snapshot at path into st, unless the store has
// joined a fleet (config.Sync): its swarms are then a running instance's,
// fresher than the file's. A missing file is a first start. A file that cannot be decoded (truncated, corrupt, from a newer
// trackd) is reported, moved aside, never deleted, and trackd starts empty.
// Other errors (permissions) stop the start: better than running without
// the snapshot the operator asked for and then overwriting it.
func (s *Server) loadState(st store.Store) (*stateFile, error) {
	ss, ok := st.(store.Snapshotter)
	if !ok {
		return nil, errors.New("the store has no state file (it is no store.Snapshotter): only the in-memory store has one")
	}
	sf := &stateFile{path: s.cfg.State, store: ss}
	if s.cfg.PeerIDs {
		sf.flags = snapshot.FlagPeerIDs
	}
	if s.sync != nil && s.sync.joined {
		s.log.Info("state file not read: the swarms came from a running instance of the fleet", "file", sf.path)
		return sf, nil
	}
	start := time.Now()
	info, err := snapshot.Read(sf.path, ss.Restore)
	switch {
	case err == nil:
		tot, _ := st.Totals(context.Background())
		s.log.Info("state loaded", "file", sf.path, "written", info.WrittenAt.UTC().Format(time.RFC3339),
			"swarms", info.Swarms, "peers_in_file", info.Peers, "peers_alive", tot.Peers(),
			"took", time.Since(start).Round(time.Millisecond))
	case errors.Is(err, fs.ErrNotExist):
		s.log.Info("no state file yet; starting empty", "file", sf.path)
	case errors.Is(err, snapshot.ErrCorrupt):
		aside, merr := snapshot.MoveAside(sf.path)
		if merr != nil {
			return nil, errors.Join(err, merr)
		}
		s.log.Error("state file unreadable; moved aside, starting empty", "file", sf.path, "moved_to", aside, "err", err)
	default:
		return nil, err
	}
	return sf, nil
}

// save writes a snapshot of the store.
func (sf *stateFile) save() (snapshot.Info, error) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return snapshot.Write(sf.path, sf.flags, func(put func(*snapshot.Swarm) error) error {
		return sf.store.Dump(put)
	})
}

// saveState writes the snapshot and logs how it went.
func (s *Server) saveState(why string) error {
	if s.state == nil {
		return nil
	}
	start := time.Now()
	info, err := s.state.save()
	if err != nil {
		s.log.Error("state not written", "file", s.state.path, "why", why, "err", err)
		return err
	}
	s.log.Info("state written", "file", s.state.path, "why", why, "swarms", info.Swarms, "peers", info.Peers,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// saveStatePeriodically writes the snapshot every StateInterval until ctx
// ends.
func (s *Server) saveStatePeriodically(ctx context.Context) {
	t := time.NewTicker(s.cfg.StateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.saveState("periodic")
		}
	}
}
