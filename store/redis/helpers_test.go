package redis

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"trackd/bittorrent"
	"trackd/store"
)

// testLifetime is the peer lifetime of the stores of these tests.
const testLifetime = 30 * time.Minute

// fakeClock is a clock safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// hashN returns a distinct, SHA-1-like info hash for each n.
func hashN(n int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	r := rand.NewPCG(uint64(n), 0x1f0)
	binary.LittleEndian.PutUint64(h[:], r.Uint64())
	binary.LittleEndian.PutUint64(h[8:], r.Uint64())
	binary.LittleEndian.PutUint32(h[16:], uint32(n))
	return h
}

// peerN returns a distinct IPv4 peer for each n < 2^24, IPv6 when v6.
func peerN(n int, v6 bool) bittorrent.Peer {
	var id bittorrent.PeerID
	copy(id[:], "-TT0001-")
	binary.BigEndian.PutUint32(id[16:], uint32(n))
	addr := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	if v6 {
		addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)})
	}
	return bittorrent.Peer{ID: id, Addr: netip.AddrPortFrom(addr, uint16(1024+n%50000))}
}

// mustAnnounce announces and fails t on error.
func mustAnnounce(t testing.TB, s store.Store, a store.Announce) ([]bittorrent.Peer, bittorrent.Stats) {
	t.Helper()
	peers, st, err := s.Announce(context.Background(), a, nil)
	if err != nil {
		t.Fatalf("Announce(%v, %v): %v", a.InfoHash, a.Peer.Addr, err)
	}
	return peers, st
}

// scrapeAll returns everything ScrapeAll visits.
func scrapeAll(t testing.TB, s store.Store) map[bittorrent.InfoHash]bittorrent.Stats {
	t.Helper()
	m := make(map[bittorrent.InfoHash]bittorrent.Stats)
	err := s.ScrapeAll(context.Background(), func(h bittorrent.InfoHash, st bittorrent.Stats) error {
		if _, dup := m[h]; dup {
			t.Errorf("ScrapeAll visited %v twice", h)
		}
		m[h] = st
		return nil
	})
	if err != nil {
		t.Fatalf("ScrapeAll: %v", err)
	}
	return m
}

// commandStats returns the calls of every command since the server's
// stats were last reset, from INFO commandstats, summed over clients
// (one per server of a cluster); and under the name "usec:" + command, the
// microseconds the server spent in it.
func commandStats(t testing.TB, clients ...*goredis.Client) map[string]int64 {
	t.Helper()
	m := make(map[string]int64)
	for _, c := range clients {
		info, err := c.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatalf("INFO commandstats: %v", err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || !strings.HasPrefix(name, "cmdstat_") {
				continue
			}
			name = strings.TrimPrefix(name, "cmdstat_")
			for field := range strings.SplitSeq(rest, ",") {
				k, v, _ := strings.Cut(field, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "calls":
					m[name] += n
				case "usec":
					m["usec:"+name] += n
				}
			}
		}
	}
	return m
}

// usedMemory returns INFO memory's used_memory, summed over clients.
func usedMemory(t testing.TB, clients ...*goredis.Client) int64 {
	t.Helper()
	var sum int64
	for _, c := range clients {
		info, err := c.Info(context.Background(), "memory").Result()
		if err != nil {
			t.Fatalf("INFO memory: %v", err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				sum += n
			}
		}
	}
	return sum
}

// redisCPU returns the CPU time, in µs, that the servers' main threads have
// used (INFO cpu): unlike commandstats' usec, a loaded machine's waits for
// a CPU are not in it.
func redisCPU(t testing.TB, clients ...*goredis.Client) float64 {
	t.Helper()
	var sum float64
	for _, c := range clients {
		info, err := c.Info(context.Background(), "cpu").Result()
		if err != nil {
			t.Fatalf("INFO cpu: %v", err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_sys_main_thread" || k == "used_cpu_user_main_thread" {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f * 1e6
			}
		}
	}
	return sum
}
