package loadgen

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A UDP tracker that hands out ids but refuses every announce and scrape
// with an error packet.
func refusingUDPTracker(t *testing.T) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 16 {
				continue
			}
			tx := binary.BigEndian.Uint32(buf[12:])
			var out []byte
			if binary.BigEndian.Uint32(buf[8:]) == actionConnect {
				out = binary.BigEndian.AppendUint32(out, actionConnect)
				out = binary.BigEndian.AppendUint32(out, tx)
				out = binary.BigEndian.AppendUint64(out, 77)
			} else {
				out = binary.BigEndian.AppendUint32(out, actionError)
				out = binary.BigEndian.AppendUint32(out, tx)
				out = append(out, "go away"...)
			}
			pc.WriteTo(out, from)
		}
	}()
	return pc.LocalAddr()
}

func TestUDPErrorPacketsCounted(t *testing.T) {
	cfg := smallConfig()
	cfg.UDP = refusingUDPTracker(t).String()
	cfg.Duration = 500 * time.Millisecond
	cfg.Sockets = 2
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	got := r.ErrorMessages[`announce: tracker error: "go away"`] + r.ErrorMessages[`scrape: tracker error: "go away"`]
	if got == 0 || got != r.Errors || r.Announces != 0 || r.Responses != r.Connects {
		t.Errorf("%+v", r)
	}
	// An error reply makes a socket renew its id, at most once a second.
	if r.Connects < 2 || r.Connects > 4 {
		t.Errorf("%d connects on 2 sockets in 0.5 s", r.Connects)
	}
}

func TestUDPConnectionIDRenewed(t *testing.T) {
	c := startCanned(t)
	cfg := smallConfig()
	cfg.UDP = c.UDPAddr().String()
	cfg.Sockets = 2
	cfg.ConnIDRenew = 100 * time.Millisecond
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	checkClean(t, &r)
	if r.Connects < 2*8 || r.Connects > 2*11 {
		t.Errorf("%d connects on 2 sockets renewing every 100 ms for 1 s", r.Connects)
	}
}

// net/http as the tracker: its replies (Content-Length, chunked bodies
// above 2 KiB unless a length is set) and a failure reason.
func TestHTTPAgainstNetHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("abcdef", 30) // 30 peers: 180 bytes
	mux := http.NewServeMux()
	mux.HandleFunc("/announce", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if len(q.Get("info_hash")) != 20 || len(q.Get("peer_id")) != 20 || q.Get("compact") != "1" {
			w.Write([]byte("d14:failure reason11:bad requeste"))
			return
		}
		if q.Get("left") == "0" {
			// Seeders get a failure reason, to be counted.
			w.Write([]byte("d14:failure reason15:seeders go awaye"))
			return
		}
		if f, ok := w.(http.Flusher); ok {
			w.Write([]byte("d8:completei1e10:incompletei2e"))
			f.Flush() // forces a chunked body
		}
		w.Write([]byte("8:intervali1800e5:peers180:" + big + "e"))
	})
	mux.HandleFunc("/scrape", func(w http.ResponseWriter, r *http.Request) {
		hs := r.URL.Query()["info_hash"]
		b := []byte("d5:filesd")
		seen := map[string]bool{}
		sorted := append([]string(nil), hs...)
		for i := range sorted {
			for j := i + 1; j < len(sorted); j++ {
				if sorted[j] < sorted[i] {
					sorted[i], sorted[j] = sorted[j], sorted[i]
				}
			}
		}
		for _, h := range sorted {
			if seen[h] {
				continue
			}
			seen[h] = true
			b = append(b, "20:"+h+"d8:completei1e10:incompletei2ee"...)
		}
		w.Write(append(b, "ee"...))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	cfg := smallConfig()
	cfg.HTTP = ln.Addr().String()
	cfg.Duration = 500 * time.Millisecond
	cfg.ScrapeShare = 0.1
	cfg.Seeders = 0.5
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	refused := r.ErrorMessages[`announce: tracker error: "seeders go away"`]
	if r.Announces == 0 || r.Scrapes == 0 || refused == 0 || refused != r.Errors || r.Timeouts != 0 {
		t.Errorf("%+v", r)
	}
	if r.MeanPeers != 30 {
		t.Errorf("%.2f peers per announce", r.MeanPeers)
	}
}
