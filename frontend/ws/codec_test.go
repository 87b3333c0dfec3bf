package ws

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"trackd/bittorrent"
)

var testLimits = limits{offers: DefaultMaxOffers, signal: DefaultMaxSignalBytes, hashes: 74}

// binStr is b as a JavaScript binary string: one character per byte.
func binStr(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// TestBinaryAllBytes: every byte value survives appendBinary, whose output
// decodes (encoding/json) to the JavaScript binary string, and the parser
// reads it back; and the parser reads encoding/json's own escaping
// (\u003c, \u0026 …) of the same.
func TestBinaryAllBytes(t *testing.T) {
	for start := 0; start < 256; start += 20 {
		var want [20]byte
		for i := range want {
			want[i] = byte(start + i)
		}
		enc := appendBinary(nil, want[:])
		var s string
		if err := json.Unmarshal(enc, &s); err != nil {
			t.Fatalf("%q is not a JSON string: %v", enc, err)
		}
		if s != binStr(want[:]) {
			t.Fatalf("%q decodes to %q, want %q", enc, s, binStr(want[:]))
		}
		std, _ := json.Marshal(binStr(want[:]))
		for _, in := range [][]byte{enc, std} {
			var got [20]byte
			p := parser{b: in, lim: testLimits}
			if err := p.binary(&got, errPeerID); err != nil || got != want || p.i != len(in) {
				t.Fatalf("binary(%q) = %x, %v (at %d of %d); want %x", in, got, err, p.i, len(in), want)
			}
		}
	}
}

// TestAppendBinaryAsJSONStringify: the escapes are those of JavaScript's
// JSON.stringify.
func TestAppendBinaryAsJSONStringify(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{[]byte("abc"), `"abc"`},
		{[]byte{'"', '\\', '/'}, `"\"\\/"`},
		{[]byte{0, 1, 0x1f}, `"\u0000\u0001\u001f"`},
		{[]byte{8, 9, 10, 12, 13}, `"\b\t\n\f\r"`},
		{[]byte{0x7f, 0x80, 0xff}, "\"\x7f\xc2\x80\xc3\xbf\""},
	}
	for _, tt := range tests {
		if got := string(appendBinary(nil, tt.in)); got != tt.want {
			t.Errorf("appendBinary(%x) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestBinaryRefused: wrong lengths, characters above U+00FF, bad escapes.
func TestBinaryRefused(t *testing.T) {
	twenty := strings.Repeat("a", 20)
	tests := []struct {
		in   string
		want error
	}{
		{`"` + twenty + `"`, nil},
		{`"` + twenty[:19] + `"`, errPeerID},
		{`"` + twenty + `a"`, errPeerID},
		{`""`, errPeerID},
		{`"` + twenty[:19] + `\u0000"`, nil},
		{`"` + twenty[:19] + `\u00fF"`, nil},
		{`"` + twenty[:19] + `\u0100"`, errPeerID},
		{`"` + twenty[:19] + `\ud83d"`, errPeerID},
		{`"` + twenty[:19] + "\u0100\"", errPeerID}, // raw U+0100
		{`"` + twenty[:19] + "é\"", nil},            // raw U+00E9: one byte
		{`"` + twenty[:19] + "\xc3\"", errPeerID},   // broken UTF-8
		{`"` + twenty[:19] + "\xff\"", errPeerID},
		{`"` + twenty[:19] + "😀\"", errPeerID},
		{`"` + twenty[:19] + `\x"`, errSyntax},
		{`"` + twenty[:19] + `\u00g0"`, errSyntax},
		{`"` + twenty[:19] + `\u00"`, errSyntax},
		{`"` + twenty[:19] + "\n\"", errSyntax}, // raw control character
		{`"` + twenty, errSyntax},               // unterminated
		{`12`, errPeerID},
		{`null`, errPeerID},
		{`["` + twenty + `"]`, errPeerID},
	}
	for _, tt := range tests {
		var out [20]byte
		p := parser{b: []byte(tt.in), lim: testLimits}
		if err := p.binary(&out, errPeerID); err != tt.want {
			t.Errorf("binary(%q) = %v, want %v", tt.in, err, tt.want)
		}
	}
}

// ih20 and the like are 20-byte ids written as JSON binary strings.
var (
	idA   = [20]byte{'A', 0, '"', '\\', 0x7f, 0x80, 0xff, 10, 13, '/', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'}
	idB   = [20]byte{'B', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	ihX   = bittorrent.InfoHash{'X', 0xde, 0xad, 0xbe, 0xef}
	offr1 = [20]byte{'o', 'f', 'f', 'e', 'r', '1'}
)

func js(b []byte) string { return string(appendBinary(nil, b)) }

// TestParse: whole messages, what they read as or why they are refused.
func TestParse(t *testing.T) {
	ih, a, b, o := js(ihX[:]), js(idA[:]), js(idB[:]), js(offr1[:])
	tests := []struct {
		name  string
		in    string
		err   error
		check func(*message) bool
	}{
		{"announce", `{"action":"announce","info_hash":` + ih + `,"peer_id":` + a + `,"numwant":5,"uploaded":0,"downloaded":12.5,"left":1000,"event":"started"}`, nil,
			func(m *message) bool {
				return m.action == actAnnounce && m.hasInfoHash && m.infoHash == ihX && m.peerID == idA && m.numWant == 5 && m.left == 1000 && m.event == bittorrent.EventStarted
			}},
		{"whitespace and key order", " \n{ \"left\" : 0 ,\t\"peer_id\":" + a + ",\"action\" :\"announce\", \"info_hash\":" + ih + "}\r\n", nil,
			func(m *message) bool {
				return m.action == actAnnounce && m.left == 0 && m.numWant == -1 && m.event == bittorrent.EventNone
			}},
		{"escaped key", `{"\u0061ction":"announce"}`, nil, func(m *message) bool { return m.action == actAnnounce }},
		{"left unknown", `{"action":"announce","left":null}`, nil, func(m *message) bool { return m.left == leftUnknown }},
		{"left negative", `{"action":"announce","left":-1}`, nil, func(m *message) bool { return m.left == leftUnknown }},
		{"left 2^64-1", `{"action":"announce","left":18446744073709551615}`, nil, func(m *message) bool { return m.left == leftUnknown }},
		{"left too large", `{"action":"announce","left":1e400}`, nil, func(m *message) bool { return m.left == leftUnknown }},
		{"offers", `{"action":"announce","offers":[{"offer":{"type":"offer","sdp":"v=0\r\n"},"offer_id":` + o + `},{"offer_id":` + b + `,"offer":{}}]}`, nil,
			func(m *message) bool {
				return m.nOffers == 2 && len(m.offers) == 2 && m.offers[0].id == offr1 && string(m.offers[0].raw) == `{"type":"offer","sdp":"v=0\r\n"}` && m.offers[1].id == idB && string(m.offers[1].raw) == `{}`
			}},
		{"answer", `{"action":"announce","info_hash":` + ih + `,"peer_id":` + a + `,"to_peer_id":` + b + `,"offer_id":` + o + `,"answer":{"type":"answer","sdp":"x"}}`, nil,
			func(m *message) bool {
				return m.hasTo && m.toPeerID == idB && m.hasOfferID && m.offerID == offr1 && string(m.answer) == `{"type":"answer","sdp":"x"}`
			}},
		{"scrape one", `{"action":"scrape","info_hash":` + ih + `}`, nil, func(m *message) bool { return m.action == actScrape && m.hasInfoHash && !m.hashList }},
		{"scrape list", `{"action":"scrape","info_hash":[` + ih + `,` + a + `]}`, nil,
			func(m *message) bool {
				return m.hashList && len(m.hashes) == 2 && m.hashes[1] == bittorrent.InfoHash(idA)
			}},
		{"scrape empty list", `{"action":"scrape","info_hash":[]}`, nil, func(m *message) bool { return m.hashList && len(m.hashes) == 0 }},
		{"unknown fields", `{"action":"scrape","x":[1,{"y":[true,false,null,-0.5e+3]}],"trackerid":"t"}`, nil, func(m *message) bool { return m.action == actScrape }},
		{"events", `{"event":"completed"}`, nil, func(m *message) bool { return m.event == bittorrent.EventCompleted }},
		{"event stopped", `{"event":"stopped"}`, nil, func(m *message) bool { return m.event == bittorrent.EventStopped }},
		{"event paused", `{"event":"paused"}`, nil, func(m *message) bool { return m.event == bittorrent.EventNone }},

		{"unknown action", `{"action":"connect"}`, errAction, nil},
		{"action not a string", `{"action":1}`, errAction, nil},
		{"bad event", `{"event":"begun"}`, errEvent, nil},
		{"not an object", `[1]`, errNotObject, nil},
		{"empty", ``, errNotObject, nil},
		{"trailing", `{} {}`, errSyntax, nil},
		{"truncated", `{"action":"announce"`, errSyntax, nil},
		{"missing colon", `{"action" "announce"}`, errSyntax, nil},
		{"trailing comma", `{"action":"announce",}`, errSyntax, nil},
		{"bad literal", `{"x":tru}`, errSyntax, nil},
		{"bad number", `{"numwant":01}`, errSyntax, nil},
		{"bad number 2", `{"numwant":-}`, errSyntax, nil},
		{"bad number 3", `{"numwant":1.}`, errSyntax, nil},
		{"single quotes", `{'action':'announce'}`, errSyntax, nil},
		{"raw newline in string", "{\"x\":\"a\nb\"}", errSyntax, nil},
		{"invalid UTF-8", "{\"x\":\"\xff\"}", errSyntax, nil},
		{"deep", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, errDepth, nil},
		{"info_hash number", `{"info_hash":5}`, errInfoHash, nil},
		{"info_hash short", `{"info_hash":"abc"}`, errInfoHash, nil},
		{"info_hash list of numbers", `{"info_hash":[1]}`, errInfoHash, nil},
		{"too many hashes", `{"info_hash":[` + strings.Repeat(ih+",", 74) + ih + `]}`, errHashes, nil},
		{"offers not a list", `{"offers":{}}`, errOffers, nil},
		{"offer without id", `{"offers":[{"offer":{}}]}`, errOffers, nil},
		{"offer without offer", `{"offers":[{"offer_id":` + o + `}]}`, errOffers, nil},
		{"offer not an object", `{"offers":[{"offer_id":` + o + `,"offer":"sdp"}]}`, errOfferObject, nil},
		{"offer id short", `{"offers":[{"offer_id":"x","offer":{}}]}`, errOfferID, nil},
		{"offer too large", `{"offers":[{"offer_id":` + o + `,"offer":{"sdp":"` + strings.Repeat("a", DefaultMaxSignalBytes) + `"}}]}`, errSignalSize, nil},
		{"answer not an object", `{"answer":"sdp"}`, errAnswer, nil},
		{"to_peer_id long", `{"to_peer_id":"` + strings.Repeat("a", 21) + `"}`, errToPeerID, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m message
			err := parse([]byte(tt.in), &m, testLimits)
			if err != tt.err {
				t.Fatalf("parse(%.80q) = %v, want %v", tt.in, err, tt.err)
			}
			if tt.check != nil && !tt.check(&m) {
				t.Errorf("parse(%.200q) read %+v", tt.in, m)
			}
		})
	}
}

// TestParseKeepsOffersWithinLimit: offers beyond the limit are checked
// but not kept.
func TestParseKeepsOffersWithinLimit(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"action":"announce","offers":[`)
	for i := range 15 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"offer_id":` + js(offr1[:]) + `,"offer":{"type":"offer","sdp":"s"}}`)
	}
	b.WriteString(`]}`)
	var m message
	if err := parse(b.Bytes(), &m, limits{offers: 4, signal: 100, hashes: 1}); err != nil || len(m.offers) != 4 || m.nOffers != 15 {
		t.Errorf("15 offers, limit 4: kept %d of %d, %v", len(m.offers), m.nOffers, err)
	}
	bad := bytes.Replace(b.Bytes(), []byte(`"s"}}]}`), []byte(`"s"}},{}]}`), 1)
	if err := parse(bad, &m, limits{offers: 4, signal: 100, hashes: 1}); err != errOffers {
		t.Errorf("a bad offer beyond the limit: %v, want errOffers", err)
	}
}

// TestParseReuse: a message parsed after another keeps nothing of it.
func TestParseReuse(t *testing.T) {
	var m message
	first := `{"action":"announce","info_hash":` + js(ihX[:]) + `,"peer_id":` + js(idA[:]) + `,"offers":[{"offer_id":` + js(offr1[:]) + `,"offer":{}}],"answer":{},"to_peer_id":` + js(idB[:]) + `,"numwant":3,"left":0,"event":"stopped"}`
	if err := parse([]byte(first), &m, testLimits); err != nil {
		t.Fatal(err)
	}
	if err := parse([]byte(`{"action":"scrape"}`), &m, testLimits); err != nil {
		t.Fatal(err)
	}
	if m.hasInfoHash || m.hasPeerID || m.hasTo || len(m.offers) != 0 || m.answer != nil || m.numWant != -1 || m.left != leftUnknown || m.event != 0 {
		t.Errorf("second message read %+v", m)
	}
}

// TestPlain8: the word-at-a-time check agrees with the byte-at-a-time one
// for every byte value in every position.
func TestPlain8(t *testing.T) {
	ref := func(b []byte) bool {
		for _, c := range b {
			if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				return false
			}
		}
		return true
	}
	b := []byte("abcdefgh")
	for pos := range 8 {
		for c := range 256 {
			w := append([]byte(nil), b...)
			w[pos] = byte(c)
			if got, want := plain8(w), ref(w); got != want {
				t.Fatalf("plain8(%q) = %v, want %v", w, got, want)
			}
		}
	}
	for _, w := range []string{"\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f", "!!!!!!!!", "########", "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f", "\"\"\"\"\"\"\"\"", "        "} {
		if got, want := plain8([]byte(w)), ref([]byte(w)); got != want {
			t.Errorf("plain8(%q) = %v, want %v", w, got, want)
		}
	}
}
