package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/bittorrent"
	"trackd/internal/ratelog"
	"trackd/store"
)

// Sizes of the sweeper's batches: buckets whose due torrents are read in
// one pipeline, due torrents read per bucket, and expire scripts per
// pipeline.
const (
	sweepBuckets  = 128
	sweepTorrents = 64
	sweepScripts  = 128
)

// loop runs a round of background work every interval until Close.
func (s *Store) loop() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.round(ctx)
	}
}

// round is one round of background work: the instance with the lease
// sweeps (for at most half an interval) and sums the bucket counts into
// the totals key; the others read that key.
func (s *Store) round(ctx context.Context) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	err := s.work(ctx)
	if ctx.Err() != nil {
		return // closing
	}
	// A failure is logged through s.errs: at once, then at most one line
	// (with a count) per interval however often the rounds fail.
	switch {
	case err != nil:
		s.errs.Log(ctx, slog.LevelWarn, ratelog.KindStoreBackground,
			"redis store: background round failed; totals go stale, expired peers wait", "err", err)
	case s.failing:
		s.log.Info("redis store: background rounds work again")
	}
	s.failing = err != nil
}

func (s *Store) work(ctx context.Context) error {
	lead, err := s.takeLease(ctx)
	if err != nil {
		return err
	}
	if lead != s.leading {
		s.log.Debug("redis store: sweeper lease", "held", lead)
		s.leading = lead
	}
	if !lead {
		return s.refreshTotals(ctx, false)
	}
	cut, _ := s.cut()
	if err := s.sweep(ctx, cut, time.Now().Add(s.interval/2)); err != nil {
		return err
	}
	return s.refreshTotals(ctx, true)
}

// leaseTTL is how long the sweeper's lease lasts unless renewed: a few
// rounds, so that another instance takes over soon after the holder dies.
func (s *Store) leaseTTL() time.Duration { return max(3*s.interval, 3*time.Second) }

// takeLease takes or renews the sweeper's lease and reports whether this
// instance holds it.
func (s *Store) takeLease(ctx context.Context) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.sc.lease.Run(ctx, s.rdb, []string{s.leaseKey}, s.token, s.leaseTTL().Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("sweeper lease: %w", err)
	}
	return n == 1, nil
}

// Settle implements store.Settler: it brings Totals up to date at once,
// at the store's clock: it drops every expired peer (as the sweeper does,
// in bounded steps) and sums the bucket counts, whether or not this
// instance holds the sweeper's lease. The conformance suite calls it
// before it checks Totals; in production the background rounds do the
// same every Options.Interval.
func (s *Store) Settle(ctx context.Context) error {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	cut, _ := s.cut()
	if err := s.sweep(ctx, cut, time.Time{}); err != nil {
		return err
	}
	return s.refreshTotals(ctx, true)
}

// refreshTotals refreshes the copy of the totals Totals returns: with sum,
// from the bucket counts (one pipeline), which it also writes to the totals
// key for the other instances; without, from that key. s.bgMu must be held.
func (s *Store) refreshTotals(ctx context.Context, sum bool) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var tot store.Totals
	if sum {
		pipe := s.rdb.Pipeline()
		cmds := make([]*goredis.SliceCmd, numBuckets)
		for b := range cmds {
			cmds[b] = pipe.HMGet(ctx, s.bucketN[b], totalsFields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("totals: %w", err)
		}
		var sum [numTotalsFields]int64
		for _, c := range cmds {
			v := c.Val()
			for i := range sum {
				sum[i] += field(v, i)
			}
		}
		tot = totalsOf(sum[:])
		err := s.rdb.HSet(ctx, s.totalsKey, "s", tot.Seeders, "l", tot.Leechers, "t", tot.Torrents,
			"s6", tot.Seeders6, "l6", tot.Leechers6).Err()
		if err != nil {
			return fmt.Errorf("totals: %w", err)
		}
	} else {
		v, err := s.rdb.HMGet(ctx, s.totalsKey, totalsFields...).Result()
		if err != nil {
			return fmt.Errorf("totals: %w", err)
		}
		var got [numTotalsFields]int64
		for i := range got {
			got[i] = field(v, i)
		}
		tot = totalsOf(got[:])
	}
	s.totals.Store(&totalsCopy{Totals: tot, at: time.Now()})
	return nil
}

// totalsFields are the fields of a bucket's count hash and of the totals
// key, in the order totalsOf reads them.
var totalsFields = []string{"s", "l", "t", "s6", "l6"}

const numTotalsFields = 5

// totalsOf makes Totals of counts in the order of totalsFields.
func totalsOf(c []int64) store.Totals {
	n := func(i int) uint64 { return uint64(max(c[i], 0)) }
	return store.Totals{Seeders: n(0), Leechers: n(1), Torrents: n(2), Seeders6: n(3), Leechers6: n(4)}
}

// field returns v[i] of an HMGET reply as a number, 0 if missing.
func field(v []any, i int) int64 {
	if i >= len(v) {
		return 0
	}
	str, _ := v[i].(string)
	n, _ := strconv.ParseInt(str, 10, 64)
	return n
}

// dueTorrent is a torrent the sweeper found due.
type dueTorrent struct {
	b int
	h bittorrent.InfoHash
}

// sweep drops the peers expired at cut (see scripts.go) of every torrent whose due time
// has passed, bucket batch by bucket batch, until none is left or the
// deadline (none if zero) passes. Each call to Redis is bounded: a page of
// due torrents per bucket, and a script per torrent that removes at most
// 1000 peers per set. s.bgMu must be held.
func (s *Store) sweep(ctx context.Context, cut int64, deadline time.Time) error {
	until := strconv.FormatInt(cut, 10)
	const batches = (numBuckets + sweepBuckets - 1) / sweepBuckets
	for i := range batches {
		// A round cut short by its deadline ends at s.sweepFrom, where
		// the next one starts, so that every bucket gets its turn.
		batch := (s.sweepFrom + i) % batches
		buckets := make([]int, 0, sweepBuckets)
		for b := batch * sweepBuckets; b < min((batch+1)*sweepBuckets, numBuckets); b++ {
			buckets = append(buckets, b)
		}
		for len(buckets) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				s.sweepFrom = batch
				return nil // the rest waits for the next round
			}
			due, err := s.dueTorrents(ctx, buckets, until)
			if err != nil {
				return err
			}
			// A bucket that filled its page, or whose torrents kept
			// expired peers, is looked at again.
			again := make(map[int]bool)
			var all []dueTorrent
			for b, hs := range due {
				if len(hs) == sweepTorrents {
					again[b] = true
				}
				for _, h := range hs {
					all = append(all, dueTorrent{b, h})
				}
			}
			for len(all) > 0 {
				n := min(len(all), sweepScripts)
				left, err := s.expireBatch(ctx, all[:n], cut)
				if err != nil {
					return err
				}
				for _, b := range left {
					again[b] = true
				}
				all = all[n:]
			}
			buckets = buckets[:0]
			for b := range again {
				buckets = append(buckets, b)
			}
		}
	}
	return nil
}

// dueTorrents returns, by bucket, up to sweepTorrents torrents of each of
// buckets whose due time is at or before until: one pipeline.
func (s *Store) dueTorrents(ctx context.Context, buckets []int, until string) (map[int][]bittorrent.InfoHash, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pipe := s.rdb.Pipeline()
	cmds := make([]*goredis.StringSliceCmd, len(buckets))
	for i, b := range buckets {
		cmds[i] = pipe.ZRangeArgs(ctx, goredis.ZRangeArgs{
			Key: s.bucketD[b], Start: "-inf", Stop: until, ByScore: true, Count: sweepTorrents,
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	due := make(map[int][]bittorrent.InfoHash)
	for i, c := range cmds {
		for _, m := range c.Val() {
			if len(m) != len(bittorrent.InfoHash{}) {
				continue
			}
			var h bittorrent.InfoHash
			copy(h[:], m)
			due[buckets[i]] = append(due[buckets[i]], h)
		}
	}
	return due, nil
}

// expireBatch runs the expire script for each torrent of batch in one
// pipeline and returns the buckets of those that still hold expired peers.
func (s *Store) expireBatch(ctx context.Context, batch []dueTorrent, cut int64) ([]int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cutArg := strconv.FormatInt(cut, 10)
	keys := make([][]string, len(batch))
	pipe := s.rdb.Pipeline()
	cmds := make([]*goredis.Cmd, len(batch))
	for i := range batch {
		keys[i], _ = s.torrentKeys(make([]string, 0, numKeys), &batch[i].h, nil)
		cmds[i] = s.sc.expire.EvalSha(ctx, pipe, keys[i], string(batch[i].h[:]), cutArg)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	var left []int
	for i, c := range cmds {
		res, err := c.Int64Slice()
		if isNoScript(err) {
			// Redis lost its scripts (a restart): Run loads it again.
			res, err = s.sc.expire.Run(ctx, s.rdb, keys[i], string(batch[i].h[:]), cutArg).Int64Slice()
		}
		if err != nil {
			return nil, fmt.Errorf("sweep: %w", err)
		}
		if len(res) == 2 && res[1] == 1 {
			left = append(left, batch[i].b)
		}
	}
	return left, nil
}

// isNoScript reports whether err says that Redis does not know a script.
func isNoScript(err error) bool {
	return err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT")
}
