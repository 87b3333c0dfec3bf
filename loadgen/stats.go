package loadgen

import (
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets: exact below 16 ns,
// then 16 buckets per power of two, so a bucket is at most 1/16 (6.25 %)
// of its value wide. It has a fixed size, never allocates, and is not safe
// for concurrent use (each worker has its own; Merge combines them).
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64
	max    uint64
}

const (
	histSub     = 16
	histMaxExp  = 42 // values up to 2^46 ns (about 19 hours) are kept exact-ish
	histBuckets = (histMaxExp + 1) * histSub
)

func histBucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 5 // v has e+5 bits: 1xxxx followed by e bits
	b := (e+1)*histSub + int(v>>uint(e))&(histSub-1)
	if b >= histBuckets {
		b = histBuckets - 1
	}
	return b
}

// histUpper returns the largest value that falls in bucket b.
func histUpper(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	e := b/histSub - 1
	sub := uint64(b % histSub)
	return (histSub+sub+1)<<uint(e) - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[histBucket(v)]++
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest sample.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean sample.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Quantile returns the upper bound of the bucket holding the q-quantile
// (0 < q <= 1), capped at the largest sample: at most 6.25 % above it.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histUpper(b), h.max))
		}
	}
	return time.Duration(h.max)
}

// Stats are the counters of one worker, or of several merged.
type Stats struct {
	Sent      uint64 // requests sent
	Responses uint64 // valid replies of any kind
	Announces uint64 // valid announce replies
	Scrapes   uint64 // valid scrape replies
	Connects  uint64 // valid UDP connect replies / HTTP connections opened
	Resumed   uint64 // HTTPS connections whose TLS handshake resumed a session
	Peers     uint64 // peers in valid announce replies
	Errors    uint64 // invalid replies, error replies, failed connections
	Timeouts  uint64 // requests unanswered after the timeout
	Late      uint64 // replies that came after their request timed out
	// WebSocket mode: offers sent in announces, relayed offers received
	// (and those of them relayed back to their own sender), answers sent,
	// relayed answers received.
	OffersSent, OffersReceived, OffersToSelf uint64
	AnswersSent, AnswersReceived             uint64
	// PerTarget counts Responses by instance, when a protocol's target is
	// a list (a fleet).
	PerTarget [MaxTargets]uint64
	// ErrorMsgs counts Errors by message.
	ErrorMsgs map[string]uint64
	// Latency of valid replies, from the request's send to the reply's
	// receipt.
	Latency Histogram
	// AnswerLatency (WebSocket mode) is from an offer's send to the receipt
	// of the answer to it, through the tracker, the answering peer and the
	// tracker again.
	AnswerLatency Histogram
}

func (s *Stats) addError(msg string) { s.addErrors(msg, 1) }

func (s *Stats) addErrors(msg string, n uint64) {
	if n == 0 {
		return
	}
	s.Errors += n
	if s.ErrorMsgs == nil {
		s.ErrorMsgs = make(map[string]uint64)
	}
	s.ErrorMsgs[msg] += n
}

// Merge adds o to s.
func (s *Stats) Merge(o *Stats) {
	s.Sent += o.Sent
	s.Responses += o.Responses
	s.Announces += o.Announces
	s.Scrapes += o.Scrapes
	s.Connects += o.Connects
	s.Resumed += o.Resumed
	s.Peers += o.Peers
	s.Timeouts += o.Timeouts
	s.Late += o.Late
	s.OffersSent += o.OffersSent
	s.OffersReceived += o.OffersReceived
	s.OffersToSelf += o.OffersToSelf
	s.AnswersSent += o.AnswersSent
	s.AnswersReceived += o.AnswersReceived
	for i, n := range o.PerTarget {
		s.PerTarget[i] += n
	}
	for m, n := range o.ErrorMsgs {
		s.addErrors(m, n)
	}
	s.Latency.Merge(&o.Latency)
	s.AnswerLatency.Merge(&o.AnswerLatency)
}

// epoch anchors nanotime; time.Since uses the monotonic clock.
var epoch = time.Now()

// nanotime returns monotonic nanoseconds since the package was loaded.
func nanotime() int64 { return int64(time.Since(epoch)) }
