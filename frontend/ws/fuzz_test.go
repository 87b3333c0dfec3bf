package ws

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"trackd/tracker"
)

// FuzzMessage: any message, through a session of its own beside one that
// has joined the swarm, gets at most one reply to its sender, each
// message sent is a JSON object (valid UTF-8, as a text message must
// be), and nothing panics. Its seeds run as an ordinary test.
func FuzzMessage(f *testing.F) {
	ih, a, b, o := js(ihX[:]), js(idA[:]), js(idB[:]), js(offr1[:])
	seeds := []string{
		`{"action":"announce","info_hash":` + ih + `,"peer_id":` + b + `,"numwant":5,"uploaded":0,"downloaded":0,"left":10,"event":"started","offers":[{"offer_id":` + o + `,"offer":{"type":"offer","sdp":"v=0\r\n"}}]}`,
		`{"action":"announce","info_hash":` + ih + `,"peer_id":` + b + `,"to_peer_id":` + a + `,"offer_id":` + o + `,"answer":{"type":"answer","sdp":"v=0"}}`,
		`{"action":"announce","info_hash":` + ih + `,"peer_id":` + b + `,"left":0,"event":"stopped"}`,
		`{"action":"scrape","info_hash":[` + ih + `,` + a + `]}`,
		`{"action":"scrape","info_hash":` + ih + `}`,
		`{"action":"scrape"}`,
		`{"action":"announce","info_hash":"\u0000\u00ff\"\\\/\b\f\n\r\t0123456789","peer_id":` + a + `}`,
		`{"x":[{"y":[1,-2.5e3,true,false,null,"\ud83d\ude00"]}]}`,
		`{"action":"announce","offers":[{"offer_id":` + o + `,"offer":{}},{}]}`,
		`{"action":"x"}`, `{`, `[]`, `""`, "\xff", `{"action":"announce","info_hash":"` + strings.Repeat("é", 20) + `"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	e := newEnv(f, tracker.Config{}, Options{OfferBurst: 1 << 30})
	member := e.connect(1)
	member.id = idA
	member.announce(ihX, 0, "")
	f.Fuzz(func(t *testing.T, msg []byte) {
		p := e.connect(2)
		p.s.Message(context.Background(), msg)
		p.c.mu.Lock()
		got := p.c.got
		p.c.mu.Unlock()
		member.c.mu.Lock()
		relayed := member.c.got
		member.c.got = nil
		member.c.mu.Unlock()
		if len(got) > 1 {
			t.Errorf("%d replies to %q", len(got), msg)
		}
		for _, out := range append(got, relayed...) {
			var m map[string]any
			if !utf8.Valid(out) || json.Unmarshal(out, &m) != nil {
				t.Errorf("%q sent %q: not a JSON object in UTF-8", msg, out)
			}
		}
		p.s.Closed()
	})
}
