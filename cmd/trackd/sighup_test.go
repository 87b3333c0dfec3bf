package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"trackd/internal/testcert"
)

// TestSIGHUP runs the binary with an allow list and HTTPS, changes both
// files and sends SIGHUP: the new list and the new certificate take effect,
// a connection opened before stays open, and the process keeps running.
func TestSIGHUP(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "allow.txt")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	const listed = "6161616161616161616161616161616161616161" // "aaaa..."
	os.WriteFile(list, []byte(listed+"\n"), 0o644)
	testcert.Write(t, certFile, keyFile, 1)

	cmd := exec.Command(build(t), "-http", "", "-udp", "", "-admin", "", "-https", "127.0.0.1:0",
		"-tls-cert", certFile, "-tls-key", keyFile, "-access-list", "allow", "-access-list-file", list)
	lines := startLogging(t, cmd)
	waitLine := func(re *regexp.Regexp) []string {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("trackd exited")
				}
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("no log line matching %s within 15 s", re)
			}
		}
	}
	addr := waitLine(regexp.MustCompile(`protocol=https addr=(\S+)`))[1]

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	announce := func(ih string) (body string, serial int64) {
		t.Helper()
		res, err := hc.Get("https://" + addr + "/announce?info_hash=" + ih + "&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b), res.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if body, serial := announce("aaaaaaaaaaaaaaaaaaaa"); strings.Contains(body, "failure reason") || serial != 1 {
		t.Fatalf("listed hash: %q, certificate %d", body, serial)
	}
	if body, _ := announce("cccccccccccccccccccc"); !strings.Contains(body, "not tracked here") {
		t.Fatalf("unlisted hash: %q", body)
	}
	// a keep-alive connection opened before the reload
	old, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	os.WriteFile(list, []byte("# now c\n6363636363636363636363636363636363636363\n"), 0o644)
	testcert.Write(t, certFile, keyFile, 2)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine(regexp.MustCompile(`tls certificate reloaded`))
	tr.CloseIdleConnections() // new connections, to see the new certificate
	if body, serial := announce("cccccccccccccccccccc"); strings.Contains(body, "failure reason") || serial != 2 {
		t.Errorf("after SIGHUP: newly listed hash %q, certificate %d", body, serial)
	}
	if body, _ := announce("aaaaaaaaaaaaaaaaaaaa"); !strings.Contains(body, "not tracked here") {
		t.Errorf("after SIGHUP: no longer listed hash %q", body)
	}
	// the old connection still works
	old.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(old, "GET /announce?info_hash=cccccccccccccccccccc&peer_id=bbbbbbbbbbbbbbbbbbbb&port=2&left=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	if st, err := bufio.NewReader(old).ReadString('\n'); err != nil || !strings.Contains(st, "200") {
		t.Errorf("connection from before the reload: %q %v", st, err)
	}
	if old.ConnectionState().PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Error("the old connection changed certificate")
	}

	// a bad list: reported, the process runs on with the list in force
	os.WriteFile(list, []byte("zzz\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine(regexp.MustCompile(`access list not reloaded.*line 1`))
	if body, _ := announce("cccccccccccccccccccc"); strings.Contains(body, "failure reason") {
		t.Errorf("after a bad list: %q", body)
	}
}
