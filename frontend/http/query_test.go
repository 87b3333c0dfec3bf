package http

import (
	"net/netip"
	"strings"
	"testing"

	"trackd/bittorrent"
	"trackd/tracker"
)

// hash20 returns 20 bytes: s followed by filler.
func hash20(s string) (h [20]byte) {
	copy(h[:], s+strings.Repeat("x", 20))
	return h
}

// esc percent-encodes every byte, as libtorrent does for binary values.
func esc(b [20]byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	return sb.String()
}

func TestUnescapeBinarySafe(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"abc", "abc", true},
		{"%00%01", "\x00\x01", true},
		{"a+b", "a b", true},       // '+' is a space in form encoding
		{"%2B", "+", true},         // a literal plus is sent escaped
		{"%26%25%3D", "&%=", true}, // separators inside a value
		{"end%20", "end ", true},   // trailing space kept
		{"%ff%FF%fF", "\xff\xff\xff", true},
		{"%", "", false},
		{"%1", "", false},
		{"%g0", "", false},
		{"%0g", "", false},
		{"ab%", "", false},
	}
	for _, tt := range tests {
		got, ok := unescape(nil, tt.in)
		if ok != tt.ok || (ok && string(got) != tt.want) {
			t.Errorf("unescape(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseAnnounce(t *testing.T) {
	ih := hash20("\x00ih+&% ")
	pid := hash20("-TR3000-")
	base := "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=6881&left=100"
	// A hash ending in spaces, sent with '+' for the spaces.
	spaced := [20]byte{}
	copy(spaced[:], "0123456789012345    ")

	tests := []struct {
		name  string
		q     string
		check func(t *testing.T, q *announceQuery)
		err   string
	}{
		{name: "minimal", q: base, check: func(t *testing.T, q *announceQuery) {
			if q.req.InfoHash != ih || q.req.PeerID != pid || q.port != 6881 || q.req.Left != 100 {
				t.Errorf("got %+v", q)
			}
			if q.req.NumWant != tracker.NumWantUnset || q.req.Event != bittorrent.EventNone || q.req.Compact {
				t.Errorf("defaults wrong: %+v", q.req)
			}
		}},
		{name: "all fields", q: base + "&uploaded=5&downloaded=6&event=completed&numwant=20&compact=1&no_peer_id=1&key=abc&trackerid=x%20y", check: func(t *testing.T, q *announceQuery) {
			r := q.req
			if r.Uploaded != 5 || r.Downloaded != 6 || r.Event != bittorrent.EventCompleted || r.NumWant != 20 || !r.Compact || !r.NoPeerID {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "plus is space", q: "info_hash=0123456789012345++++&peer_id=" + esc(pid) + "&port=1&left=0", check: func(t *testing.T, q *announceQuery) {
			if q.req.InfoHash != spaced {
				t.Errorf("info_hash = %q, want %q", q.req.InfoHash[:], spaced[:])
			}
		}},
		{name: "raw unreserved bytes", q: "info_hash=abcdefghijklmnopqrst&peer_id=ABCDEFGHIJKLMNOPQRST&port=65535&left=9223372036854775807", check: func(t *testing.T, q *announceQuery) {
			if string(q.req.InfoHash[:]) != "abcdefghijklmnopqrst" || q.port != 65535 || q.req.Left != 1<<63-1 {
				t.Errorf("got %+v", q)
			}
		}},
		{name: "events", q: base + "&event=started", check: func(t *testing.T, q *announceQuery) {
			if q.req.Event != bittorrent.EventStarted {
				t.Error(q.req.Event)
			}
		}},
		{name: "stopped", q: base + "&event=stopped", check: func(t *testing.T, q *announceQuery) {
			if q.req.Event != bittorrent.EventStopped {
				t.Error(q.req.Event)
			}
		}},
		{name: "empty event", q: base + "&event=", check: func(t *testing.T, q *announceQuery) {
			if q.req.Event != bittorrent.EventNone {
				t.Error(q.req.Event)
			}
		}},
		{name: "numwant junk means default", q: base + "&numwant=-1", check: func(t *testing.T, q *announceQuery) {
			if q.req.NumWant != tracker.NumWantUnset {
				t.Error(q.req.NumWant)
			}
		}},
		{name: "numwant zero", q: base + "&numwant=0", check: func(t *testing.T, q *announceQuery) {
			if q.req.NumWant != 0 {
				t.Error(q.req.NumWant)
			}
		}},
		{name: "ip param", q: base + "&ip=%3A%3Affff%3A10.0.0.1", check: func(t *testing.T, q *announceQuery) {
			if q.ip != netip.MustParseAddr("10.0.0.1") {
				t.Error(q.ip)
			}
		}},
		{name: "ip hostname ignored", q: base + "&ip=example.org", check: func(t *testing.T, q *announceQuery) {
			if q.ip.IsValid() {
				t.Error(q.ip)
			}
		}},
		{name: "unknown params ignored", q: base + "&foo=%zz&supportcrypto=1&&=", check: func(t *testing.T, q *announceQuery) {}},

		{name: "missing info_hash", q: "peer_id=" + esc(pid) + "&port=1&left=0", err: "missing parameter info_hash"},
		{name: "missing peer_id", q: "info_hash=" + esc(ih) + "&port=1&left=0", err: "missing parameter peer_id"},
		{name: "missing port", q: "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&left=0", err: "missing parameter port"},
		{name: "empty query", q: "", err: "missing parameter info_hash"},
		{name: "short hash", q: "info_hash=abc&peer_id=" + esc(pid) + "&port=1&left=0", err: "invalid info_hash"},
		{name: "long hash", q: "info_hash=" + esc(ih) + "a&peer_id=" + esc(pid) + "&port=1&left=0", err: "invalid info_hash"},
		{name: "junk escape", q: "info_hash=%zz" + esc(ih)[3:] + "&peer_id=" + esc(pid) + "&port=1&left=0", err: "invalid info_hash"},
		{name: "short peer_id", q: "info_hash=" + esc(ih) + "&peer_id=x&port=1&left=0", err: "invalid peer_id"},
		{name: "two hashes", q: base + "&info_hash=" + esc(ih), err: "info_hash given twice"},
		{name: "port zero", q: "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=0&left=0", err: "invalid port"},
		{name: "port too big", q: "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=65536&left=0", err: "invalid port"},
		{name: "port negative", q: "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=-1&left=0", err: "invalid port"},
		{name: "port junk", q: "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=68a1&left=0", err: "invalid port"},
		{name: "bad peer_id escape", q: "info_hash=" + esc(ih) + "&peer_id=%zz" + esc(pid)[3:] + "&port=1", err: "invalid peer_id: must be 20 bytes, percent-encoded"},
		{name: "port empty", q: "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=", err: "invalid port: must be a number from 1 to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q announceQuery
			err := parseAnnounce(tt.q, &q)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				if !tracker.IsClientError(err) {
					t.Errorf("%v is not a client error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, &q)
		})
	}
}

// TestParseAnnounceLenient: what real clients send, and what anything
// else is read as. Only info_hash, peer_id and port may fail a request
// (TestParseAnnounce); every query here is accepted.
func TestParseAnnounceLenient(t *testing.T) {
	ih, pid := hash20("lenient"), hash20("-qB4630-")
	base := "info_hash=" + esc(ih) + "&peer_id=" + esc(pid) + "&port=6881"
	const unknown = tracker.LeftUnknown
	tests := []struct {
		name  string
		extra string // appended to base
		left  uint64
		event bittorrent.Event
		up    uint64 // uploaded and downloaded
	}{
		// left
		{"left 0 is a seeder", "&left=0", 0, bittorrent.EventNone, 0},
		{"left 2^63-1", "&left=9223372036854775807", 1<<63 - 1, bittorrent.EventNone, 0},
		{"left 2^63", "&left=9223372036854775808", unknown, bittorrent.EventNone, 0},
		{"left all ones (WebTorrent, unknown)", "&left=18446744073709551615&event=stopped", unknown, bittorrent.EventStopped, 0},
		{"left past 2^64", "&left=99999999999999999999999", unknown, bittorrent.EventNone, 0},
		{"left negative", "&left=-1", unknown, bittorrent.EventNone, 0},
		{"left junk", "&left=abc", unknown, bittorrent.EventNone, 0},
		{"left empty", "&left=", unknown, bittorrent.EventNone, 0},
		{"left missing", "", unknown, bittorrent.EventNone, 0},
		{"left escaped junk", "&left=%zz", unknown, bittorrent.EventNone, 0},
		// event
		{"event empty (BEP 3)", "&left=5&event=empty", 5, bittorrent.EventNone, 0},
		{"event paused (libtorrent, BEP 21)", "&left=0&event=paused", 0, bittorrent.EventNone, 0},
		{"event unknown word", "&left=5&event=finished", 5, bittorrent.EventNone, 0},
		{"event badly escaped", "&left=5&event=%z", 5, bittorrent.EventNone, 0},
		{"event no value", "&left=5&event", 5, bittorrent.EventNone, 0},
		{"event started", "&left=5&event=started", 5, bittorrent.EventStarted, 0},
		{"event completed", "&left=0&event=completed", 0, bittorrent.EventCompleted, 0},
		// unused fields, whatever their value
		{"qBittorrent/uTorrent extras", "&uploaded=0&downloaded=0&left=1000&corrupt=0&key=8A3F21C0&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0",
			1000, bittorrent.EventStarted, 0},
		{"Transmission extras", "&uploaded=0&downloaded=0&left=1&numwant=80&key=5b3a1c&compact=1&supportcrypto=1&requirecrypto=1&trackerid=abc", 1, bittorrent.EventNone, 0},
		{"uploaded and downloaded", "&left=1&uploaded=7&downloaded=7", 1, bittorrent.EventNone, 7},
		{"uploaded junk", "&left=1&uploaded=x&downloaded=1e5", 1, bittorrent.EventNone, 0},
		{"uploaded negative, downloaded huge", "&left=1&uploaded=-5&downloaded=18446744073709551615", 1, bittorrent.EventNone, 0},
		{"key and trackerid badly escaped", "&left=1&key=%4&trackerid=%zz%", 1, bittorrent.EventNone, 0},
		{"corrupt negative", "&left=1&corrupt=-1", 1, bittorrent.EventNone, 0},
		{"unknown badly escaped", "&left=1&x%zz=%&%%=%1", 1, bittorrent.EventNone, 0},
		{"ip badly escaped is ignored", "&left=1&ip=%zz", 1, bittorrent.EventNone, 0},
		{"numwant huge", "&left=1&numwant=99999999999999", 1, bittorrent.EventNone, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q announceQuery
			if err := parseAnnounce(base+tt.extra, &q); err != nil {
				t.Fatalf("%s: %v", tt.extra, err)
			}
			if q.req.InfoHash != ih || q.req.PeerID != pid || q.port != 6881 {
				t.Errorf("required fields: %+v", q)
			}
			if q.req.Left != tt.left || q.req.Event != tt.event {
				t.Errorf("left %d, event %v; want %d, %v", q.req.Left, q.req.Event, tt.left, tt.event)
			}
			if q.req.Uploaded != tt.up || q.req.Downloaded != tt.up {
				t.Errorf("uploaded %d, downloaded %d; want %d", q.req.Uploaded, q.req.Downloaded, tt.up)
			}
			if q.ip.IsValid() {
				t.Errorf("ip %v from junk", q.ip)
			}
		})
	}
}

func TestParseScrape(t *testing.T) {
	a, b := hash20("a"), hash20("b")
	tests := []struct {
		name string
		q    string
		want []bittorrent.InfoHash
		err  string
	}{
		{"none", "", nil, ""},
		{"other params only", "foo=bar", nil, ""},
		{"one", "info_hash=" + esc(a), []bittorrent.InfoHash{a}, ""},
		{"two", "info_hash=" + esc(a) + "&info_hash=" + esc(b), []bittorrent.InfoHash{a, b}, ""},
		{"bad", "info_hash=" + esc(a) + "&info_hash=zz", nil, "invalid info_hash"},
		{"junk", "info_hash=%", nil, "invalid info_hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseScrape(tt.q, nil, 74)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d hashes, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("hash %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseScrapeStopsAfterCap(t *testing.T) {
	q := strings.Repeat("info_hash="+esc(hash20("a"))+"&", 1000)
	got, err := parseScrape(q, nil, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("decoded %d hashes, want cap+1 = 6", len(got))
	}
}

func FuzzParseAnnounce(f *testing.F) {
	ih := esc(hash20("\x00"))
	f.Add("info_hash=" + ih + "&peer_id=" + ih + "&port=6881&left=0&compact=1")
	f.Add("info_hash=0123456789012345++++&peer_id=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00&port=1&left=1&event=started&numwant=-1")
	f.Add("info_hash=%zz&peer_id=&port=65536&left=-1")
	f.Add("&&&==&info_hash&port=%&ip=%3A%3A1&event=stopped")
	f.Add("")
	// What real clients send that trackd once refused.
	f.Add("info_hash=" + ih + "&peer_id=" + ih + "&port=6881&left=18446744073709551615&event=stopped")
	f.Add("info_hash=" + ih + "&peer_id=" + ih + "&port=6881&left=1&event=empty")
	f.Add("info_hash=" + ih + "&peer_id=" + ih + "&port=6881&left=0&event=paused&corrupt=0&supportcrypto=1&key=8A3F21C0")
	f.Add("info_hash=" + ih + "&peer_id=" + ih + "&port=6881&left=abc&uploaded=-1&downloaded=1e5&key=%4&trackerid=%zz&ip=%zz")
	f.Fuzz(func(t *testing.T, q string) {
		var aq announceQuery
		err := parseAnnounce(q, &aq)
		if err != nil {
			if !tracker.IsClientError(err) {
				t.Fatalf("non-client error %v", err)
			}
			// Only what the tracker cannot do without may fail.
			if m := err.Error(); !strings.Contains(m, "info_hash") && !strings.Contains(m, "peer_id") && !strings.Contains(m, "port") {
				t.Fatalf("%q refused for %q", q, m)
			}
			return
		}
		if aq.port == 0 {
			t.Fatalf("accepted port 0 in %q", q)
		}
		if (aq.req.Left > 1<<63-1 && aq.req.Left != tracker.LeftUnknown) || aq.req.Uploaded > 1<<63-1 || aq.req.Downloaded > 1<<63-1 {
			t.Fatalf("a count past 2^63-1 in %q", q)
		}
	})
}

func FuzzParseScrape(f *testing.F) {
	f.Add("info_hash=" + esc(hash20("a")) + "&info_hash=" + esc(hash20("b")))
	f.Add("info_hash=%&info_hash=")
	f.Add("")
	f.Fuzz(func(t *testing.T, q string) {
		hashes, err := parseScrape(q, nil, 3)
		if err != nil && !tracker.IsClientError(err) {
			t.Fatalf("non-client error %v", err)
		}
		if len(hashes) > 4 {
			t.Fatalf("decoded %d hashes past the cap", len(hashes))
		}
	})
}

func BenchmarkParseAnnounce(b *testing.B) {
	q := "info_hash=" + esc(hash20("ih")) + "&peer_id=" + esc(hash20("-qB4500-")) +
		"&port=6881&uploaded=0&downloaded=0&left=1000&corrupt=0&key=ABCDEF&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0"
	var aq announceQuery
	b.ReportAllocs()
	for b.Loop() {
		if err := parseAnnounce(q, &aq); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzUnescape20 checks the specialised decoder against the general one.
func FuzzUnescape20(f *testing.F) {
	f.Add(esc(hash20("a")))
	f.Add("0123456789012345++++")
	f.Add("%zz%00")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := unescape20(s)
		want, wantOK := unescape(nil, s)
		wantOK = wantOK && len(want) == 20
		if ok != wantOK || (ok && string(got[:]) != string(want)) {
			t.Fatalf("unescape20(%q) = %q, %v; unescape gives %q, %v", s, got, ok, want, wantOK)
		}
	})
}
