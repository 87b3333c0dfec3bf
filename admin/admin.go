// Package admin is trackd's operator endpoint: Prometheus metrics, the
// stats page, liveness and readiness checks and, when asked for, the Go
// profiler. It listens apart from the tracker's own listeners (by default
// on loopback only), so none of it is exposed to clients by accident.
package admin

import (
	"context"
	"net/http"
	"net/http/pprof"
	"time"
)

// Options say what the admin endpoint serves. A nil field leaves its paths
// out (404).
type Options struct {
	// Metrics serves /metrics.
	Metrics http.Handler
	// Stats serves /stats (HTML) and /stats.json.
	Stats http.Handler
	// Ready reports whether the tracker can serve: the store serves
	// requests (store.Health.Check). /readyz answers 503 with its error
	// when it fails.
	Ready func(ctx context.Context) error
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// ReadyTimeout bounds one readiness check; zero means 2 s.
	ReadyTimeout time.Duration
}

// NewHandler returns the admin endpoint's handler.
//
//	/healthz      200 "ok" while the process serves HTTP at all (liveness)
//	/readyz       200 "ready", or 503 and why (readiness: the store serves requests)
//	/metrics      Prometheus text format
//	/stats        the stats page; /stats.json the same data
//	/debug/pprof/ the profiler, only with Options.Pprof
//	/             an index of the above
func NewHandler(opts Options) http.Handler {
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if opts.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), opts.ReadyTimeout)
			defer cancel()
			if err := opts.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	if opts.Stats != nil {
		mux.Handle("GET /stats", opts.Stats)
		mux.Handle("GET /stats.json", opts.Stats)
	}
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		b := []byte("<!DOCTYPE html><title>trackd admin</title><h1>trackd admin</h1><ul>" +
			`<li><a href="stats">stats</a> (<a href="stats.json">json</a>)` +
			`<li><a href="metrics">metrics</a><li><a href="healthz">healthz</a><li><a href="readyz">readyz</a>`)
		if opts.Pprof {
			b = append(b, `<li><a href="debug/pprof/">pprof</a>`...)
		}
		w.Write(append(b, "</ul>\n"...))
	})
	return mux
}
