package e2e

import (
	"context"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trackd/config"
	"trackd/server"
)

// accessProbe announces one hash over HTTP and over UDP and reports what
// each said: "" for a normal reply, else the failure reason or the error
// packet's message.
type accessProbe struct {
	t    *testing.T
	ctx  context.Context
	srv  *server.Server
	udp  *udpClient
	port int
}

func (p *accessProbe) announce(ih [20]byte) (httpSays, udpSays string) {
	p.t.Helper()
	p.port++
	q := "http://" + p.srv.HTTPAddr().String() + "/announce?info_hash=" + url.QueryEscape(string(ih[:])) +
		"&peer_id=" + url.QueryEscape(fmt.Sprintf("-E2EACL-%012d", p.port)) + fmt.Sprintf("&port=%d&left=1&compact=1", p.port)
	reply := httpGet(p.ctx, p.t, newLoopbackHTTPClient(p.t), q)
	if fr, ok := reply["failure reason"]; ok {
		httpSays = fmt.Sprint(fr)
	}
	msg, err := p.udp.announce(ih, uint16(p.port))
	if err != nil {
		p.t.Fatalf("UDP announce: %v", err)
	}
	return httpSays, msg
}

// expect checks that ih is served (want "") or refused (want "refused")
// over both protocols.
func (p *accessProbe) expect(step string, ih [20]byte, refused bool) {
	p.t.Helper()
	h, u := p.announce(ih)
	const reason = "this torrent is not tracked here (access list)"
	want := ""
	if refused {
		want = reason
	}
	if h != want || u != want {
		p.t.Errorf("%s: %x: HTTP says %q, UDP says %q; want %q", step, ih[:4], h, u, want)
	}
}

func writeList(t *testing.T, path string, lines ...string) {
	t.Helper()
	tmp := path + ".new"
	body := "# test list\n"
	for _, l := range lines {
		body += l + "\n"
	}
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitRefused polls until ih's refusal over HTTP is as wanted: the access
// list file is watched every couple of seconds.
func (p *accessProbe) waitRefused(step string, ih [20]byte, refused bool) {
	p.t.Helper()
	waitFor(p.ctx, p.t, step, func() (bool, string) {
		h, _ := p.announce(ih)
		return (h != "") == refused, "HTTP says " + h
	})
	p.expect(step, ih, refused)
}

// TestAccessLists: allow and deny lists, over HTTP and UDP, reloaded when
// the file changes and on Reload (what SIGHUP calls); a bad file leaves the
// list in force.
func TestAccessLists(t *testing.T) {
	a, b := [20]byte{0: 0xa1, 19: ' '}, [20]byte{0: 0xb2, 10: '+'}
	for _, mode := range []string{"allow", "deny"} {
		t.Run(mode, func(t *testing.T) {
			ctx := deadline(t, 60*time.Second)
			path := filepath.Join(t.TempDir(), "list.txt")
			writeList(t, path, hex.EncodeToString(a[:])+"  # the listed one")
			srv := startTracker(t, func(c *config.Config) { c.AccessList = mode; c.AccessListFile = path })
			p := &accessProbe{t: t, ctx: ctx, srv: srv, udp: dialUDP(t, srv), port: 45000}
			allow := mode == "allow"
			p.expect("a listed", a, !allow)
			p.expect("b not listed", b, allow)

			// the file changes: b listed instead of a (base32 this time)
			writeList(t, path, b32(b))
			p.waitRefused("after the file changed", b, !allow)
			p.expect("a no longer listed", a, allow)

			// a bad line: reported, the list in force stays
			writeList(t, path, hex.EncodeToString(a[:]), "not a hash")
			if err := srv.Reload(); err == nil {
				t.Error("Reload of a bad file: no error")
			}
			time.Sleep(2500 * time.Millisecond) // and the watcher sees it too
			p.expect("after a bad file", b, !allow)
			p.expect("after a bad file", a, allow)

			// fixed, and reloaded at once
			writeList(t, path, hex.EncodeToString(a[:]))
			if err := srv.Reload(); err != nil {
				t.Fatal(err)
			}
			p.expect("after Reload", a, !allow)
			p.expect("after Reload", b, allow)
		})
	}
}

func b32(h [20]byte) string { return base32.StdEncoding.EncodeToString(h[:]) }
