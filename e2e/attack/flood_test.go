package attack

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// floodResult counts what a UDP flood of new torrents got.
type floodResult struct {
	sent, announced, refused, lost int
	took                           time.Duration
}

func (r floodResult) String() string {
	return fmt.Sprintf("%d announces of new torrents in %v (%.0f/s): %d answered, %d refused with an error, %d unanswered",
		r.sent, r.took.Round(time.Millisecond), float64(r.sent)/r.took.Seconds(), r.announced, r.refused, r.lost)
}

// udpFlood announces count random info hashes (one new single-peer
// torrent each, the cheapest thing to create) to addr over UDP from src,
// at most rate a second (0: as fast as trackd answers), and stops after
// maxTime in any case. Two sockets each keep a window of announces in
// flight and wait for their replies, so the flood follows trackd's pace
// instead of overflowing its socket buffer.
func udpFlood(src, addr string, count int, rate float64, maxTime time.Duration) (floodResult, error) {
	const (
		sockets = 2
		window  = 64
		connAge = time.Minute // BEP 15 ids live at least 2 minutes
	)
	start := time.Now()
	end := start.Add(maxTime)
	var (
		mu    sync.Mutex
		total floodResult
		first error
		wg    sync.WaitGroup
	)
	for s := range sockets {
		quota := count / sockets
		if s == 0 {
			quota += count % sockets
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r floodResult
			err := floodSocket(src, addr, quota, rate/sockets, window, connAge, start, end, uint64(s), &r)
			mu.Lock()
			defer mu.Unlock()
			total.sent += r.sent
			total.announced += r.announced
			total.refused += r.refused
			total.lost += r.lost
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	total.took = time.Since(start)
	return total, first
}

func floodSocket(src, addr string, quota int, rate float64, window int, connAge time.Duration, start, end time.Time, seed uint64, r *floodResult) error {
	c, connID, err := udpConnect(src, addr, time.Now().Add(5*time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	connAt := time.Now()
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), seed))
	buf := make([]byte, 0, 128)
	in := make([]byte, 2048)
	var req udpAnnounceReq
	req.event = eventStarted
	for r.sent < quota && time.Now().Before(end) {
		if time.Since(connAt) > connAge {
			// Renew the connection id on the same socket.
			const tx = 0x5eed
			rep, _, err := udpExchange(c, appendConnect(buf[:0], tx), tx, time.Now().Add(5*time.Second))
			if err != nil || len(rep) < 16 {
				return fmt.Errorf("flood: renewing the connection id: %v", err)
			}
			connID, connAt = binary.BigEndian.Uint64(rep[8:]), time.Now()
		}
		n := min(window, quota-r.sent)
		for i := range n {
			for j := 0; j < 20; j += 8 {
				var w [8]byte
				binary.LittleEndian.PutUint64(w[:], rng.Uint64())
				copy(req.hash[j:], w[:])
			}
			binary.LittleEndian.PutUint64(req.peerID[:], rng.Uint64())
			req.port = uint16(1024 + rng.IntN(60000))
			buf = appendAnnounce(buf[:0], connID, uint32(i), &req)
			if _, err := c.Write(buf); err != nil {
				return fmt.Errorf("flood: %w", err)
			}
		}
		r.sent += n
		got := 0
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for got < n {
			m, err := c.Read(in)
			if err != nil {
				break
			}
			if m >= 8 {
				switch binary.BigEndian.Uint32(in) {
				case actionAnnounce:
					r.announced++
				case actionError:
					r.refused++
				}
			}
			got++
		}
		r.lost += n - got
		if rate > 0 {
			if ahead := time.Duration(float64(r.sent)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(min(ahead, time.Until(end)))
			}
		}
	}
	return nil
}
