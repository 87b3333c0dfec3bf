package loadgen

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"trackd/bittorrent"
)

// runes returns b as the JavaScript binary string: one rune per byte.
func runes(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// decodeID parses a quoted JSON string as a binary id.
func decodeID(t *testing.T, quoted string) ([20]byte, error) {
	t.Helper()
	s := jsonScan{b: []byte(quoted)}
	raw, err := s.rawString()
	if err != nil {
		t.Fatalf("%s: %v", quoted, err)
	}
	return decodeBinary20(raw)
}

// Every byte value survives appendBinaryString and decodeBinary20, our
// encoding is what encoding/json reads as the same runes, and what
// encoding/json writes (with its \u escapes of <, >, & and controls) we
// read back.
func TestBinaryStringsAllBytes(t *testing.T) {
	for start := 0; start < 256; start += 20 {
		var id [20]byte
		for i := range id {
			id[i] = byte(start + i) // wraps for the last id
		}
		enc := appendBinaryString(nil, id[:])
		got, err := decodeID(t, string(enc))
		if err != nil || got != id {
			t.Fatalf("ours %q: %x, %v; want %x", enc, got, err, id)
		}
		var s string
		if err := json.Unmarshal(enc, &s); err != nil || s != runes(id[:]) {
			t.Fatalf("encoding/json reads %q as %q, %v", enc, s, err)
		}
		theirs, _ := json.Marshal(runes(id[:]))
		got, err = decodeID(t, string(theirs))
		if err != nil || got != id {
			t.Fatalf("encoding/json's %q: %x, %v; want %x", theirs, got, err, id)
		}
	}
}

func TestBinaryStringEscapes(t *testing.T) {
	want := [20]byte{'"', '\\', '/', '\b', '\f', '\n', '\r', '\t', 0, 0x1f, 'A', 0x7f, 0x80, 0xff, 'a', 'b', 'c', 'd', 'e', 'f'}
	for _, s := range []string{
		`"\"\\\/\b\f\n\r\t\u0000\u001fA` + "\x7f" + `\u0080\u00FFabcdef"`,
		`"\"\\/\u0008\u000c\u000a\u000d\u0009\u0000\u001f\u0041\u007f` + "\u0080\u00ff" + `abcdef"`,
	} {
		got, err := decodeID(t, s)
		if err != nil || got != want {
			t.Errorf("%s: %x, %v; want %x", s, got, err, want)
		}
	}
}

func TestBinaryStringRefused(t *testing.T) {
	for _, s := range []string{
		`""`,
		`"0123456789012345678"`,   // 19
		`"012345678901234567890"`, // 21
		`"0123456789012345678\u0100"`,
		`"0123456789012345678` + "\u0100" + `"`,
		`"0123456789012345678` + "€" + `"`,
		`"012345678901234567` + "😀" + `"`,
		`"0123456789012345678\ud83d"`,
		`"0123456789012345678` + "\xc3" + `"`, // a lead byte alone
	} {
		if id, err := decodeID(t, s); err == nil {
			t.Errorf("%s: accepted as %x", s, id)
		}
	}
}

func TestRawStringMalformed(t *testing.T) {
	for _, s := range []string{`"abc`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\nb\"", `abc"`, `"\`} {
		sc := jsonScan{b: []byte(s)}
		if _, err := sc.rawString(); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestUnescapeJSON(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\r\nb`, "a\r\nb"},
		{`\"\\\/\b\f\t`, "\"\\/\b\f\t"},
		{`\u00e9\u20ac`, "é€"},
		{`\ud83d\ude00`, "😀"},
		{`\ud83d`, "\ufffd"},
		{`x\ude00y`, "x\ufffdy"},
	} {
		if got := string(unescapeJSON(nil, []byte(c.in))); got != c.want {
			t.Errorf("%s: %q, want %q", c.in, got, c.want)
		}
	}
}

func bin(s string) string { return string(appendBinaryString(nil, []byte(s))) }

const (
	tIH  = "IIIIIIIIIIIIIIIIIIII"
	tPID = "-TL0100-PPPPPPPPPPPP"
	tOID = "OOOOOOOOOOOOOOOOOOOO"
)

func TestParseWSMsg(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		has       uint32
		check     func(*wsMsg) bool
		err       string
	}{
		{name: "reply",
			msg: `{"complete":3,"incomplete":4,"action":"announce","info_hash":` + bin(tIH) + `,"interval":120}`,
			has: wsHasAction | wsHasInfoHash | wsHasInterval | wsHasComplete | wsHasIncomplete,
			check: func(m *wsMsg) bool {
				return m.complete == 3 && m.incomplete == 4 && m.interval == 120 && string(m.infoHash[:]) == tIH
			}},
		{name: "reply, spaces and float interval",
			msg:   " { \"action\" : \"announce\" , \"interval\" : 120.0 , \"complete\":0,\"incomplete\":1e1 } ",
			has:   wsHasAction | wsHasInterval | wsHasComplete | wsHasIncomplete,
			check: func(m *wsMsg) bool { return m.interval == 120 && m.incomplete == 10 }},
		{name: "relayed offer",
			msg: `{"action":"announce","offer":{"type":"offer","sdp":"v=0\r\n"},"offer_id":` + bin(tOID) + `,"peer_id":` + bin(tPID) + `,"info_hash":` + bin(tIH) + `}`,
			has: wsHasAction | wsHasOffer | wsHasOfferID | wsHasPeerID | wsHasInfoHash,
			check: func(m *wsMsg) bool {
				return m.offer.typ == "offer" && string(m.offer.sdp) == `v=0\r\n` &&
					string(m.offer.raw) == `{"type":"offer","sdp":"v=0\r\n"}` && string(m.offerID[:]) == tOID
			}},
		{name: "answer",
			msg:   `{"action":"announce","info_hash":` + bin(tIH) + `,"peer_id":` + bin(tPID) + `,"to_peer_id":` + bin(tPID) + `,"offer_id":` + bin(tOID) + `,"answer":{"sdp":"x","type":"answer","extra":[1,{"a":null}]}}`,
			has:   wsHasAction | wsHasInfoHash | wsHasPeerID | wsHasToPeerID | wsHasOfferID | wsHasAnswer,
			check: func(m *wsMsg) bool { return m.answer.typ == "answer" && string(m.answer.sdp) == "x" }},
		{name: "announce with offers",
			msg: `{"action":"announce","info_hash":` + bin(tIH) + `,"peer_id":` + bin(tPID) + `,"numwant":2,"uploaded":0,"downloaded":0,"left":0,"event":"started","offers":[{"offer_id":` + bin(tOID) + `,"offer":{"type":"offer","sdp":"a"}},{"offer":{"type":"offer","sdp":"b"},"offer_id":` + bin(tIH) + `}]}`,
			has: wsHasAction | wsHasInfoHash | wsHasPeerID | wsHasNumWant | wsHasOffers,
			check: func(m *wsMsg) bool {
				return m.numWant == 2 && len(m.offers) == 2 && m.offers[0].hasID && string(m.offers[1].id[:]) == tIH &&
					string(m.offers[1].offer.sdp) == "b"
			}},
		{name: "failure", msg: `{"failure reason":"invalid \"info_hash\""}`, has: wsHasFailure,
			check: func(m *wsMsg) bool { return m.failure == `invalid "info_hash"` }},
		{name: "unknown keys skipped", msg: `{"x":[true,false,null,-1.5e3,"s",{}],"y":{},"z":[],"action":"scrape","info_hash":[` + bin(tIH) + `]}`,
			has: wsHasAction, check: func(m *wsMsg) bool { return m.action == "scrape" }},
		{name: "empty object", msg: `{}`},

		{name: "not an object", msg: `[]`, err: "not a JSON object"},
		{name: "trailing data", msg: `{} {}`, err: "data after"},
		{name: "trailing comma", msg: `{"action":"announce",}`, err: "malformed"},
		{name: "unterminated", msg: `{"action":"announce"`, err: "unexpected end"},
		{name: "control character", msg: "{\"failure reason\":\"a\tb\"}", err: "malformed"},
		{name: "short info_hash", msg: `{"info_hash":"abc"}`, err: "info_hash: not a 20"},
		{name: "info_hash number", msg: `{"info_hash":5}`, err: "info_hash: not a 20"},
		{name: "wide peer_id", msg: `{"peer_id":"0123456789012345678\u0100"}`, err: "peer_id: not a 20"},
		{name: "fractional interval", msg: `{"interval":1.5}`, err: "interval: not an integer"},
		{name: "string interval", msg: `{"interval":"120"}`, err: "interval"},
		{name: "bad literal", msg: `{"x":tru}`, err: "malformed"},
		{name: "bad number", msg: `{"x":-}`, err: "malformed"},
		{name: "offer not object", msg: `{"offer":"x"}`, err: "offer: not an object"},
		{name: "offers not list", msg: `{"offers":{}}`, err: "offers: not a list"},
		{name: "action number", msg: `{"action":1}`, err: "action: not a string"},
		{name: "too deep", msg: `{"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, err: "nested too deeply"},
		{name: "too many offers", msg: `{"offers":[` + strings.TrimSuffix(strings.Repeat(`{},`, wsMaxOffers+1), ",") + `]}`, err: "more than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var m wsMsg
			err := parseWSMsg([]byte(c.msg), &m)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid([]byte(c.msg)) {
				t.Fatal("the test's message is not valid JSON")
			}
			if m.has != c.has {
				t.Errorf("fields %b, want %b", m.has, c.has)
			}
			if c.check != nil && !c.check(&m) {
				t.Errorf("parsed %+v", m)
			}
		})
	}
}

func testChecker() *wsChecker {
	return &wsChecker{salt: 42, sdps: newWSSDPs(2048)}
}

func TestOfferID(t *testing.T) {
	ih := bittorrent.InfoHash([]byte(tIH))
	id := wsOfferID(7, 9, 123456789, &ih, 42)
	conn, sent, ok := parseOfferID(&id, &ih, 42)
	if !ok || conn != 7 || sent != 123456789 {
		t.Fatalf("parsed %d %d %v", conn, sent, ok)
	}
	other := ih
	other[19] ^= 1
	if _, _, ok := parseOfferID(&id, &other, 42); ok {
		t.Error("accepted with another info hash")
	}
	if _, _, ok := parseOfferID(&id, &ih, 43); ok {
		t.Error("accepted with another salt")
	}
	for i := range id {
		bad := id
		bad[i] ^= 0x10
		if _, _, ok := parseOfferID(&bad, &ih, 42); ok {
			t.Errorf("accepted with byte %d changed", i)
		}
	}
}

func TestSDPs(t *testing.T) {
	var a, b [20]byte
	b[3] = 1
	for _, size := range []int{0, 500, 2048, 4096} {
		s := newWSSDPs(size)
		x := s.appendSDP(nil, &a, false)
		if size >= 700 && len(x) != size {
			t.Errorf("size %d: got %d bytes", size, len(x))
		}
		if !strings.HasPrefix(string(x), "v=0\r\n") || !strings.HasSuffix(string(x), "\r\n") && size >= 700 {
			t.Errorf("size %d: not an SDP: %q", size, x)
		}
		if string(s.appendSDP(nil, &a, true)) == string(x) || string(s.appendSDP(nil, &b, false)) == string(x) {
			t.Errorf("size %d: SDPs of an answer or of another offer id are the same", size)
		}
	}
}

// The messages the generator sends are JSON that bittorrent-tracker's
// parser (JSON.parse) reads as the protocol says: checked here with
// encoding/json, whose strings are the same runes.
func TestWSMessagesBuilt(t *testing.T) {
	c := testChecker()
	var a wsAnnounce
	copy(a.infoHash[:], "\x00\x01\"\\\x7f\x80\xff"+tIH)
	copy(a.peerID[:], tPID)
	a.numWant, a.left, a.event = 2, 0, "started"
	ids := [][20]byte{wsOfferID(1, 0, 5, &a.infoHash, 42), wsOfferID(1, 1, 5, &a.infoHash, 42)}
	var scratch []byte
	msg := appendWSAnnounce(nil, &a, ids, c.sdps, &scratch)
	var v struct {
		Action, InfoHash, PeerID, Event string
		NumWant, Left                   int
		Offers                          []struct {
			OfferID string `json:"offer_id"`
			Offer   struct{ Type, SDP string }
		}
	}
	dec := func(b []byte) {
		t.Helper()
		m := map[string]json.RawMessage{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		json.Unmarshal(m["action"], &v.Action)
		json.Unmarshal(m["info_hash"], &v.InfoHash)
		json.Unmarshal(m["peer_id"], &v.PeerID)
		json.Unmarshal(m["event"], &v.Event)
		json.Unmarshal(m["numwant"], &v.NumWant)
		json.Unmarshal(m["left"], &v.Left)
		json.Unmarshal(m["offers"], &v.Offers)
	}
	dec(msg)
	if v.Action != "announce" || v.InfoHash != runes(a.infoHash[:]) || v.PeerID != runes(a.peerID[:]) ||
		v.Event != "started" || v.NumWant != 2 || v.Left != 0 || len(v.Offers) != 2 {
		t.Fatalf("announce read as %+v", v)
	}
	for i, o := range v.Offers {
		if o.OfferID != runes(ids[i][:]) || o.Offer.Type != "offer" || o.Offer.SDP != string(c.sdps.appendSDP(nil, &ids[i], false)) {
			t.Errorf("offer %d read as %+v", i, o)
		}
	}
	// Our own parser reads it too, as the canned server does.
	var m wsMsg
	if err := parseWSMsg(msg, &m); err != nil || len(m.offers) != 2 || m.offers[1].id != ids[1] {
		t.Fatalf("parseWSMsg: %v %+v", err, m)
	}
	if err := c.checkSDP(&m.offers[0].offer, &ids[0], false); err != nil {
		t.Error(err)
	}

	to := [20]byte([]byte(tPID))
	from := [20]byte(a.peerID)
	ans := appendWSAnswer(nil, &a.infoHash, &from, &to, &ids[0], c.sdps, &scratch)
	var w struct {
		Action, InfoHash, PeerID, ToPeerID, OfferID string
		Answer                                      struct{ Type, SDP string }
	}
	m2 := map[string]json.RawMessage{}
	if err := json.Unmarshal(ans, &m2); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(m2["action"], &w.Action)
	json.Unmarshal(m2["to_peer_id"], &w.ToPeerID)
	json.Unmarshal(m2["offer_id"], &w.OfferID)
	json.Unmarshal(m2["answer"], &w.Answer)
	if w.Action != "announce" || w.ToPeerID != tPID || w.OfferID != runes(ids[0][:]) || w.Answer.Type != "answer" ||
		w.Answer.SDP != string(c.sdps.appendSDP(nil, &ids[0], true)) {
		t.Errorf("answer read as %+v", w)
	}
}

// relay builds what a tracker relays, with the SDP object re-encoded by
// encoding/json (escapes differ from ours: \u003c and the like).
func relay(t *testing.T, kind string, sdps *wsSDPs, id [20]byte, peer [20]byte, ih [20]byte, mutate func(string) string) []byte {
	t.Helper()
	sdp := string(sdps.appendSDP(nil, &id, kind == "answer"))
	if mutate != nil {
		sdp = mutate(sdp)
	}
	obj, _ := json.Marshal(map[string]string{"type": kind, "sdp": sdp})
	return appendRelay(nil, kind, obj, &id, &peer, &ih)
}

func TestWSCheckerRelays(t *testing.T) {
	c := testChecker()
	ih := [20]byte([]byte("<&>" + tIH))
	var other [20]byte
	copy(other[:], "-TL0100-xxxxxxxxxxxx")
	peers := map[uint32][20]byte{3: [20]byte([]byte(tPID)), 4: other}
	peerOf := func(c uint32) ([20]byte, bool) { p, ok := peers[c]; return p, ok }
	id := wsOfferID(3, 1, 1000, (*bittorrent.InfoHash)(&ih), c.salt)
	own3 := peers[3]
	for _, tc := range []struct {
		name   string
		msg    []byte
		answer bool
		conn   uint32 // receiving connection (answers)
		err    string
	}{
		{name: "offer", msg: relay(t, "offer", c.sdps, id, peers[3], ih, nil)},
		{name: "offer, wrong peer_id", msg: relay(t, "offer", c.sdps, id, other, ih, nil), err: "peer_id is not the offering"},
		{name: "offer, other info_hash", msg: relay(t, "offer", c.sdps, id, peers[3], [20]byte([]byte(tIH)), nil), err: "offer_id or info_hash"},
		{name: "offer, changed sdp", msg: relay(t, "offer", c.sdps, id, peers[3], ih, func(s string) string { return s[:100] + "X" + s[101:] }), err: "sdp differs"},
		{name: "offer, cut sdp", msg: relay(t, "offer", c.sdps, id, peers[3], ih, func(s string) string { return s[:len(s)-1] }), err: "sdp differs"},
		{name: "offer, typed answer", msg: appendRelay(nil, "offer", []byte(`{"type":"answer","sdp":""}`), &id, &own3, &ih), err: "type is"},
		{name: "answer", msg: relay(t, "answer", c.sdps, id, other, ih, nil), answer: true, conn: 3},
		{name: "answer to the wrong connection", msg: relay(t, "answer", c.sdps, id, other, ih, nil), answer: true, conn: 4, err: "did not make the offer"},
		{name: "answer, offer's sdp", msg: relay(t, "answer", c.sdps, id, other, ih, func(string) string { return string(c.sdps.appendSDP(nil, &id, false)) }), answer: true, conn: 3, err: "sdp differs"},
		{name: "answer from a stranger", msg: relay(t, "answer", c.sdps, id, [20]byte{}, ih, nil), answer: true, conn: 3, err: "not a simulated peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m wsMsg
			if err := parseWSMsg(tc.msg, &m); err != nil {
				t.Fatal(err)
			}
			kind, err := c.classify(&m)
			want := wsKindOffer
			if tc.answer {
				want = wsKindAnswer
			}
			if err != nil || kind != want {
				t.Fatalf("classify: %d, %v", kind, err)
			}
			if tc.answer {
				var sent int64
				sent, err = c.checkAnswer(&m, tc.conn)
				if err == nil && sent != 1000 {
					t.Errorf("sent %d", sent)
				}
			} else {
				var from uint32
				from, err = c.checkOffer(&m, peerOf)
				if err == nil && from != 3 {
					t.Errorf("from %d", from)
				}
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestWSClassify(t *testing.T) {
	ih := `"info_hash":` + bin(tIH)
	for _, c := range []struct{ msg, err string }{
		{`{"action":"announce",` + ih + `,"interval":120,"complete":0,"incomplete":0}`, ""},
		{`{"action":"announce",` + ih + `,"interval":0,"complete":0,"incomplete":0}`, "positive interval"},
		{`{"action":"announce",` + ih + `,"interval":120,"complete":0}`, "complete and incomplete"},
		{`{"action":"announce",` + ih + `,"interval":120,"complete":-1,"incomplete":0}`, "negative"},
		{`{"action":"announce","interval":120,"complete":0,"incomplete":0}`, "no info_hash"},
		{`{"interval":120,` + ih + `}`, "no action"},
		{`{"action":"scrape",` + ih + `}`, "unexpected action"},
		{`{"action":"announce",` + ih + `,"offer":{},"answer":{}}`, "both"},
		{`{"action":"announce",` + ih + `,"offer":{}}`, "without peer_id"},
		{`{"action":"announce",` + ih + `,"answer":{},"peer_id":` + bin(tPID) + `}`, "without peer_id or offer_id"},
		{`{"failure reason":"nope",` + ih + `}`, "failure reason: nope"},
	} {
		var m wsMsg
		if err := parseWSMsg([]byte(c.msg), &m); err != nil {
			t.Fatalf("%s: %v", c.msg, err)
		}
		_, err := testChecker().classify(&m)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.msg, err, c.err)
		}
	}
}

// FuzzParseWSMsg: no input panics, and what parses is valid JSON.
func FuzzParseWSMsg(f *testing.F) {
	f.Add([]byte(`{"action":"announce","info_hash":` + bin(tIH) + `,"interval":120,"complete":1,"incomplete":2}`))
	f.Add([]byte(`{"offers":[{"offer_id":` + bin(tOID) + `,"offer":{"type":"offer","sdp":"v=0\r\n"}}]}`))
	f.Add([]byte(`{"failure reason":"\u00e9\ud83d\ude00"}`))
	f.Add([]byte(`{"x":[1,-2.5e3,true,false,null,{"y":"z"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m wsMsg
		if parseWSMsg(b, &m) == nil && !json.Valid(b) {
			t.Fatalf("parsed invalid JSON %q", b)
		}
	})
}

// The generator's steady state does not allocate: building an announce,
// reading and checking a relayed offer, answering it, reading and checking
// the answer.
func TestWSHotPathDoesNotAllocate(t *testing.T) {
	c := testChecker()
	var a wsAnnounce
	copy(a.infoHash[:], tIH)
	copy(a.peerID[:], tPID)
	a.numWant = 3
	ids := make([][20]byte, 3)
	for i := range ids {
		ids[i] = wsOfferID(3, uint32(i), 1000, &a.infoHash, c.salt)
	}
	own := [20]byte(a.peerID)
	peerOf := func(uint32) ([20]byte, bool) { return own, true }
	offer := relay(t, "offer", c.sdps, ids[0], own, a.infoHash, nil)
	var m wsMsg
	var buf, scratch []byte
	step := func() {
		buf = appendWSAnnounce(buf[:0], &a, ids, c.sdps, &scratch)
		if err := parseWSMsg(offer, &m); err != nil {
			t.Fatal(err)
		}
		if _, err := c.classify(&m); err != nil {
			t.Fatal(err)
		}
		if _, err := c.checkOffer(&m, peerOf); err != nil {
			t.Fatal(err)
		}
		ih := bittorrent.InfoHash(m.infoHash)
		buf = appendWSAnswer(buf[:0], &ih, &own, &m.peerID, &m.offerID, c.sdps, &scratch)
		ans := appendRelay(scratch[:0], "answer", buf[bytes.Index(buf, []byte(`"answer":`))+9:len(buf)-1], &m.offerID, &own, &m.infoHash)
		if err := parseWSMsg(ans, &m); err != nil {
			t.Fatal(err)
		}
		if _, err := c.checkAnswer(&m, 3); err != nil {
			t.Fatal(err)
		}
		scratch = ans
	}
	step()
	if n := testing.AllocsPerRun(100, step); n != 0 {
		t.Errorf("%.1f allocations per step", n)
	}
}
