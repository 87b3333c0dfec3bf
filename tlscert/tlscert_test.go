package tlscert

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"trackd/internal/testcert"
)

// writeCert writes a fresh certificate with the given serial number to
// dir/cert.pem and dir/key.pem.
func writeCert(t *testing.T, dir string, serial int64) {
	t.Helper()
	testcert.Write(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), serial)
}

// dial makes a TLS connection and returns it with the serial number of the
// certificate the server showed.
func dial(t *testing.T, addr string) (*tls.Conn, int64) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return c, c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// echo answers each line with itself, until the connection closes.
// serveEcho serves echo over TLS with cfg on a loopback port until the
// test ends, and returns its address.
func serveEcho(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(c)
		}
	}()
	return ln.Addr().String()
}

func echo(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		c.Write([]byte(line))
	}
}

func roundTrip(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo %q: %q %v", msg, got, err)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	l, err := Load(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveEcho(t, l.Config())

	old, serial := dial(t, addr)
	defer old.Close()
	if serial != 1 {
		t.Fatalf("serial %d, want 1", serial)
	}
	roundTrip(t, old, "before")

	writeCert(t, dir, 2)
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	c, serial := dial(t, addr)
	c.Close()
	if serial != 2 {
		t.Fatalf("after reload: serial %d, want 2", serial)
	}
	roundTrip(t, old, "after") // the open connection was not dropped

	// a broken pair: the error says so, and the certificate in use stays
	os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key"), 0o600)
	if err := l.Reload(); err == nil {
		t.Fatal("bad key: no error")
	}
	c, serial = dial(t, addr)
	c.Close()
	if serial != 2 {
		t.Fatalf("after a failed reload: serial %d, want 2", serial)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none.pem"), filepath.Join(dir, "none.key")); err == nil {
		t.Error("missing files: no error")
	}
}

// Session tickets stay on (crypto/tls's default) and survive a certificate
// reload: the Config, and with it the ticket keys, is the same, only the
// certificate changes. A client that resumes after the reload does so
// without a full handshake, in TLS 1.3 and 1.2.
func TestResumeAcrossReload(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			dir := t.TempDir()
			writeCert(t, dir, 1)
			l, err := Load(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			cfg := l.Config()
			if cfg.SessionTicketsDisabled {
				t.Fatal("session tickets are disabled")
			}
			addr := serveEcho(t, cfg)
			client := &tls.Config{InsecureSkipVerify: true, MaxVersion: v,
				ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			connect := func(msg string) bool {
				c, err := tls.Dial("tcp", addr, client)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				roundTrip(t, c, msg) // TLS 1.3 tickets come after the handshake
				return c.ConnectionState().DidResume
			}
			if connect("first") {
				t.Fatal("first connection resumed")
			}
			if !connect("second") {
				t.Fatal("second connection did not resume")
			}
			writeCert(t, dir, 2)
			if err := l.Reload(); err != nil {
				t.Fatal(err)
			}
			if !connect("after reload") {
				t.Fatal("no resumption after the certificate reload")
			}
		})
	}
}
