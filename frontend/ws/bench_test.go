package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"trackd/bittorrent"
	"trackd/internal/race"
	"trackd/tracker"
)

// realSDP is an offer as a browser makes it for a data channel with
// trickle off (Chromium's shape: two host candidates, two srflx, an
// mDNS one), about 2.3 KB, written as JSON.stringify writes it.
func realSDP(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v=0\r\no=- %d 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n", 4611731400430051336+n)
	b.WriteString("m=application 51305 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 203.0.113.7\r\n")
	for i, c := range []string{
		"1467250027 1 udp 2122260223 192.168.1.17 51305 typ host generation 0 network-id 1 network-cost 10",
		"1467250028 1 udp 2122194687 10.0.0.17 49851 typ host generation 0 network-id 2 network-cost 10",
		"842163049 1 udp 1686052607 203.0.113.7 51305 typ srflx raddr 192.168.1.17 rport 51305 generation 0 network-id 1 network-cost 10",
		"842163050 1 udp 1686052607 198.51.100.3 49851 typ srflx raddr 10.0.0.17 rport 49851 generation 0 network-id 2 network-cost 10",
		"435653019 1 tcp 1518280447 192.168.1.17 9 typ host tcptype active generation 0 network-id 1 network-cost 10",
		"435653020 1 tcp 1518214911 10.0.0.17 9 typ host tcptype active generation 0 network-id 2 network-cost 10",
		"3960487412 1 udp 2122129151 4b8c6f2e-3c1d-4a4e-9d0b-7f2b1e9c5a10.local 55112 typ host generation 0 network-id 3",
	} {
		fmt.Fprintf(&b, "a=candidate:%s\r\n", c)
		if i == 3 {
			b.WriteString("a=ice-ufrag:Xk3q\r\na=ice-pwd:H8mWv2dQ0pW3sYt6ZbN1fK7c\r\na=ice-options:trickle\r\n")
		}
	}
	b.WriteString("a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n")
	b.WriteString("a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n")
	b.WriteString("a=ice-lite\r\na=end-of-candidates\r\na=x-google-flag:conference\r\na=rtcp-mux\r\na=rtcp-rsize\r\n")
	for b.Len() < 2300 {
		b.WriteString("a=x-padding:chromium-writes-more-attributes-than-this\r\n")
	}
	j, _ := json.Marshal(b.String())
	return string(j)
}

// offerMessage is an announce with n offers of real size.
func offerMessage(ih bittorrent.InfoHash, id [20]byte, n int) []byte {
	var b strings.Builder
	b.WriteString(`{"action":"announce","info_hash":` + js(ih[:]) + `,"peer_id":` + js(id[:]) + `,"numwant":` + fmt.Sprint(n) + `,"uploaded":0,"downloaded":0,"left":1048576,"event":"started","offers":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		var oid [20]byte
		copy(oid[:], fmt.Sprintf("\x00offer\xff%d", i))
		b.WriteString(`{"offer":{"type":"offer","sdp":` + realSDP(i) + `},"offer_id":` + js(oid[:]) + `}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func answerMessage(ih bittorrent.InfoHash, from, to [20]byte) []byte {
	return []byte(`{"action":"announce","info_hash":` + js(ih[:]) + `,"peer_id":` + js(from[:]) + `,"to_peer_id":` + js(to[:]) + `,"answer":{"type":"answer","sdp":` + realSDP(99) + `},"offer_id":` + js(offr1[:]) + `}`)
}

// stdMessage is what encoding/json reads a message into, for the
// comparison: the binary strings still need their check and conversion.
type stdMessage struct {
	Action   string          `json:"action"`
	InfoHash json.RawMessage `json:"info_hash"`
	PeerID   *string         `json:"peer_id"`
	ToPeerID *string         `json:"to_peer_id"`
	OfferID  *string         `json:"offer_id"`
	NumWant  *float64        `json:"numwant"`
	Left     *float64        `json:"left"`
	Event    string          `json:"event"`
	Offers   []struct {
		OfferID string          `json:"offer_id"`
		Offer   json.RawMessage `json:"offer"`
	} `json:"offers"`
	Answer json.RawMessage `json:"answer"`
}

var errStdBinary = errors.New("not a binary string")

func stdBinary(s string, out *[20]byte) error {
	n := 0
	for _, r := range s {
		if r > 0xff || n == 20 {
			return errStdBinary
		}
		out[n] = byte(r)
		n++
	}
	if n != 20 {
		return errStdBinary
	}
	return nil
}

// stdParse reads msg with encoding/json into m, as parse does.
func stdParse(msg []byte, m *message) error {
	var s stdMessage
	if err := json.Unmarshal(msg, &s); err != nil {
		return err
	}
	m.reset()
	if len(s.InfoHash) > 0 {
		var h string
		if err := json.Unmarshal(s.InfoHash, &h); err != nil {
			return err
		}
		if err := stdBinary(h, (*[20]byte)(&m.infoHash)); err != nil {
			return err
		}
	}
	if s.PeerID != nil {
		if err := stdBinary(*s.PeerID, &m.peerID); err != nil {
			return err
		}
	}
	for _, o := range s.Offers {
		var of offer
		if err := stdBinary(o.OfferID, &of.id); err != nil {
			return err
		}
		of.raw = o.Offer
		m.offers = append(m.offers, of)
	}
	m.answer = s.Answer
	return nil
}

// BenchmarkParse: the hand-rolled parser against encoding/json, on what
// webtorrent sends: an announce with 5 offers of about 2.3 KB SDP each,
// an announce with 1, and an answer.
func BenchmarkParse(b *testing.B) {
	msgs := []struct {
		name string
		msg  []byte
	}{
		{"offers5", offerMessage(ihX, idA, 5)},
		{"offers1", offerMessage(ihX, idA, 1)},
		{"answer", answerMessage(ihX, idA, idB)},
	}
	for _, m := range msgs {
		var msg message
		if err := parse(m.msg, &msg, testLimits); err != nil {
			b.Fatal(err)
		}
		if err := stdParse(m.msg, &msg); err != nil {
			b.Fatal(err)
		}
		b.Run(m.name+"/hand", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(m.msg)))
			for b.Loop() {
				parse(m.msg, &msg, testLimits)
			}
		})
		b.Run(m.name+"/encoding_json", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(m.msg)))
			for b.Loop() {
				stdParse(m.msg, &msg)
			}
		})
	}
}

// countConn is a Conn that copies nothing: the benchmarks measure the
// handler, not a transport's queue.
type countConn struct{ bytes atomic.Int64 }

func (c *countConn) Send(msg []byte) bool       { c.bytes.Add(int64(len(msg))); return true }
func (c *countConn) Close()                     {}
func (c *countConn) RemoteAddr() netip.AddrPort { return netip.AddrPort{} }

// benchSwarm is a Handler with one swarm of n peers on countConns.
func benchSwarm(b *testing.B, n int) *Handler {
	e := newEnv(b, tracker.Config{}, Options{OfferBurst: 1 << 30, OfferRate: 1e9, Metrics: nopMetrics{}})
	for i := range n {
		c := &countConn{}
		s := e.h.Open(c)
		var id [20]byte
		copy(id[:], fmt.Sprintf("-WW0100-%012d", i))
		s.Message(context.Background(), []byte(`{"action":"announce","info_hash":`+js(ihX[:])+`,"peer_id":`+js(id[:])+`,"left":1}`))
	}
	return e.h
}

// BenchmarkAnnounceOffers: an announce with 10 offers of real size, into
// a swarm of 100: parse, apply, pick 10 peers, reply, 10 offers built and
// handed to Send (which copies nothing here).
func BenchmarkAnnounceOffers(b *testing.B) {
	h := benchSwarm(b, 100)
	c := &countConn{}
	s := h.Open(c)
	msg := offerMessage(ihX, idA, 10)
	ctx := context.Background()
	s.Message(ctx, msg)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		s.Message(ctx, msg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkAnswer: an answer of real size routed to its peer.
func BenchmarkAnswer(b *testing.B) {
	h := benchSwarm(b, 100)
	c := &countConn{}
	s := h.Open(c)
	ctx := context.Background()
	s.Message(ctx, []byte(`{"action":"announce","info_hash":`+js(ihX[:])+`,"peer_id":`+js(idA[:])+`,"left":1}`))
	var to [20]byte
	copy(to[:], fmt.Sprintf("-WW0100-%012d", 7))
	msg := answerMessage(ihX, idA, to)
	s.Message(ctx, msg)
	if c.bytes.Load() == 0 {
		b.Fatal("no reply to the announce")
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		s.Message(ctx, msg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// TestMessageAllocs: announcing with offers and answering allocate
// nothing once the pool is warm.
func TestMessageAllocs(t *testing.T) {
	if race.Enabled {
		t.Skip("allocations differ under the race detector")
	}
	e := newEnv(t, tracker.Config{}, Options{OfferBurst: 1 << 30, OfferRate: 1e9, Metrics: nopMetrics{}})
	ctx := context.Background()
	var ids [20][20]byte
	for i := range ids {
		copy(ids[i][:], fmt.Sprintf("-WW0100-%012d", i))
		e.h.Open(&countConn{}).Message(ctx, []byte(`{"action":"announce","info_hash":`+js(ihX[:])+`,"peer_id":`+js(ids[i][:])+`,"left":1}`))
	}
	s := e.h.Open(&countConn{})
	offers := offerMessage(ihX, idA, 10)
	answer := answerMessage(ihX, idA, ids[3])
	scrape := []byte(`{"action":"scrape","info_hash":[` + js(ihX[:]) + `,` + js(idB[:]) + `]}`)
	s.Message(ctx, offers)
	for _, m := range []struct {
		name string
		msg  []byte
	}{{"announce with 10 offers", offers}, {"answer", answer}, {"scrape", scrape}} {
		if n := testing.AllocsPerRun(200, func() { s.Message(ctx, m.msg) }); n != 0 {
			t.Errorf("%s: %v allocs", m.name, n)
		}
	}
}

// TestIdleSessionMemory reports the heap of 100,000 idle sessions, each
// having announced one torrent (one session per swarm, and ten), without
// the transport's part (the fake connections are made before measuring).
func TestIdleSessionMemory(t *testing.T) {
	if testing.Short() || race.Enabled {
		t.Skip("measures memory")
	}
	for _, per := range []int{1, 10} {
		const n = 100_000
		e := newEnv(t, tracker.Config{}, Options{Metrics: nopMetrics{}})
		conns := make([]countConn, n)
		msgs := make([][]byte, n)
		for i := range n {
			ih := bittorrent.InfoHash{byte(i / per), byte(i / per >> 8), byte(i / per >> 16)}
			var id [20]byte
			copy(id[:], fmt.Sprintf("-WW0100-%012d", i))
			msgs[i] = []byte(`{"action":"announce","info_hash":` + js(ih[:]) + `,"peer_id":` + js(id[:]) + `,"left":1,"event":"started"}`)
		}
		sessions := make([]any, n)
		ctx := context.Background()
		var warm countConn
		e.h.Open(&warm).Message(ctx, msgs[0]) // the pool warm
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			s := e.h.Open(&conns[i])
			s.Message(ctx, msgs[i])
			sessions[i] = s
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		bytes := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		t.Logf("%d idle sessions, one torrent each, %d per swarm: %.0f bytes of heap per session (session and registry)", n, per, bytes)
		if bytes > 1024 {
			t.Errorf("%.0f bytes per idle session, want at most 1 KiB (the transport has the rest of 4 KiB)", bytes)
		}
		runtime.KeepAlive(sessions)
		runtime.KeepAlive(msgs)
	}
}
