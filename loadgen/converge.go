package loadgen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"trackd/bittorrent"
)

// The convergence probe measures how fast the instances of a fleet agree:
// while the load runs, it announces a fresh peer (a port of its own) to
// instance A and polls instance B with announces of its own (a leecher
// asking for many peers, on a torrent only the probe uses, so that every
// peer of the swarm fits in a reply) until the fresh peer is in B's
// reply: the join time. It then announces the peer stopped to A and polls
// B until the peer is gone from its reply: the leave time. Both are
// counted from the send of the announce to A to the receipt of the
// deciding reply from B, so they include one poll period at most and a
// round trip. Probe i goes from instance i mod N to instance (i+1) mod N;
// with one instance, A and B are the same.
//
// A reply counts only when it is valid and holds the whole swarm: a reply
// with fewer peers than the swarm's seeders and leechers (less the poller
// itself) is a sample, from which absence cannot be told, and is counted
// as an error. A probe whose peer never joined on B measures no leave.

// Defaults of the convergence probe.
const (
	DefaultConvergeWithin = 5 * time.Second
	DefaultConvergePoll   = 10 * time.Millisecond
	// convergeNumWant is the numwant of the polls: the probe's swarm
	// has the poller, the fresh peer and the stopped peers of probes
	// whose leave did not converge.
	convergeNumWant = 50
	// convergePortBase is the first port of the fresh peers (probe i
	// uses convergePortBase + i); the pollers use convergePollPort.
	convergePortBase = 20000
	convergePollPort = 19999
	// MaxConverge bounds the number of probes of a run.
	MaxConverge = 10000
	// convergeGap is the pause between two probes.
	convergeGap = 20 * time.Millisecond
)

// Probe announce events.
const (
	probeNone    = 0
	probeStarted = 2
	probeStopped = 3
)

// ConvergeResult is what the convergence probe saw.
type ConvergeResult struct {
	Probes    int     `json:"probes"` // probes that ran to their end
	Instances int     `json:"instances"`
	WithinSec float64 `json:"within_seconds"` // the bound of a wait
	PollUS    float64 `json:"poll_us"`        // the period of the polls
	Polls     uint64  `json:"polls"`
	// PollP50US and PollP99US are the round trip of a poll (request to
	// reply, valid or not): the part of the join and leave times that is
	// the request's own latency under the load.
	PollP50US    float64           `json:"poll_p50_us"`
	PollP99US    float64           `json:"poll_p99_us"`
	JoinP50US    float64           `json:"join_p50_us"`
	JoinP99US    float64           `json:"join_p99_us"`
	JoinMaxUS    float64           `json:"join_max_us"`
	JoinNever    int               `json:"join_never"` // fresh peers not seen on B within the bound
	LeaveP50US   float64           `json:"leave_p50_us"`
	LeaveP99US   float64           `json:"leave_p99_us"`
	LeaveMaxUS   float64           `json:"leave_max_us"`
	LeaveNever   int               `json:"leave_never"` // stopped peers still on B after the bound
	Errors       uint64            `json:"errors"`
	ErrorMessage map[string]uint64 `json:"error_messages,omitempty"`

	join, leave, rtt Histogram
}

func (c *ConvergeResult) addError(msg string) {
	c.Errors++
	if c.ErrorMessage == nil {
		c.ErrorMessage = make(map[string]uint64)
	}
	c.ErrorMessage[msg]++
}

func (c *ConvergeResult) finish() {
	c.JoinP50US, c.JoinP99US, c.JoinMaxUS = us(c.join.Quantile(0.5)), us(c.join.Quantile(0.99)), us(c.join.Max())
	c.LeaveP50US, c.LeaveP99US, c.LeaveMaxUS = us(c.leave.Quantile(0.5)), us(c.leave.Quantile(0.99)), us(c.leave.Max())
	c.PollP50US, c.PollP99US = us(c.rtt.Quantile(0.5)), us(c.rtt.Quantile(0.99))
}

// Format writes c for people.
func (c *ConvergeResult) Format(w io.Writer) {
	fmt.Fprintf(w, "  converge:    %d probes over %d instance(s), polls every %s, bound %.1fs; %d polls (round trip p50 %s, p99 %s), %d errors\n",
		c.Probes, c.Instances, fmtUS(c.PollUS), c.WithinSec, c.Polls, fmtUS(c.PollP50US), fmtUS(c.PollP99US), c.Errors)
	fmt.Fprintf(w, "    join:      p50 %s  p99 %s  max %s  never %d\n", fmtUS(c.JoinP50US), fmtUS(c.JoinP99US), fmtUS(c.JoinMaxUS), c.JoinNever)
	fmt.Fprintf(w, "    leave:     p50 %s  p99 %s  max %s  never %d\n", fmtUS(c.LeaveP50US), fmtUS(c.LeaveP99US), fmtUS(c.LeaveMaxUS), c.LeaveNever)
	for _, k := range sortedKeys(c.ErrorMessage) {
		fmt.Fprintf(w, "    error × %d: %s\n", c.ErrorMessage[k], k)
	}
}

// probeClient announces the probe's peers to one instance.
type probeClient interface {
	// announce sends one announce of a leecher and returns the peers of
	// the reply and the swarm's size (seeders + leechers) as the reply
	// says, the reply checked.
	announce(a *probeAnnounce) (peers []netip.AddrPort, swarm int, err error)
	close()
}

// probeAnnounce is one announce of the probe.
type probeAnnounce struct {
	hash    bittorrent.InfoHash
	id      bittorrent.PeerID
	port    uint16
	event   uint32 // probeNone, probeStarted, probeStopped
	numwant int
}

// convergeSource is the source address of the probe's requests on IPv4
// loopback: one no worker of the workload uses (they use SourceAddr(0 ..
// MaxSourceAddrs-1)).
func convergeSource() netip.Addr { return SourceAddr(MaxSourceAddrs) }

// converger runs the probes over the instances of one protocol.
type converger struct {
	cfg     *Config
	clients []probeClient
	self    netip.Addr // the address the instances see the probe's peers at
	hash    bittorrent.InfoHash
	over    func() bool // the run is over: stop
	res     ConvergeResult
}

// newConverger opens a probe client to each instance of tgts.
func newConverger(cfg *Config, tgts []target, over func() bool) (*converger, error) {
	c := &converger{cfg: cfg, over: over}
	c.res.Instances = len(tgts)
	c.res.WithinSec = cfg.ConvergeWithin.Seconds()
	c.res.PollUS = us(cfg.ConvergePoll)
	binary.BigEndian.PutUint64(c.hash[0:], mix64(cfg.Seed^0x636f6e7665726765))
	binary.BigEndian.PutUint64(c.hash[8:], mix64(cfg.Seed^0x70726f6265))
	var src netip.Addr
	if tgts[0].bind {
		src = convergeSource()
	}
	for _, t := range tgts {
		var pc probeClient
		var self netip.Addr
		var err error
		if t.proto == "udp" {
			pc, self, err = dialUDPProbe(t, src, cfg.Timeout)
		} else {
			pc, self, err = newHTTPProbe(t, src, cfg.Timeout)
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("convergence probe, %s: %w", t.addr, err)
		}
		c.clients = append(c.clients, pc)
		c.self = self
	}
	return c, nil
}

func (c *converger) close() {
	for _, pc := range c.clients {
		pc.close()
	}
}

// run runs up to cfg.Converge probes, until the run is over.
func (c *converger) run() {
	for i := 0; i < c.cfg.Converge && !c.over(); i++ {
		n := len(c.clients)
		if !c.probe(i, c.clients[i%n], c.clients[(i+1)%n]) {
			break
		}
		time.Sleep(convergeGap)
	}
	c.res.finish()
}

// probeID is the peer id of the probe's peer on port.
func probeID(port uint16) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], "-TL0100-")
	copy(id[8:], "probe")
	binary.BigEndian.PutUint16(id[13:], port)
	return id
}

// probe runs probe i: join through a, seen on b, leave through a, gone on
// b. It reports false when the run ended before the probe did (the
// probe is then not counted).
func (c *converger) probe(i int, a, b probeClient) bool {
	port := uint16(convergePortBase + i)
	want := netip.AddrPortFrom(c.self, port)
	ann := probeAnnounce{hash: c.hash, id: probeID(port), port: port, event: probeStarted, numwant: convergeNumWant}
	t0 := time.Now()
	if _, _, err := a.announce(&ann); err != nil {
		c.res.addError("announce to A: " + err.Error())
		return !c.over()
	}
	d, ok, done := c.await(b, want, true, t0)
	if !done {
		return false
	}
	joined := ok
	if ok {
		c.res.join.Record(d)
	} else {
		c.res.JoinNever++
	}
	ann.event = probeStopped
	t0 = time.Now()
	if _, _, err := a.announce(&ann); err != nil {
		c.res.addError("stopped announce to A: " + err.Error())
		c.res.Probes++
		return !c.over()
	}
	if !joined {
		// Never seen on B: its absence there tells nothing.
		c.res.Probes++
		return true
	}
	d, ok, done = c.await(b, want, false, t0)
	if !done {
		return false
	}
	if ok {
		c.res.leave.Record(d)
	} else {
		c.res.LeaveNever++
	}
	c.res.Probes++
	return true
}

// await polls b until want is in its reply (present) or not (!present),
// at most ConvergeWithin after t0. It returns the time from t0 to the
// deciding reply and whether it came; done is false when the run ended
// first.
func (c *converger) await(b probeClient, want netip.AddrPort, present bool, t0 time.Time) (d time.Duration, ok, done bool) {
	poll := probeAnnounce{hash: c.hash, id: probeID(convergePollPort), port: convergePollPort, numwant: convergeNumWant}
	for first := true; ; first = false {
		if c.over() {
			return 0, false, false
		}
		if !first {
			time.Sleep(c.cfg.ConvergePoll)
		}
		if time.Since(t0) > c.cfg.ConvergeWithin {
			return 0, false, true
		}
		sent := time.Now()
		peers, swarm, err := b.announce(&poll)
		now := time.Now()
		c.res.Polls++
		c.res.rtt.Record(now.Sub(sent))
		if err != nil {
			c.res.addError("poll of B: " + err.Error())
			continue
		}
		found := false
		self := netip.AddrPortFrom(c.self, convergePollPort)
		selfIn := false
		for _, p := range peers {
			found = found || p == want
			selfIn = selfIn || p == self
		}
		if !selfIn && len(peers) < swarm-1 || selfIn && len(peers) < swarm {
			c.res.addError(fmt.Sprintf("poll of B: the reply has %d of the swarm's %d peers (a sample: cannot tell)", len(peers), swarm))
			continue
		}
		if found == present {
			return now.Sub(t0), true, true
		}
	}
}

// errProbePeers is a probe reply whose peers cannot be read.
var errProbePeers = errors.New("peers of the reply are not whole addresses")

// udpProbe is a UDP probe client: a socket connected to one instance.
type udpProbe struct {
	pc  *udpPeerConn
	tx  uint32
	req [udpAnnounceLen]byte
	v6  bool
}

func dialUDPProbe(t target, src netip.Addr, timeout time.Duration) (*udpProbe, netip.Addr, error) {
	pc, err := dialPeerConn(t, src, timeout)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	self := pc.conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return &udpProbe{pc: pc, v6: t.addr.Addr().Is6(), tx: 1 << 31}, self, nil
}

func (u *udpProbe) close() { u.pc.conn.Close() }

func (u *udpProbe) announce(a *probeAnnounce) ([]netip.AddrPort, int, error) {
	if time.Since(u.pc.idAt) > time.Minute {
		if err := u.pc.connect(); err != nil {
			return nil, 0, err
		}
	}
	u.tx++ // a late reply to an earlier request is not taken for this one's
	b := initAnnounce(u.req[:], a.numwant)
	p := Peer{InfoHash: a.hash, ID: a.id, Port: a.port, Key: uint32(a.port)}
	patchAnnounce(b, u.pc.connID, u.tx, &p, evNone)
	binary.BigEndian.PutUint32(b[80:], a.event)
	reply, err := u.pc.exchange(b, u.tx)
	if err != nil {
		return nil, 0, err
	}
	size := 6
	if u.v6 {
		size = 18
	}
	if _, err := checkUDPReply(reply, udpWant{action: actionAnnounce, tx: u.tx, numwant: a.numwant, peerSize: size}); err != nil {
		return nil, 0, err
	}
	swarm := int(binary.BigEndian.Uint32(reply[12:]) + binary.BigEndian.Uint32(reply[16:]))
	peers, err := parsePeers(reply[udpAnnounceHdrLen:], size, nil)
	return peers, swarm, err
}

// parsePeers appends the compact peers of b, size bytes each (6: IPv4,
// 18: IPv6), to dst.
func parsePeers(b []byte, size int, dst []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(b)%size != 0 {
		return dst, errProbePeers
	}
	for ; len(b) > 0; b = b[size:] {
		var a netip.Addr
		if size == 6 {
			a = netip.AddrFrom4([4]byte(b[:4]))
		} else {
			a = netip.AddrFrom16([16]byte(b[:16])).Unmap()
		}
		dst = append(dst, netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[size-2:])))
	}
	return dst, nil
}

// httpProbe is an HTTP probe client: a keep-alive connection to one
// instance, opened again after an error.
type httpProbe struct {
	t       target
	dialer  net.Dialer
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	buf     []byte
}

func newHTTPProbe(t target, src netip.Addr, timeout time.Duration) (*httpProbe, netip.Addr, error) {
	h := &httpProbe{t: t, timeout: timeout, dialer: net.Dialer{Timeout: timeout}}
	if src.IsValid() {
		h.dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	if err := h.dial(); err != nil {
		return nil, netip.Addr{}, err
	}
	self := h.conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	return h, self, nil
}

func (h *httpProbe) dial() error {
	c, err := h.dialer.Dial("tcp", h.t.addr.String())
	if err != nil {
		return err
	}
	h.conn, h.br = c, bufio.NewReader(c)
	return nil
}

func (h *httpProbe) close() {
	if h.conn != nil {
		h.conn.Close()
		h.conn = nil
	}
}

func (h *httpProbe) announce(a *probeAnnounce) ([]netip.AddrPort, int, error) {
	if h.conn == nil {
		if err := h.dial(); err != nil {
			return nil, 0, err
		}
	}
	b := append(h.buf[:0], "GET "...)
	b = append(b, h.t.path...)
	b = append(b, "?info_hash="...)
	b = appendEscaped(b, a.hash[:])
	b = append(b, "&peer_id="...)
	b = appendEscaped(b, a.id[:])
	b = append(b, "&port="...)
	b = strconv.AppendUint(b, uint64(a.port), 10)
	b = append(b, "&uploaded=0&downloaded=0&left="...)
	b = strconv.AppendUint(b, leftLeecher, 10)
	b = append(b, "&numwant="...)
	b = strconv.AppendInt(b, int64(a.numwant), 10)
	b = append(b, "&compact=1"...)
	switch a.event {
	case probeStarted:
		b = append(b, "&event=started"...)
	case probeStopped:
		b = append(b, "&event=stopped"...)
	}
	b = appendRequestEnd(b, &httpReq{host: h.t.host})
	h.buf = b
	h.conn.SetDeadline(time.Now().Add(h.timeout))
	if _, err := h.conn.Write(b); err != nil {
		h.close()
		return nil, 0, errors.New(errMsg(err))
	}
	status, body, closeConn, err := readHTTPResponse(h.br, nil)
	if err != nil {
		h.close()
		return nil, 0, errors.New(errMsg(err))
	}
	if closeConn {
		h.close()
	}
	if status != 200 {
		return nil, 0, &StatusError{Code: status}
	}
	if _, err := checkHTTPAnnounce(body, a.numwant); err != nil {
		return nil, 0, err
	}
	m, _ := decodeDict(body) // checked above
	swarm := int(m["complete"].(int64) + m["incomplete"].(int64))
	peers, err := parsePeers([]byte(m["peers"].(string)), 6, nil)
	if err != nil {
		return nil, 0, err
	}
	if p6, ok := m["peers6"].(string); ok {
		if peers, err = parsePeers([]byte(p6), 18, peers); err != nil {
			return nil, 0, err
		}
	}
	return peers, swarm, nil
}
