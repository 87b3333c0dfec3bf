// Command trackd runs an open BitTorrent tracker. See the README for the
// flags and the config file; trackd -h lists them.
//
// Signals: SIGINT and SIGTERM stop it gracefully (requests in flight are
// answered, the state file is written); SIGHUP re-reads the access list and
// the TLS certificate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"trackd/config"
	"trackd/server"
	redisstore "trackd/store/redis"
)

func main() {
	cfg, err := config.Parse(os.Args[1:], os.Stderr)
	if err == nil {
		err = server.Validate(cfg) // config's checks and the stores'
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, config.ErrVersion):
		fmt.Printf("trackd %s (%s, %s/%s)\n", server.BuildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "trackd:", err)
		os.Exit(2)
	}
	log := cfg.Logger(os.Stderr)
	// go-redis logs every failed dial; while Redis is down that is
	// thousands of lines a second. Through slog, at most one a minute.
	redisstore.SetLibraryLogger(log, time.Minute)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.Open(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading the access list and the TLS certificate")
			srv.Reload() // logs what failed; the old files stay in force
		}
	}()
	if err := srv.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		os.Exit(1)
	}
}
