package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runner is what the workers of one target share. Everything but stop is
// read-only while they run.
type runner struct {
	cfg       *Config
	wl        *Workload
	tgt       target   // the first of tgts: protocol, source binding
	tgts      []target // the instances of a fleet (one target: one)
	start     int64    // nanotime of the start
	measStart int64    // start of the measurement (after the warm-up)
	end       int64    // end of the measurement
	stop      atomic.Bool
	workers   int
	ws        *wsRun // the WebSocket mode's shared state
}

// measuring reports whether a reply received at now counts.
func (r *runner) measuring(now int64) bool {
	return r.cfg.Fill || r.cfg.WSIdle > 0 || now >= r.measStart
}

// over reports whether workers should stop sending.
func (r *runner) over(now int64) bool {
	return r.stop.Load() || (!r.cfg.Fill && now >= r.end)
}

// worker is a UDP socket or an HTTP connection with its goroutine.
type worker interface {
	run()
	stats() (warm, meas *Stats)
	close()
}

// Run runs the generator as cfg says and returns one Result per target. It
// stops by itself: after Warmup + Duration, after a Fill, at MaxTime, or
// when ctx is done (the Results then cover what was measured so far).
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var tgts [][]target // per protocol, its instances
	for _, p := range [...]struct{ proto, s string }{{"udp", cfg.UDP}, {"http", cfg.HTTP}, {"ws", cfg.WS}} {
		if p.s == "" {
			continue
		}
		ts, err := resolveTargets(p.proto, p.s, cfg.AllowRemote, cfg.Roam)
		if err != nil {
			return nil, err
		}
		tgts = append(tgts, ts)
	}
	// Every worker of a target binds one source address, so there are at
	// most as many addresses as workers; none when the target is not on
	// IPv4 loopback.
	addrs := 0
	for _, ts := range tgts {
		if t := ts[0]; t.bind {
			n := cfg.workers(t.proto)
			if addrs == 0 {
				addrs = cfg.SourceAddrs
			}
			addrs = min(addrs, n)
		}
	}
	addrs = max(addrs, 1)
	peers := cfg.Peers
	if cfg.WS != "" {
		peers = cfg.WSConns * cfg.WSTorrents
		lim, err := raiseNoFile()
		if err != nil {
			return nil, fmt.Errorf("raising the limit on open files: %v", err)
		}
		if uint64(cfg.WSConns)+64 > lim {
			return nil, fmt.Errorf("-ws-conns %d: the limit on open files is %d (raise the hard limit: ulimit -Hn)", cfg.WSConns, lim)
		}
	}
	wl, err := newWorkload(cfg.Torrents, peers, addrs, cfg.Seed, cfg.Seeders, cfg.Zipf)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.maxTime())
	defer cancel()

	var conv *converger
	if cfg.Converge > 0 {
		// Over the first protocol's instances: UDP if given, else HTTP.
		conv, err = newConverger(&cfg, tgts[0], nil)
		if err != nil {
			return nil, err
		}
		defer conv.close()
	}

	runners := make([]*runner, len(tgts))
	workers := make([][]worker, len(tgts))
	closeAll := func() {
		for _, ws := range workers {
			for _, w := range ws {
				w.close()
			}
		}
	}
	for i, ts := range tgts {
		t := ts[0]
		r := &runner{cfg: &cfg, wl: wl, tgt: t, tgts: ts}
		runners[i] = r
		if i == 0 && conv != nil {
			conv.over = func() bool { return r.over(nanotime()) }
		}
		n := min(cfg.workers(t.proto), wl.peers) // a worker needs a peer to play
		if len(ts) > 1 && !cfg.Roam && n < len(ts) {
			closeAll()
			return nil, fmt.Errorf("-%s: %d instances and %d %s: each peer sticking to one instance, every instance needs a worker of its own (more -sockets or -conns, or -roam)",
				t.proto, len(ts), n, map[string]string{"udp": "sockets", "http": "connections"}[t.proto])
		}
		r.workers = n
		if t.proto == "ws" {
			r.ws = newWSRun(r, n)
		}
		for s := range n {
			var w worker
			switch t.proto {
			case "udp":
				w, err = newUDPWorker(r, s, n)
			case "http":
				w = newHTTPWorker(r, s, n)
			default:
				w = newWSWorker(r, r.ws, s, n)
			}
			if err != nil {
				closeAll()
				return nil, err
			}
			workers[i] = append(workers[i], w)
		}
	}

	// WebSocket connections are opened before the clock starts (a few
	// hundred at a time), so that the warm-up and the measurement are not
	// a crowd of handshakes; a failure is counted, and the worker dials
	// again when it runs.
	for i, r := range runners {
		if r.ws != nil && cfg.WSIdle == 0 {
			r.end = math.MaxInt64
			connectAll(ctx, workers[i])
		}
	}
	start := nanotime()
	for _, r := range runners {
		r.start = start
		r.measStart = start + int64(cfg.Warmup)
		r.end = r.measStart + int64(cfg.Duration)
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			for _, r := range runners {
				r.stop.Store(true)
			}
		case <-stopped:
		}
	}()
	var wg sync.WaitGroup
	if conv != nil {
		r := runners[0]
		wg.Go(func() {
			// The probes start after the warm-up (which builds the
			// swarms) and stop with the run.
			for nanotime() < r.measStart && !r.over(nanotime()) {
				time.Sleep(min(10*time.Millisecond, time.Duration(r.measStart-nanotime())))
			}
			conv.run()
		})
	}
	for _, r := range runners {
		if r.ws != nil && cfg.WSIdle > 0 {
			wg.Go(func() { r.ws.waitIdle(r, r.workers, cfg.Progress) })
		}
	}
	for _, ws := range workers {
		for _, w := range ws {
			wg.Go(w.run)
		}
	}
	wg.Wait()
	close(stopped)
	finish := nanotime()
	closeAll()

	results := make([]Result, len(runners))
	for i, r := range runners {
		var meas Stats
		if r.ws != nil {
			_, meas = r.ws.merged()
		} else {
			for _, w := range workers[i] {
				_, m := w.stats()
				meas.Merge(m)
			}
		}
		from := r.measStart
		if cfg.Fill {
			from = r.start
		}
		if r.ws != nil && cfg.WSIdle > 0 {
			results[i] = r.result(&meas, 0)
			if end := r.ws.holdEnd.Load(); end != 0 {
				results[i].Seconds = time.Duration(min(finish, end) - (end - int64(cfg.WSIdle))).Seconds()
			}
			results[i].IdleOpen = r.ws.alive.Load()
			results[i].IdleReady = r.ws.ready.Load()
			continue
		}
		results[i] = r.result(&meas, time.Duration(max(min(finish, r.end), from)-from))
		if i == 0 && conv != nil {
			results[i].Converge = &conv.res
		}
		if cfg.Fill {
			results[i].Seconds = time.Duration(finish - from).Seconds()
			results[i].ResponsesPerSec = rate(meas.Responses, finish-from)
		}
	}
	return results, nil
}

func rate(n uint64, d int64) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / time.Duration(d).Seconds()
}

// Result is the outcome of one target's run.
type Result struct {
	Protocol string `json:"protocol"`
	// Target is the address loaded; a fleet's addresses separated by
	// commas, whose responses TargetResponses counts one by one.
	Target          string   `json:"target"`
	TargetResponses []uint64 `json:"target_responses,omitempty"`
	Roam            bool     `json:"roam,omitempty"` // see Config.Roam
	Mode            string   `json:"mode"`           // "load" or "fill"
	HTTPClose       bool     `json:"http_close,omitempty"`
	Seconds         float64  `json:"seconds"` // measured time
	Warmup          float64  `json:"warmup_seconds"`
	Workers         int      `json:"workers"` // sockets or connections
	Window          int      `json:"window"`
	SourceAddrs     int      `json:"source_addrs"`
	Torrents        int      `json:"torrents"`
	Peers           int      `json:"peers"`

	Sent      uint64 `json:"sent"`
	Responses uint64 `json:"responses"`
	Announces uint64 `json:"announces"`
	Scrapes   uint64 `json:"scrapes"`
	Connects  uint64 `json:"connects"`
	Errors    uint64 `json:"errors"`
	Timeouts  uint64 `json:"timeouts"`
	Late      uint64 `json:"late"`

	// TLS says how HTTPS was spoken (see Config.TLSResume); Resumed counts
	// the connections whose handshake resumed a session.
	TLS     string `json:"tls,omitempty"`
	Resumed uint64 `json:"tls_resumed,omitempty"`

	ResponsesPerSec float64 `json:"responses_per_sec"`
	LatencyMeanUS   float64 `json:"latency_mean_us"`
	LatencyP50US    float64 `json:"latency_p50_us"`
	LatencyP90US    float64 `json:"latency_p90_us"`
	LatencyP99US    float64 `json:"latency_p99_us"`
	LatencyMaxUS    float64 `json:"latency_max_us"`
	MeanPeers       float64 `json:"mean_peers_per_announce"`

	// Converge is what the convergence probe saw (Config.Converge), on
	// the Result of the protocol it used.
	Converge *ConvergeResult `json:"converge,omitempty"`

	// The WebSocket mode (see Stats). Messages are those the tracker
	// delivered: announce replies, relayed offers and relayed answers.
	Offers          int     `json:"ws_offers_per_announce,omitempty"`
	SDPBytes        int     `json:"ws_sdp_bytes,omitempty"`
	OffersSent      uint64  `json:"offers_sent,omitempty"`
	OffersReceived  uint64  `json:"offers_received,omitempty"`
	OffersToSelf    uint64  `json:"offers_to_self,omitempty"`
	AnswersSent     uint64  `json:"answers_sent,omitempty"`
	AnswersReceived uint64  `json:"answers_received,omitempty"`
	Messages        uint64  `json:"messages,omitempty"`
	MessagesPerSec  float64 `json:"messages_per_sec,omitempty"`
	AnswerP50US     float64 `json:"answer_latency_p50_us,omitempty"`
	AnswerP99US     float64 `json:"answer_latency_p99_us,omitempty"`
	// Idle mode: connections announced before the hold, and open at its
	// end.
	IdleReady int64 `json:"idle_ready,omitempty"`
	IdleOpen  int64 `json:"idle_open,omitempty"`

	ErrorMessages map[string]uint64 `json:"error_messages,omitempty"`
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func (r *runner) result(s *Stats, d time.Duration) Result {
	res := Result{
		Protocol:    r.tgt.proto,
		Target:      r.tgt.addr.String(),
		Roam:        r.cfg.Roam && len(r.tgts) > 1,
		Mode:        "load",
		HTTPClose:   r.tgt.proto == "http" && r.cfg.HTTPClose,
		Seconds:     d.Seconds(),
		Warmup:      r.cfg.Warmup.Seconds(),
		Workers:     r.workers,
		Window:      r.cfg.Window,
		SourceAddrs: r.wl.addrs,
		Torrents:    r.wl.torrents,
		Peers:       r.wl.peers,
		Sent:        s.Sent,
		Responses:   s.Responses,
		Announces:   s.Announces,
		Scrapes:     s.Scrapes,
		Connects:    s.Connects,
		TLS:         r.tlsDesc(),
		Resumed:     s.Resumed,
		Errors:      s.Errors,
		Timeouts:    s.Timeouts,
		Late:        s.Late,

		ResponsesPerSec: rate(s.Responses, int64(d)),
		LatencyMeanUS:   us(s.Latency.Mean()),
		LatencyP50US:    us(s.Latency.Quantile(0.50)),
		LatencyP90US:    us(s.Latency.Quantile(0.90)),
		LatencyP99US:    us(s.Latency.Quantile(0.99)),
		LatencyMaxUS:    us(s.Latency.Max()),
		ErrorMessages:   s.ErrorMsgs,
	}
	if r.cfg.Fill {
		res.Mode = "fill"
		res.Warmup = 0
	}
	if r.tgt.proto == "http" && r.cfg.HTTPClose {
		res.Window = 1
	}
	if r.tgt.proto == "ws" {
		res.Window = r.cfg.WSWindow
		res.Offers, res.SDPBytes = r.cfg.WSOffers, r.cfg.WSSDPBytes
		res.OffersSent, res.OffersReceived, res.OffersToSelf = s.OffersSent, s.OffersReceived, s.OffersToSelf
		res.AnswersSent, res.AnswersReceived = s.AnswersSent, s.AnswersReceived
		res.Messages = s.Announces + s.OffersReceived + s.AnswersReceived
		res.MessagesPerSec = rate(res.Messages, int64(d))
		res.AnswerP50US = us(s.AnswerLatency.Quantile(0.50))
		res.AnswerP99US = us(s.AnswerLatency.Quantile(0.99))
		if r.cfg.WSIdle > 0 {
			res.Mode = "idle"
			res.Warmup = 0
		}
	}
	if len(r.tgts) > 1 {
		addrs := make([]string, len(r.tgts))
		for i, t := range r.tgts {
			addrs[i] = t.addr.String()
		}
		res.Target = strings.Join(addrs, ",")
		res.TargetResponses = append([]uint64(nil), s.PerTarget[:len(r.tgts)]...)
	}
	if s.Announces > 0 {
		res.MeanPeers = float64(s.Peers) / float64(s.Announces)
	}
	return res
}

// JSON returns the result as one line of JSON.
func (r *Result) JSON() []byte {
	b, _ := json.Marshal(r)
	return b
}

// Format writes the result for people.
func (r *Result) Format(w io.Writer) {
	mode := ""
	if r.HTTPClose {
		mode = ", a new connection per request"
	}
	workers := "sockets"
	if r.Protocol != "udp" {
		workers = "connections"
	}
	if r.Protocol == "ws" {
		r.formatWS(w)
		return
	}
	fmt.Fprintf(w, "%s %s: %d torrents, %d peers, %d %s × window %d, %d source address(es)%s\n",
		r.Protocol, r.Target, r.Torrents, r.Peers, r.Workers, workers, r.Window, r.SourceAddrs, mode)
	if r.Mode == "fill" {
		fmt.Fprintf(w, "  fill:        %d of %d peers announced (started) in %.2f s, %.0f/s\n",
			r.Announces, r.Peers, r.Seconds, r.ResponsesPerSec)
	} else {
		fmt.Fprintf(w, "  measured:    %.2f s after %.2f s of warm-up\n", r.Seconds, r.Warmup)
		fmt.Fprintf(w, "  responses:   %d  (%.0f/s)  announces %d, scrapes %d, connects %d\n",
			r.Responses, r.ResponsesPerSec, r.Announces, r.Scrapes, r.Connects)
		if r.TLS != "" {
			fmt.Fprintf(w, "  tls:         %s; %d of %d handshakes resumed\n", r.TLS, r.Resumed, r.Connects)
		}
	}
	fmt.Fprintf(w, "  errors:      %d   timeouts: %d   late replies: %d   (requests sent: %d)\n",
		r.Errors, r.Timeouts, r.Late, r.Sent)
	fmt.Fprintf(w, "  latency:     mean %s  p50 %s  p90 %s  p99 %s  max %s\n",
		fmtUS(r.LatencyMeanUS), fmtUS(r.LatencyP50US), fmtUS(r.LatencyP90US), fmtUS(r.LatencyP99US), fmtUS(r.LatencyMaxUS))
	fmt.Fprintf(w, "  peers:       %.2f per announce\n", r.MeanPeers)
	if r.Converge != nil {
		r.Converge.Format(w)
	}
	if len(r.TargetResponses) > 0 {
		how := "each peer sticks to one instance"
		if r.Roam {
			how = "each peer's announces go to the instances in turn"
		}
		fmt.Fprintf(w, "  instances:   %d (%s); responses of each:", len(r.TargetResponses), how)
		for _, n := range r.TargetResponses {
			fmt.Fprintf(w, " %d", n)
		}
		fmt.Fprintln(w)
	}
	r.formatErrors(w)
}

func (r *Result) formatErrors(w io.Writer) {
	msgs := make([]string, 0, len(r.ErrorMessages))
	for m := range r.ErrorMessages {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool {
		a, b := r.ErrorMessages[msgs[i]], r.ErrorMessages[msgs[j]]
		return a > b || a == b && msgs[i] < msgs[j]
	})
	for i, m := range msgs {
		if i == 20 {
			fmt.Fprintf(w, "  ... and %d more error messages\n", len(msgs)-i)
			break
		}
		fmt.Fprintf(w, "  error × %d: %s\n", r.ErrorMessages[m], m)
	}
}

func fmtUS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

// errMsg is the message an error is counted under: network errors lose
// their addresses so that one cause makes one line.
func errMsg(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}

func (r *Result) formatWS(w io.Writer) {
	fmt.Fprintf(w, "ws %s: %d torrents, %d connections × %d torrents each, window %d, %d offers of %d-byte SDPs per announce, %d source address(es)\n",
		r.Target, r.Torrents, r.Workers, r.Peers/max(r.Workers, 1), r.Window, r.Offers, r.SDPBytes, r.SourceAddrs)
	if r.Mode == "idle" {
		fmt.Fprintf(w, "  idle:        %d connections opened, %d announced, %d still open after %.2f s of hold\n",
			r.Connects, r.IdleReady, r.IdleOpen, r.Seconds)
	} else {
		fmt.Fprintf(w, "  measured:    %.2f s after %.2f s of warm-up; connections opened: %d\n", r.Seconds, r.Warmup, r.Connects)
	}
	fmt.Fprintf(w, "  messages:    %d delivered by the tracker (%.0f/s): announce replies %d, offers relayed %d, answers relayed %d\n",
		r.Messages, r.MessagesPerSec, r.Announces, r.OffersReceived, r.AnswersReceived)
	fmt.Fprintf(w, "  sent:        announces %d, offers in them %d, answers %d; offers relayed back to their sender: %d\n",
		r.Sent, r.OffersSent, r.AnswersSent, r.OffersToSelf)
	fmt.Fprintf(w, "  errors:      %d   timeouts: %d   late replies: %d\n", r.Errors, r.Timeouts, r.Late)
	fmt.Fprintf(w, "  latency:     announce reply mean %s  p50 %s  p90 %s  p99 %s  max %s\n",
		fmtUS(r.LatencyMeanUS), fmtUS(r.LatencyP50US), fmtUS(r.LatencyP90US), fmtUS(r.LatencyP99US), fmtUS(r.LatencyMaxUS))
	fmt.Fprintf(w, "               offer to answer p50 %s  p99 %s\n", fmtUS(r.AnswerP50US), fmtUS(r.AnswerP99US))
	r.formatErrors(w)
}
