package loadgen

import (
	"bufio"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"trackd/bittorrent"
)

func TestHTTPRequests(t *testing.T) {
	leecher, seeder := testPeer(false), testPeer(true)
	r := &httpReq{path: "/announce", host: "127.0.0.1:6969"}
	rc := &httpReq{path: "/scrape", host: "[::1]:80", close: true}
	ih := "%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13"
	pid := "%A0%A1%A2%A3%A4%A5%A6%A7%A8%A9%AA%AB%AC%AD%AE%AF%B0%B1%B2%B3"
	h1, h2 := bittorrent.InfoHash{0xff}, bittorrent.InfoHash{'a'}
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"announce started leecher", appendAnnounceRequest(nil, r, &leecher, evStarted, 30),
			"GET /announce?info_hash=" + ih + "&peer_id=" + pid + "&port=51413&uploaded=0&downloaded=0&left=1073741824&numwant=30&key=deadbeef&compact=1&event=started HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n"},
		{"announce seeder", appendAnnounceRequest(nil, r, &seeder, evNone, 5),
			"GET /announce?info_hash=" + ih + "&peer_id=" + pid + "&port=51413&uploaded=0&downloaded=0&left=0&numwant=5&key=deadbeef&compact=1 HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n"},
		{"announce completed leecher: left=0", appendAnnounceRequest(nil, r, &leecher, evCompleted, 50),
			"GET /announce?info_hash=" + ih + "&peer_id=" + pid + "&port=51413&uploaded=0&downloaded=0&left=0&numwant=50&key=deadbeef&compact=1&event=completed HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n"},
		{"announce stopped leecher", appendAnnounceRequest(nil, r, &leecher, evStopped, 200),
			"GET /announce?info_hash=" + ih + "&peer_id=" + pid + "&port=51413&uploaded=0&downloaded=0&left=1073741824&numwant=200&key=deadbeef&compact=1&event=stopped HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n"},
		{"scrape, close", appendScrapeRequest(nil, rc, []bittorrent.InfoHash{h1, h2}),
			"GET /scrape?info_hash=%FF" + strings.Repeat("%00", 19) + "&info_hash=%61" + strings.Repeat("%00", 19) + " HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
	// The query is what a standard parser reads back.
	req := string(appendAnnounceRequest(nil, r, &leecher, evStarted, 30))
	u, err := url.Parse(strings.Fields(req)[1])
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("info_hash") != string(leecher.InfoHash[:]) || q.Get("peer_id") != string(leecher.ID[:]) || q.Get("port") != "51413" {
		t.Errorf("query does not round-trip: %v", q)
	}
}

func TestReadHTTPResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		status    int
		body      string
		closeConn bool
		err       bool
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello"},
		{name: "header case", in: "HTTP/1.1 200 OK\r\ncontent-LENGTH:  3 \r\n\r\nabc", status: 200, body: "abc"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n", status: 200, body: "abc0123456789"},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", closeConn: true},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
		{name: "HTTP/1.0 until EOF", in: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthe whole rest", status: 200, body: "the whole rest", closeConn: true},
		{name: "bare LF", in: "HTTP/1.1 404 Not Found\nContent-Length: 0\n\n", status: 404},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH\r\n", err: true},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: true},
		{name: "cut body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", err: true},
		{name: "bad chunk", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: true},
		{name: "header without colon", in: "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", err: true},
		{name: "cut headers", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", err: true},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), 64)
		status, body, closeConn, err := readHTTPResponse(br, nil)
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error", tc.name)
			}
			continue
		}
		if err != nil || status != tc.status || string(body) != tc.body || closeConn != tc.closeConn {
			t.Errorf("%s: got %d %q close=%v err=%v, want %d %q close=%v", tc.name, status, body, closeConn, err, tc.status, tc.body, tc.closeConn)
		}
	}
}

func TestReadHTTPResponsePipelined(t *testing.T) {
	one := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
	br := bufio.NewReader(strings.NewReader(one + one + one))
	for i := range 3 {
		if _, body, _, err := readHTTPResponse(br, nil); err != nil || string(body) != "abc" {
			t.Fatalf("reply %d: %q %v", i, body, err)
		}
	}
	if _, _, _, err := readHTTPResponse(br, nil); err != io.EOF {
		t.Fatalf("after the last reply: %v, want EOF", err)
	}
}

func TestCheckHTTPAnnounce(t *testing.T) {
	peers := func(n int) string { return strings.Repeat("x", n) }
	dict := func(peersStr string) string {
		return "d8:completei3e10:incompletei4e8:intervali1800e5:peers" + itoa(len(peersStr)) + ":" + peersStr + "e"
	}
	for _, tc := range []struct {
		name, body string
		numwant    int
		peers      int
		err        error
		msg        string
	}{
		{name: "no peers", body: dict(""), numwant: 30},
		{name: "five peers", body: dict(peers(30)), numwant: 30, peers: 5},
		{name: "trackd reply", body: "d8:completei1e10:downloadedi0e11:external ip4:\x7f\x00\x00\x0210:incompletei0e8:intervali1800e12:min intervali900e5:peers6:abcdefe", numwant: 30, peers: 1},
		{name: "peers6 too", body: "d8:completei3e10:incompletei4e8:intervali1800e5:peers6:abcdef6:peers618:" + peers(18) + "e", numwant: 30, peers: 2},

		{name: "failure reason", body: "d14:failure reason17:torrent not founde", msg: "torrent not found"},
		{name: "bad bencode", body: "d8:completei3e", numwant: 30},
		{name: "unsorted keys", body: "d8:intervali1800e8:completei3e10:incompletei4e5:peers0:e", numwant: 30},
		{name: "non-canonical integer", body: "d8:completei03e10:incompletei4e8:intervali1800e5:peers0:e", numwant: 30},
		{name: "trailing data", body: dict("") + "x", numwant: 30},
		{name: "not a dictionary", body: "li1ee", err: errNotDict},
		{name: "no interval", body: "d8:completei3e10:incompletei4e5:peers0:e", err: errNoInterval},
		{name: "no complete", body: "d10:incompletei4e8:intervali1800e5:peers0:e", err: errNoComplete},
		{name: "negative incomplete", body: "d8:completei3e10:incompletei-4e8:intervali1800e5:peers0:e", err: errNoIncomplete},
		{name: "peer list not compact", body: "d8:completei3e10:incompletei4e8:intervali1800e5:peerslee", err: errNoPeers},
		{name: "half a peer", body: dict(peers(9)), numwant: 30, err: errPeersLen},
		{name: "too many peers", body: dict(peers(36)), numwant: 5, err: errTooManyPeers},
	} {
		n, err := checkHTTPAnnounce([]byte(tc.body), tc.numwant)
		var te *TrackerError
		switch {
		case tc.msg != "":
			if !errors.As(err, &te) || te.Msg != tc.msg {
				t.Errorf("%s: err = %v, want tracker error %q", tc.name, err, tc.msg)
			}
		case strings.HasPrefix(tc.name, "bad bencode") || strings.HasPrefix(tc.name, "unsorted") || strings.HasPrefix(tc.name, "non-canonical") || strings.HasPrefix(tc.name, "trailing"):
			if err == nil || !strings.HasPrefix(err.Error(), "bad bencode") {
				t.Errorf("%s: err = %v, want bad bencode", tc.name, err)
			}
		case err != tc.err:
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		case n != tc.peers:
			t.Errorf("%s: %d peers, want %d", tc.name, n, tc.peers)
		}
	}
}

func TestCheckHTTPScrape(t *testing.T) {
	h1, h2 := bittorrent.InfoHash{1}, bittorrent.InfoHash{2}
	entry := "d8:completei1e10:downloadedi2e10:incompletei3ee"
	key := func(h bittorrent.InfoHash) string { return "20:" + string(h[:]) }
	for _, tc := range []struct {
		name, body string
		err        error
		bad        bool
	}{
		{name: "two", body: "d5:filesd" + key(h1) + entry + key(h2) + entry + "ee"},
		{name: "with flags", body: "d5:filesd" + key(h1) + entry + key(h2) + entry + "e5:flagsd20:min_request_intervali900eee"},
		{name: "one missing", body: "d5:filesd" + key(h1) + entry + "ee", err: errFileMissing},
		{name: "no counts", body: "d5:filesd" + key(h1) + "de" + key(h2) + entry + "ee", err: errFileCounts},
		{name: "no files", body: "d5:flagsdee", err: errNoFiles},
		{name: "unsorted files", body: "d5:filesd" + key(h2) + entry + key(h1) + entry + "ee", bad: true},
	} {
		err := checkHTTPScrape([]byte(tc.body), []bittorrent.InfoHash{h1, h2})
		if tc.bad {
			if err == nil || !strings.HasPrefix(err.Error(), "bad bencode") {
				t.Errorf("%s: err = %v, want bad bencode", tc.name, err)
			}
		} else if err != tc.err {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
	}
	var te *TrackerError
	if err := checkHTTPScrape([]byte("d14:failure reason4:nopee"), nil); !errors.As(err, &te) || te.Msg != "nope" {
		t.Errorf("failure reason: %v", err)
	}
}

// The canned server's replies must pass the generator's checks.
func TestCannedHTTPRepliesCheck(t *testing.T) {
	c, err := StartCanned("", "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := testPeer(true)
	for _, nw := range []int{0, 7, 30, 100} {
		req := appendAnnounceRequest(nil, &httpReq{path: "/announce"}, &p, evNone, nw)
		path, query, _ := strings.Cut(strings.Fields(string(req))[1], "?")
		status, body := c.httpReply(path, query, nil)
		n, err := checkHTTPAnnounce(body, nw)
		if status != 200 || err != nil || n != min(nw, 30) {
			t.Errorf("numwant %d: %d %v, %d peers", nw, status, err, n)
		}
	}
	hashes := []bittorrent.InfoHash{{9}, {3}, {'%'}, {3}}
	req := appendScrapeRequest(nil, &httpReq{path: "/scrape"}, hashes)
	path, query, _ := strings.Cut(strings.Fields(string(req))[1], "?")
	status, body := c.httpReply(path, query, nil)
	if err := checkHTTPScrape(body, hashes); status != 200 || err != nil {
		t.Errorf("scrape: %d %v %q", status, err, body)
	}
	if status, _ := c.httpReply("/other", "", nil); status != 404 {
		t.Errorf("/other: %d", status)
	}
}

func itoa(n int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(appendInt(nil, n)))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
