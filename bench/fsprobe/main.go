// Command fsprobe measures what full scrapes do to announces: while
// -scrapers clients ask a tracker for the full scrape over and over (each
// on its own keep-alive connection, accepting gzip, -pause between two), two well-behaved
// clients announce every -every, one on a new connection per announce and
// one on a keep-alive connection, and the latency of every announce is
// recorded. It prints one line per client: count, failures, p50, p99 and
// max. bench/fullscrape.sh runs it; loopback only, bounded by -duration.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6969", "tracker `host:port` (loopback)")
	duration := flag.Duration("duration", 20*time.Second, "how long to measure")
	scrapers := flag.Int("scrapers", 2, "clients asking for the full scrape in a loop")
	pause := flag.Duration("pause", 500*time.Millisecond, "wait of each scraper between two full scrapes (0: back to back)")
	every := flag.Duration("every", 50*time.Millisecond, "period of each announcing client")
	timeout := flag.Duration("timeout", 30*time.Second, "an announce unanswered this long fails")
	flag.Parse()
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "fsprobe: -addr must be a loopback host:port")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()

	var wg sync.WaitGroup
	scrapes := make([]*series, *scrapers)
	for i := range scrapes {
		scrapes[i] = &series{name: fmt.Sprintf("full scrape %d", i+1)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			scrape(ctx, *addr, *pause, scrapes[i])
		}()
	}
	// Announcers start once the scrapers are at work.
	time.Sleep(200 * time.Millisecond)
	fresh := &series{name: "announce, new connection each"}
	kept := &series{name: "announce, keep-alive"}
	for i, s := range []*series{fresh, kept} {
		tr := &http.Transport{Proxy: nil, DisableKeepAlives: s == fresh, DisableCompression: true, MaxIdleConnsPerHost: 1}
		c := &http.Client{Transport: tr, Timeout: *timeout}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			announce(ctx, c, *addr, i, *every, s)
		}()
	}
	wg.Wait()
	for _, s := range append([]*series{fresh, kept}, scrapes...) {
		fmt.Println(s)
	}
}

// series is the latencies of one client.
type series struct {
	name   string
	mu     sync.Mutex
	lat    []time.Duration
	failed int
	bytes  int64
}

func (s *series) add(d time.Duration, err error, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failed++
		return
	}
	s.lat = append(s.lat, d)
	s.bytes += n
}

func (s *series) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.lat)
	q := func(p float64) time.Duration {
		if len(s.lat) == 0 {
			return 0
		}
		return s.lat[min(int(p*float64(len(s.lat))), len(s.lat)-1)]
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }
	line := fmt.Sprintf("%-32s n=%d failed=%d p50_ms=%s p99_ms=%s max_ms=%s", s.name+":", len(s.lat), s.failed,
		ms(q(0.5)), ms(q(0.99)), ms(q(1)))
	if strings.HasPrefix(s.name, "full scrape") && len(s.lat) > 0 {
		line += fmt.Sprintf(" body_bytes=%d", s.bytes/int64(len(s.lat)))
	}
	return line
}

// scrape asks for the full scrape until ctx ends, on one keep-alive
// connection, pausing between two, and records each reply's time and size.
func scrape(ctx context.Context, addr string, pause time.Duration, s *series) {
	tr := &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/scrape", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		start := time.Now()
		res, err := c.Do(req)
		var n int64
		if err == nil {
			n, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err == nil && res.Header.Get("Content-Encoding") != "gzip" {
				err = fmt.Errorf("not gzipped") // a failure reason: not ready yet
				time.Sleep(100 * time.Millisecond)
			}
		}
		if ctx.Err() != nil {
			return // cut by the end of the run: not a sample
		}
		s.add(time.Since(start), err, n)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// announce announces every period until ctx ends, as one peer of its own
// torrent, and records each reply's time; a reply without "interval" is a
// failure.
func announce(ctx context.Context, c *http.Client, addr string, id int, every time.Duration, s *series) {
	ih := url.QueryEscape(fmt.Sprintf("fsprobe-torrent-%04d", id))
	pid := url.QueryEscape(fmt.Sprintf("-FS0001-fsprobe%05d", id))
	u := fmt.Sprintf("http://%s/announce?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=0&compact=1&numwant=20",
		addr, ih, pid, 7000+id)
	next := time.Now()
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			return
		}
		next = next.Add(every)
		req, _ := http.NewRequest("GET", u, nil) // not ctx: the last one finishes
		start := time.Now()
		res, err := c.Do(req)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(res.Body)
			res.Body.Close()
			if err == nil && !bytes.Contains(body, []byte("8:intervali")) {
				err = fmt.Errorf("reply %q", body)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "fsprobe: %s: %v\n", s.name, err)
		}
		s.add(time.Since(start), err, 0)
	}
}
