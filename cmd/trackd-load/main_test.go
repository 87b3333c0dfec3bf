package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"trackd/loadgen"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &out, &out); code != 0 {
		t.Fatalf("-h exits %d", code)
	}
	for _, name := range []string{
		"udp", "http", "canned", "allow-remote", "torrents", "peers", "seed", "seeders", "numwant",
		"scrape", "scrape-hashes", "duration", "warmup", "max-time", "timeout", "sockets", "conns",
		"window", "src-addrs", "http-close", "fill", "renew", "json", "cpuprofile",
		"ws", "ws-conns", "ws-torrents", "ws-window", "ws-offers", "ws-sdp", "ws-idle", "ws-pace",
		"roam", "converge", "converge-within", "converge-poll",
	} {
		if !strings.Contains(out.String(), "\n  -"+name+" ") && !strings.Contains(out.String(), "\n  -"+name+"\n") {
			t.Errorf("-h does not document -%s", name)
		}
	}
}

func TestFlagsMakeConfig(t *testing.T) {
	var errs bytes.Buffer
	o, err := parse(strings.Fields("-udp 127.0.0.1:1 -torrents 5 -peers 9 -seed 3 -seeders 0.5 -numwant 7 -scrape 0.2 -scrape-hashes 4 -duration 3s -warmup 1s -max-time 9s -timeout 1s -sockets 2 -conns 3 -window 5 -src-addrs 2 -http-close -fill -renew 30s -json -allow-remote"), &errs)
	if err != nil {
		t.Fatal(err)
	}
	want := loadgen.Config{
		UDP: "127.0.0.1:1", AllowRemote: true, Torrents: 5, Peers: 9, Seed: 3, Seeders: 0.5, NumWant: 7,
		ScrapeShare: 0.2, ScrapeMaxHashes: 4, Duration: 3 * time.Second, Warmup: time.Second,
		MaxTime: 9 * time.Second, Timeout: time.Second, Sockets: 2, Conns: 3, Window: 5, SourceAddrs: 2,
		HTTPClose: true, Fill: true, ConnIDRenew: 30 * time.Second,
		WSConns: 1000, WSTorrents: 2, WSWindow: 1, WSOffers: 5, WSSDPBytes: 2048,
		ConvergeWithin: loadgen.DefaultConvergeWithin, ConvergePoll: loadgen.DefaultConvergePoll,
	}
	if o.cfg != want || !o.json || o.canned {
		t.Errorf("got %+v, want %+v", o.cfg, want)
	}

	o, err = parse(strings.Fields("-udp 127.0.0.1:1,127.0.0.1:2 -roam -converge 50 -converge-within 2s -converge-poll 5ms"), &errs)
	if err != nil {
		t.Fatal(err)
	}
	if c := o.cfg; c.UDP != "127.0.0.1:1,127.0.0.1:2" || !c.Roam || c.Converge != 50 || c.ConvergeWithin != 2*time.Second || c.ConvergePoll != 5*time.Millisecond {
		t.Errorf("fleet flags: %+v", c)
	}

	o, err = parse(strings.Fields("-ws ws://127.0.0.1:1/announce -ws-conns 7 -ws-torrents 3 -ws-window 2 -ws-offers 4 -ws-sdp 3000 -ws-idle 5s -ws-pace 2s"), &errs)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.WS != "ws://127.0.0.1:1/announce" || c.WSConns != 7 || c.WSTorrents != 3 || c.WSWindow != 2 || c.WSOffers != 4 ||
		c.WSSDPBytes != 3000 || c.WSIdle != 5*time.Second || c.WSPace != 2*time.Second {
		t.Errorf("ws flags: %+v", c)
	}
}

func TestBadUse(t *testing.T) {
	for _, args := range []string{
		"-udp 8.8.8.8:53",
		"-http http://192.0.2.1/announce",
		"",
		"-udp 127.0.0.1:1 extra",
		"-window 0 -udp 127.0.0.1:1",
	} {
		var out, errs bytes.Buffer
		code := run(context.Background(), strings.Fields(args), &out, &errs)
		if code == 0 {
			t.Errorf("%q: exit 0", args)
		}
		if strings.Contains(args, "8.8.8.8") && !strings.Contains(errs.String(), "-allow-remote") {
			t.Errorf("%q: %s", args, errs.String())
		}
	}
}

func TestRunAgainstCannedJSON(t *testing.T) {
	c, err := loadgen.StartCanned("127.0.0.1:0", "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out, errs bytes.Buffer
	args := []string{"-udp", c.UDPAddr().String(), "-torrents", "100", "-peers", "1000", "-duration", "300ms", "-warmup", "100ms", "-sockets", "2", "-json"}
	if code := run(context.Background(), args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var r loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("stdout is not one JSON line: %q %v", out.String(), err)
	}
	if r.Responses == 0 || r.Errors != 0 || !strings.Contains(errs.String(), "responses:") {
		t.Errorf("result %+v, text %s", r, errs.String())
	}
}

func TestCannedStopsByItself(t *testing.T) {
	var out, errs bytes.Buffer
	start := time.Now()
	code := run(context.Background(), strings.Fields("-canned -udp 127.0.0.1:0 -http 127.0.0.1:0 -max-time 200ms"), &out, &errs)
	if code != 0 || time.Since(start) > 3*time.Second {
		t.Errorf("exit %d after %v: %s", code, time.Since(start), errs.String())
	}
	if !strings.Contains(errs.String(), "canned tracker on udp://127.0.0.1:") {
		t.Errorf("log: %s", errs.String())
	}
}

func TestWSAgainstCannedJSON(t *testing.T) {
	c, err := loadgen.StartCannedWS("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out, errs bytes.Buffer
	args := []string{"-ws", "ws://" + c.Addr().String() + "/announce", "-torrents", "100", "-ws-conns", "20",
		"-duration", "300ms", "-warmup", "100ms", "-json"}
	if code := run(context.Background(), args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var r loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("stdout is not one JSON line: %q %v", out.String(), err)
	}
	if r.Protocol != "ws" || r.Announces == 0 || r.AnswersReceived == 0 || r.Errors != 0 || !strings.Contains(errs.String(), "messages:") {
		t.Errorf("result %+v, text %s", r, errs.String())
	}
}

func TestCannedWSStopsByItself(t *testing.T) {
	var out, errs bytes.Buffer
	start := time.Now()
	code := run(context.Background(), strings.Fields("-canned -ws 127.0.0.1:0 -max-time 200ms"), &out, &errs)
	if code != 0 || time.Since(start) > 3*time.Second {
		t.Errorf("exit %d after %v: %s", code, time.Since(start), errs.String())
	}
	if !strings.Contains(errs.String(), "canned WebSocket tracker on ws://127.0.0.1:") {
		t.Errorf("log: %s", errs.String())
	}
}

// A fleet of two canned servers: the load is spread over both, and the
// probe runs (a canned server never returns the probe's peer: every probe
// ends as never joined).
func TestFleetAgainstCannedJSON(t *testing.T) {
	var list []string
	for range 2 {
		c, err := loadgen.StartCanned("127.0.0.1:0", "", false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		list = append(list, c.UDPAddr().String())
	}
	var out, errs bytes.Buffer
	args := []string{"-udp", strings.Join(list, ","), "-torrents", "100", "-peers", "1000", "-duration", "600ms", "-warmup", "0s",
		"-sockets", "2", "-converge", "2", "-converge-within", "100ms", "-json"}
	if code := run(context.Background(), args, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	var r loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("stdout is not JSON: %q %v", out.String(), err)
	}
	if r.Errors != 0 || len(r.TargetResponses) != 2 || r.TargetResponses[0] == 0 || r.TargetResponses[1] == 0 {
		t.Errorf("result %+v", r)
	}
	if c := r.Converge; c == nil || c.Probes != 2 || c.JoinNever != 2 || c.Errors != 0 {
		t.Errorf("converge %+v\n%s", c, errs.String())
	}
	if !strings.Contains(errs.String(), "instances:   2") || !strings.Contains(errs.String(), "never 2") {
		t.Errorf("text:\n%s", errs.String())
	}
}
