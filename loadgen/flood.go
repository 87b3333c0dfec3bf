package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FloodConfig is a flood of UDP announces of random info hashes: every
// announce makes a new torrent of one peer, the cheapest thing an attacker
// can make a tracker keep (about 100 bytes for one 98-byte packet). Beside
// it a well-behaved client announces to a swarm of two peers it made
// before the flood, every Probe, and checks that it still works.
type FloodConfig struct {
	UDP         string // the target, "host:port" or udp:// URL
	AllowRemote bool   // permit a target that is not loopback
	// Rate is the announces per second the flood sends, Duration how long.
	Rate     int
	Duration time.Duration
	Sockets  int    // sending sockets, each from its own 127.x address on IPv4 loopback
	Seed     uint64 // seeds the random info hashes, peer ids and ports
	// Probe is the period of the well-behaved client's announce; 0 for
	// none.
	Probe time.Duration
	// Timeout is how long the well-behaved client waits for a reply.
	Timeout time.Duration
	// Progress, if not nil, gets a line of counts every second.
	Progress io.Writer
}

// DefaultFloodConfig returns the defaults of trackd-load -flood.
func DefaultFloodConfig() FloodConfig {
	return FloodConfig{Rate: 20000, Duration: 60 * time.Second, Sockets: 4, Seed: 1, Probe: 500 * time.Millisecond, Timeout: 2 * time.Second}
}

// maxFloodDuration bounds a flood: the machine is shared.
const maxFloodDuration = 30 * time.Minute

func (c *FloodConfig) check() error {
	switch {
	case c.UDP == "":
		return errors.New("-flood needs -udp")
	case c.Rate < 1 || c.Rate > 10_000_000:
		return errors.New("-rate must be between 1 and 10000000")
	case c.Duration <= 0 || c.Duration > maxFloodDuration:
		return fmt.Errorf("-duration must be positive and at most %v", maxFloodDuration)
	case c.Sockets < 1 || c.Sockets > 256:
		return errors.New("-sockets must be between 1 and 256 with -flood")
	case c.Probe < 0 || c.Timeout <= 0:
		return errors.New("-probe must not be negative, -timeout must be positive")
	}
	return nil
}

// FloodResult is what a flood saw.
type FloodResult struct {
	Target  string        `json:"target"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Sent    uint64        `json:"sent"`
	// Answered announces: taken (an announce reply) or refused (an error
	// packet, by text). Sent less both is what went unanswered.
	Taken   uint64            `json:"taken"`
	Refused map[string]uint64 `json:"refused"`
	// The well-behaved client: announces sent, those that failed (no
	// reply in Timeout, an error packet, or fewer than 2 peers counted),
	// and the slowest reply.
	Probes        int               `json:"probes"`
	ProbeFailures int               `json:"probe_failures"`
	ProbeErrors   map[string]uint64 `json:"probe_errors"`
	ProbeMax      time.Duration     `json:"probe_max_ns"`
}

// Format writes r for a person.
func (r *FloodResult) Format(w io.Writer) {
	fmt.Fprintf(w, "flood of %s: %d announces of new torrents in %.1fs (%.0f/s): %d taken, %d refused",
		r.Target, r.Sent, r.Elapsed.Seconds(), float64(r.Sent)/r.Elapsed.Seconds(), r.Taken, sum(r.Refused))
	fmt.Fprintf(w, ", %d unanswered\n", r.Sent-min(r.Sent, r.Taken+sum(r.Refused)))
	for _, k := range sortedKeys(r.Refused) {
		fmt.Fprintf(w, "  refused %d: %q\n", r.Refused[k], k)
	}
	fmt.Fprintf(w, "well-behaved client: %d announces to a known swarm, %d failed, slowest %v\n",
		r.Probes, r.ProbeFailures, r.ProbeMax.Round(time.Microsecond))
	for _, k := range sortedKeys(r.ProbeErrors) {
		fmt.Fprintf(w, "  failed %d: %s\n", r.ProbeErrors[k], k)
	}
}

// JSON returns r as one line of JSON.
func (r *FloodResult) JSON() []byte {
	b, _ := json.Marshal(r)
	return b
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// floodCounts are the flood's counts, shared by its goroutines.
type floodCounts struct {
	sent, taken atomic.Uint64
	mu          sync.Mutex
	refused     map[string]uint64
}

func (c *floodCounts) refuse(msg string) {
	c.mu.Lock()
	c.refused[msg]++
	c.mu.Unlock()
}

func (c *floodCounts) refusedTotal() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sum(c.refused)
}

// Flood runs the flood cfg describes until its Duration passes or ctx
// ends.
func Flood(ctx context.Context, cfg FloodConfig) (FloodResult, error) {
	if err := cfg.check(); err != nil {
		return FloodResult{}, err
	}
	tgt, err := resolveTarget("udp", cfg.UDP, cfg.AllowRemote)
	if err != nil {
		return FloodResult{}, err
	}
	if tgt.addr.Port() == 0 {
		return FloodResult{}, fmt.Errorf("-udp %q: port 0", cfg.UDP)
	}
	res := FloodResult{Target: tgt.addr.String(), Refused: map[string]uint64{}, ProbeErrors: map[string]uint64{}}

	var probe *udpPeerConn
	var probeHash [20]byte
	if cfg.Probe > 0 {
		// The well-behaved swarm: two peers (two ports of one address),
		// made before the flood.
		if probe, err = dialPeerConn(tgt, netip.Addr{}, cfg.Timeout); err != nil {
			return res, fmt.Errorf("well-behaved client: %w", err)
		}
		defer probe.conn.Close()
		binary.BigEndian.PutUint64(probeHash[:], mix64(cfg.Seed^0x70726f6265))
		for _, port := range []uint16{40001, 40002} {
			if _, err := probe.announce(probeHash, port, 2); err != nil {
				return res, fmt.Errorf("well-behaved client, before the flood: %w", err)
			}
		}
	}

	conns := make([]*udpPeerConn, cfg.Sockets)
	for s := range conns {
		var src netip.Addr
		if tgt.bind {
			src = SourceAddr(s)
		}
		if conns[s], err = dialPeerConn(tgt, src, cfg.Timeout); err != nil {
			for _, c := range conns[:s] {
				c.conn.Close()
			}
			return res, err
		}
	}
	counts := &floodCounts{refused: res.Refused}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for s, c := range conns {
		wg.Add(2)
		go func() { defer wg.Done(); c.readReplies(counts) }()
		go func() {
			defer wg.Done()
			c.flood(ctx, cfg, s, start, counts)
		}()
	}
	if probe != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(cfg.Probe)
			defer t.Stop()
			port := uint16(40001)
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				t0 := time.Now()
				peers, err := probe.announce(probeHash, port, 0)
				d := time.Since(t0)
				res.Probes++
				res.ProbeMax = max(res.ProbeMax, d)
				if err == nil && peers < 2 {
					err = fmt.Errorf("the swarm has %d peers, want 2", peers)
				}
				if err != nil {
					res.ProbeFailures++
					res.ProbeErrors[err.Error()]++
				}
				port ^= 40001 ^ 40002
			}
		}()
	}
	if cfg.Progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					fmt.Fprintf(cfg.Progress, "t=%.0fs sent=%d taken=%d refused=%d\n",
						now.Sub(start).Seconds(), counts.sent.Load(), counts.taken.Load(), counts.refusedTotal())
				}
			}
		}()
	}
	<-ctx.Done()
	// Replies still on their way: a moment, then close the sockets, which
	// ends the readers.
	time.Sleep(200 * time.Millisecond)
	for _, c := range conns {
		c.conn.Close()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Sent, res.Taken = counts.sent.Load(), counts.taken.Load()
	return res, nil
}

// udpPeerConn is a socket of the flood or of the well-behaved client, with
// its connection id.
type udpPeerConn struct {
	conn    *net.UDPConn
	connID  uint64
	idAt    time.Time
	timeout time.Duration
	buf     [2048]byte
}

func dialPeerConn(tgt target, src netip.Addr, timeout time.Duration) (*udpPeerConn, error) {
	var laddr *net.UDPAddr
	if src.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	conn, err := net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(tgt.addr))
	if err != nil {
		return nil, err
	}
	conn.SetWriteBuffer(4 << 20)
	conn.SetReadBuffer(4 << 20)
	c := &udpPeerConn{conn: conn, timeout: timeout}
	if err := c.connect(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// exchange sends req and reads replies until one with transaction id tx
// comes, or the timeout.
func (c *udpPeerConn) exchange(req []byte, tx uint32) ([]byte, error) {
	if _, err := c.conn.Write(req); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.timeout)
	c.conn.SetReadDeadline(deadline)
	defer c.conn.SetReadDeadline(time.Time{})
	for {
		n, err := c.conn.Read(c.buf[:])
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				return nil, fmt.Errorf("no reply within %v", c.timeout)
			}
			return nil, err
		}
		if b := c.buf[:n]; n >= 8 && binary.BigEndian.Uint32(b[4:]) == tx {
			return b, nil
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// connect gets a connection id.
func (c *udpPeerConn) connect() error {
	var req [udpConnectLen]byte
	const tx = 0xc0ec7
	b, err := c.exchange(putConnect(req[:], tx), tx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if len(b) < udpConnectLen || binary.BigEndian.Uint32(b) != actionConnect {
		return fmt.Errorf("connect: reply %x", b)
	}
	c.connID, c.idAt = binary.BigEndian.Uint64(b[8:]), time.Now()
	return nil
}

// announce sends one announce of a seeder on port to hash and returns the
// peers the reply counts (seeders + leechers).
func (c *udpPeerConn) announce(hash [20]byte, port uint16, event uint32) (int, error) {
	if time.Since(c.idAt) > time.Minute {
		if err := c.connect(); err != nil {
			return 0, err
		}
	}
	var req [udpAnnounceLen]byte
	const tx = 0xa770
	floodPacket(req[:], c.connID, tx, hash, port, event)
	b, err := c.exchange(req[:], tx)
	if err != nil {
		return 0, err
	}
	switch {
	case len(b) >= 8 && binary.BigEndian.Uint32(b) == actionError:
		return 0, fmt.Errorf("error packet %q", b[8:])
	case len(b) < udpAnnounceHdrLen || binary.BigEndian.Uint32(b) != actionAnnounce:
		return 0, fmt.Errorf("reply %x", b)
	}
	return int(binary.BigEndian.Uint32(b[12:]) + binary.BigEndian.Uint32(b[16:])), nil
}

// floodPacket writes an announce of a seeder on port to hash into b[:98],
// numwant 0.
func floodPacket(b []byte, connID uint64, tx uint32, hash [20]byte, port uint16, event uint32) {
	initAnnounce(b, 0)
	binary.BigEndian.PutUint64(b[0:], connID)
	binary.BigEndian.PutUint32(b[12:], tx)
	copy(b[16:36], hash[:])
	copy(b[36:44], peerIDPrefix)
	binary.BigEndian.PutUint64(b[44:52], uint64(port)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint32(b[80:], event)
	binary.BigEndian.PutUint16(b[96:], port)
}

// flood sends announces of random info hashes at cfg.Rate / cfg.Sockets a
// second until ctx ends, renewing the connection id every minute (the
// reader takes the reply).
func (c *udpPeerConn) flood(ctx context.Context, cfg FloodConfig, s int, start time.Time, counts *floodCounts) {
	r := newRNG(cfg.Seed ^ uint64(s+1)<<32 ^ 0x666c6f6f64)
	rate := float64(cfg.Rate) / float64(cfg.Sockets)
	var req [udpAnnounceLen]byte
	var hash [20]byte
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(c.idAt) > time.Minute {
			var creq [udpConnectLen]byte
			c.conn.Write(putConnect(creq[:], 0xc0ec7))
			c.idAt = time.Now() // the reader stores the new id
		}
		due := int(time.Since(start).Seconds()*rate) - sent
		for range min(due, 10000) {
			binary.BigEndian.PutUint64(hash[0:], r.next())
			binary.BigEndian.PutUint64(hash[8:], r.next())
			binary.BigEndian.PutUint32(hash[16:], uint32(r.next()))
			floodPacket(req[:], atomic.LoadUint64(&c.connID), uint32(sent), hash, uint16(portBase+r.intn(portSpan)), uint32(evStarted))
			if _, err := c.conn.Write(req[:]); err != nil {
				if ctx.Err() != nil {
					return
				}
				continue // a full socket buffer (ENOBUFS): the packet is lost, as on a wire
			}
			sent++
			counts.sent.Add(1)
		}
	}
}

// readReplies counts the flood's replies until the socket is closed.
func (c *udpPeerConn) readReplies(counts *floodCounts) {
	buf := make([]byte, 2048)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		b := buf[:n]
		if n < 8 {
			continue
		}
		switch binary.BigEndian.Uint32(b) {
		case actionAnnounce:
			counts.taken.Add(1)
		case actionError:
			counts.refuse(strings.ToValidUTF8(string(b[8:]), "?"))
		case actionConnect:
			if n >= udpConnectLen {
				atomic.StoreUint64(&c.connID, binary.BigEndian.Uint64(b[8:]))
			}
		}
	}
}
