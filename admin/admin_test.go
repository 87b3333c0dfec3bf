package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	var readyErr error
	text := func(s string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(s + r.URL.Path)) })
	}
	h := NewHandler(Options{
		Metrics: text("metrics"),
		Stats:   text("stats"),
		Ready:   func(context.Context) error { return readyErr },
	})
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/metrics", 200, "metrics/metrics"},
		{"/stats", 200, "stats/stats"},
		{"/stats.json", 200, "stats/stats.json"},
		{"/", 200, "trackd admin"},
		{"/debug/pprof/", 404, ""},
		{"/nothing", 404, ""},
	} {
		code, body := get(t, h, tc.path)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d %q; want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	readyErr = errors.New("redis: connection refused")
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "connection refused") {
		t.Errorf("store down: /readyz %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Errorf("store down: /healthz %d; liveness does not depend on the store", code)
	}
}

func TestPprofSwitch(t *testing.T) {
	h := NewHandler(Options{Pprof: true})
	if code, body := get(t, h, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof on: %d", code)
	}
	if code, _ := get(t, h, "/metrics"); code != 404 {
		t.Errorf("no metrics handler: /metrics %d", code)
	}
}
