package stats

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trackd/internal/external"
)

// TestPageInChromium renders the stats page in headless Chromium: the DOM
// it builds has the three charts with their lines, the screenshot has the
// lines' colours in it (so they were drawn, not only present), and the
// browser logged no console error (a blocked resource under the page's
// Content-Security-Policy would be one). Set TRACKD_STATS_SCREENSHOT=FILE
// to keep the screenshot (the README's picture is made so).
func TestPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no browser")
	}
	chromium := external.Program(t, "chromium", "chromium-browser", "google-chrome")
	r := filled(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/stats"

	dir := t.TempDir()
	run := func(args ...string) (stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-extensions", "--disable-background-networking", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0",
			"--window-size=760,1500", "--hide-scrollbars"}
		cmd := exec.CommandContext(ctx, chromium, append(append(base, args...), url)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}

	dom, log := run("--dump-dom")
	for _, id := range []string{"chart-requests", "chart-peers", "chart-torrents"} {
		i := strings.Index(dom, `id="`+id+`"`)
		if i < 0 {
			t.Errorf("the DOM has no %s", id)
			continue
		}
		end := strings.Index(dom[i:], "</svg>")
		if end < 0 || !strings.Contains(dom[i:i+end], "<polyline") {
			t.Errorf("%s has no line", id)
		}
	}
	checkConsole(t, log)

	shot := filepath.Join(dir, "stats.png")
	_, log = run("--screenshot=" + shot)
	checkConsole(t, log)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][3]uint8{"UDP line": {0x1f, 0x77, 0xb4}, "HTTP line": {0xd6, 0x27, 0x28}, "WebSocket lines": {0x2c, 0xa0, 0x2c},
		"peers line": {0x94, 0x67, 0xbd}, "torrents line": {0xff, 0x7f, 0x0e}} {
		if n := countColour(img, c); n < 50 {
			t.Errorf("the screenshot has %d pixels of the %s's colour; the chart was not drawn", n, name)
		}
	}
	if keep := os.Getenv("TRACKD_STATS_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile(keep, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkConsole fails t for console errors and refusals in Chromium's log.
func checkConsole(t *testing.T, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "CONSOLE") || strings.Contains(line, "Refused to") || strings.Contains(line, "Uncaught") {
			t.Errorf("browser console: %s", line)
		}
	}
}

// countColour counts the pixels within a small distance of c.
func countColour(img image.Image, c [3]uint8) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, c[0]) && near(g>>8, c[1]) && near(bl>>8, c[2]) {
				n++
			}
		}
	}
	return n
}

func near(v uint32, c uint8) bool { d := int(v) - int(c); return d > -24 && d < 24 }
