package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles trackd into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "trackd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestHelp(t *testing.T) {
	out, err := exec.Command(build(t), "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("trackd -h: %v\n%s", err, out)
	}
	for _, flag := range []string{"-config", "-http", "-udp", "-udp-secret", "-udp-sockets", "-store", "-require-compact", "-target-announce-rate", "-trusted-proxies"} {
		if !bytes.Contains(out, []byte(flag)) {
			t.Errorf("-h does not mention %s", flag)
		}
	}
}

func TestBadFlagExits2(t *testing.T) {
	err := exec.Command(build(t), "-min-interval", "soon").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("bad flag: %v, want exit status 2", err)
	}
}

// TestServeAndStopOnSignal runs the binary as an operator would: it logs its
// listener, answers an announce, and exits cleanly on SIGTERM.
func TestServeAndStopOnSignal(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		cmd := exec.Command(build(t), "-http", "127.0.0.1:0", "-udp", "127.0.0.1:0", "-admin", "127.0.0.1:0")
		lines := startLogging(t, cmd)
		addrRE := regexp.MustCompile(`protocol=http addr=(\S+)`)
		udpRE := regexp.MustCompile(`protocol=udp addr=(\S+) announce=udp://(\S+)/announce`)
		var addr, udpAddr string
		timeout := time.After(10 * time.Second)
		for addr == "" || udpAddr == "" {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("trackd exited before serving")
				}
				if m := addrRE.FindStringSubmatch(l); m != nil {
					addr = m[1]
				}
				if m := udpRE.FindStringSubmatch(l); m != nil {
					udpAddr = m[1]
				}
			case <-timeout:
				t.Fatalf("no HTTP and UDP listener log lines within 10s (http %q, udp %q)", addr, udpAddr)
			}
		}
		res, err := http.Get("http://" + addr + "/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		udpConnect(t, udpAddr)
		cmd.Process.Signal(sig)
		// Read stderr to its end before Wait, which closes the pipe:
		// lines not read by then would be lost.
		var rest strings.Builder
		exited := time.After(15 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				rest.WriteString(l + "\n")
			case <-exited:
				t.Fatalf("%v: trackd did not exit", sig)
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("%v: exit %v", sig, err)
		}
		if !strings.Contains(rest.String(), "shutting down") {
			t.Errorf("%v: no shutdown log line: %q", sig, rest.String())
		}
		if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			t.Errorf("%v: still listening after exit", sig)
		}
	}
}

// startLogging starts cmd, kills it when the test ends, and returns its
// stderr, a line at a time; the channel closes when cmd exits. Read it to
// its end before calling cmd.Wait, which closes the pipe.
func startLogging(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines
}

// udpConnect sends a BEP 15 connect request to addr and fails t unless a
// connect reply comes back.
func udpConnect(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := binary.BigEndian.AppendUint64(nil, 0x41727101980)
	req = binary.BigEndian.AppendUint32(req, 0) // connect
	req = binary.BigEndian.AppendUint32(req, 42)
	buf := make([]byte, 64)
	// UDP may lose a packet even on loopback: try a few times.
	for try := 0; try < 3; try++ {
		c.Write(req)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		if n != 16 || binary.BigEndian.Uint32(buf) != 0 || binary.BigEndian.Uint32(buf[4:]) != 42 {
			t.Fatalf("UDP connect reply %x", buf[:n])
		}
		return
	}
	t.Fatalf("no UDP connect reply from %s", addr)
}
