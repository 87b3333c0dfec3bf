package loadgen

// event is an announce's event, numbered as on the UDP wire (BEP 15).
type event uint8

const (
	evNone      event = 0
	evCompleted event = 1
	evStarted   event = 2
	evStopped   event = 3
)

// String returns the event's name as in an HTTP announce ("" for none).
func (e event) String() string {
	return [...]string{"", "completed", "started", "stopped"}[e]
}

// isScrape reports whether the next request is a scrape: true with
// probability ScrapeShare. With no scrapes it draws nothing from r, so that
// the announces' sequence is the same as before scrapes could be asked for.
func (c *Config) isScrape(r *rng) bool {
	return c.ScrapeShare > 0 && r.chance(c.ScrapeShare)
}

// laneEvents picks the events of a lane's announces and remembers which of
// its peers last announced stopped (one bit each), so that their next
// announce is started again, as a client that leaves and comes back.
type laneEvents struct {
	stopped []uint64
}

func newLaneEvents(n int, cfg *Config) laneEvents {
	if cfg.Stopped <= 0 {
		return laneEvents{}
	}
	return laneEvents{stopped: make([]uint64, (n+63)/64)}
}

// next returns the event of lane peer local's announce. first is its first
// announce of the run, seeder whether it is a seeder: a first announce, or
// the first after a stopped, is started; otherwise, with probability
// Stopped it is stopped, else for a leecher with probability Completed
// it is completed, else none. It does not allocate, and with Stopped and
// Completed zero it draws nothing from r.
func (e *laneEvents) next(r *rng, cfg *Config, local int, first, seeder bool) event {
	if e.stopped != nil {
		w, bit := local/64, uint64(1)<<(local%64)
		if e.stopped[w]&bit != 0 {
			e.stopped[w] &^= bit
			return evStarted
		}
		if !first && r.chance(cfg.Stopped) {
			e.stopped[w] |= bit
			return evStopped
		}
	}
	if first {
		return evStarted
	}
	if !seeder && cfg.Completed > 0 && r.chance(cfg.Completed) {
		return evCompleted
	}
	return evNone
}
