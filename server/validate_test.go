package server

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trackd/config"
	"trackd/store/memory"
)

// load is what cmd/trackd does with its arguments: config.Parse, then
// Validate.
func load(args ...string) error {
	cfg, err := config.Parse(args, &bytes.Buffer{})
	if err != nil {
		return err
	}
	return Validate(cfg)
}

// TestValidateStore: what only the server can judge, as it alone knows the
// stores (config does not), is refused as config.Load refuses the rest.
func TestValidateStore(t *testing.T) {
	tests := []struct {
		name string
		args []string
		file string
		want string
	}{
		{"bad store", []string{"-store", "mysql://"}, "", "want memory or a Redis URL"},
		{"peer lifetime too long", []string{"-peer-lifetime", "9h0m1s"}, "", "peer_lifetime"},
		{"peer lifetime too long in file", nil, `peer_lifetime = "24h"`, "peer_lifetime"},
		{"state with redis", []string{"-store", "redis://127.0.0.1:6379/0", "-state", "/tmp/x"}, "", "state: only the memory store"},
		{"sync not a URL", []string{"-sync", "localhost:6379"}, "", "sync: want a Redis URL"},
		{"sync with the redis store", []string{"-store", "redis://127.0.0.1:6379/0", "-sync", "redis://127.0.0.1:6379/1"}, "", "sync: only with the memory store"},
		// and config's own checks still apply
		{"config's", []string{"-default-numwant", "0"}, "", "default_numwant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				p := filepath.Join(t.TempDir(), "trackd.toml")
				if err := os.WriteFile(p, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-config", p)
			}
			err := load(args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
			cfg, err := config.Parse(args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: err = %v, want %q", err, tt.want)
			}
		})
	}
	for _, args := range [][]string{
		nil,
		{"-peer-lifetime", "9h"},
		{"-store", "redis://127.0.0.1:6379/0", "-peer-lifetime", "24h"},
		{"-store", "rediss+cluster://127.0.0.1:7000,127.0.0.1:7001"},
		{"-config", "../contrib/trackd.toml"},
	} {
		if err := load(args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestHelpNamesMaxPeerLifetime: -peer-lifetime's explanation, which config
// writes without knowing the stores, gives the in-memory store's bound.
func TestHelpNamesMaxPeerLifetime(t *testing.T) {
	var out bytes.Buffer
	if _, err := config.Load([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	want := "(at most " + strings.TrimSuffix(strings.TrimSuffix(memory.MaxPeerLifetime.String(), "0s"), "0m") + ")"
	_, usage, ok := strings.Cut(out.String(), "-peer-lifetime")
	if usage, _, _ = strings.Cut(usage, "\n  -"); !ok || !strings.Contains(usage, want) {
		t.Errorf("-peer-lifetime: %q does not say %q", usage, want)
	}
}
