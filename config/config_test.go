package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP != ":6969" || cfg.Store != "memory" || !cfg.FullScrape {
		t.Errorf("defaults: %+v", cfg)
	}
	// UDP is on by default, on the same port as HTTP (TCP and UDP ports
	// are separate), with a random secret and one socket per CPU.
	if cfg.UDP != ":6969" || cfg.UDPSecret != "" || cfg.UDPSockets != 0 {
		t.Errorf("UDP defaults: udp %q, udp_secret %q, udp_sockets %d", cfg.UDP, cfg.UDPSecret, cfg.UDPSockets)
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "trackd.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFileThenFlags(t *testing.T) {
	p := writeFile(t, `
http = "127.0.0.1:7000"
max_numwant = 100
min_interval = "2m"
require_compact = true
trusted_proxies = ["10.0.0.0/8", "::1"]
`)
	cfg, err := Load([]string{"-max-numwant", "30", "-config", p, "-trust-ip-param", "192.0.2.0/24,198.51.100.1"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP != "127.0.0.1:7000" || cfg.MinInterval != 2*time.Minute || !cfg.RequireCompact {
		t.Errorf("file not applied: %+v", cfg)
	}
	if cfg.MaxNumWant != 30 {
		t.Errorf("flag did not override file: max_numwant %d", cfg.MaxNumWant)
	}
	if len(cfg.TrustedProxies) != 2 || len(cfg.TrustIPParam) != 2 {
		t.Errorf("lists: %v %v", cfg.TrustedProxies, cfg.TrustIPParam)
	}
	if cfg.MaxConns != Default().MaxConns {
		t.Errorf("unset key lost its default")
	}
}

func TestLoadEmptyHTTPTurnsItOff(t *testing.T) {
	cfg, err := Load([]string{"-http", ""}, &bytes.Buffer{})
	if err != nil || cfg.HTTP != "" {
		t.Fatalf("cfg.HTTP %q, err %v", cfg.HTTP, err)
	}
	if cfg.UDP != ":6969" {
		t.Errorf("-http \"\" changed udp to %q", cfg.UDP)
	}
}

func TestLoadEmptyUDPTurnsItOff(t *testing.T) {
	cfg, err := Load([]string{"-udp", ""}, &bytes.Buffer{})
	if err != nil || cfg.UDP != "" {
		t.Fatalf("cfg.UDP %q, err %v", cfg.UDP, err)
	}
	if cfg.HTTP != ":6969" {
		t.Errorf("-udp \"\" changed http to %q", cfg.HTTP)
	}
}

func TestLoadPeerIDsAndLifetime(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		file     string
		ids      bool
		lifetime time.Duration
	}{
		{"defaults", nil, "", false, 35 * time.Minute},
		{"flag", []string{"-peer-ids"}, "", true, 35 * time.Minute},
		{"file", nil, "peer_ids = true\npeer_lifetime = \"9h\"", true, 9 * time.Hour},
		{"flag over file", []string{"-peer-ids=false", "-peer-lifetime", "1h"}, "peer_ids = true", false, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"-config", writeFile(t, tt.file)}, args...)
			}
			cfg, err := Load(args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PeerIDs != tt.ids || cfg.PeerLifetime != tt.lifetime {
				t.Errorf("peer_ids %v, peer_lifetime %v; want %v, %v", cfg.PeerIDs, cfg.PeerLifetime, tt.ids, tt.lifetime)
			}
		})
	}
}

func TestLoadUDPSettings(t *testing.T) {
	p := writeFile(t, `
udp = "127.0.0.1:7001"
udp_secret = "from the file"
udp_sockets = 3
`)
	cfg, err := Load([]string{"-config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UDP != "127.0.0.1:7001" || cfg.UDPSecret != "from the file" || cfg.UDPSockets != 3 {
		t.Errorf("file: udp %q, udp_secret %q, udp_sockets %d", cfg.UDP, cfg.UDPSecret, cfg.UDPSockets)
	}
	cfg, err = Load([]string{"-config", p, "-udp", "[::1]:0", "-udp-secret", "s3cret", "-udp-sockets", "8"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UDP != "[::1]:0" || cfg.UDPSecret != "s3cret" || cfg.UDPSockets != 8 {
		t.Errorf("flags over file: udp %q, udp_secret %q, udp_sockets %d", cfg.UDP, cfg.UDPSecret, cfg.UDPSockets)
	}
}

func TestLoadOperatorSettings(t *testing.T) {
	p := writeFile(t, `
store = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
redis_timeout = "250ms"
peer_lifetime = "24h"
https = ":8443"
tls_cert = "/etc/trackd/cert.pem"
tls_key = "/etc/trackd/key.pem"
access_list = "deny"
access_list_file = "/etc/trackd/deny.txt"
admin = ""
pprof = true
`)
	cfg, err := Load([]string{"-config", p}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "redis+cluster://127.0.0.1:7000,127.0.0.1:7001" || cfg.RedisTimeout != 250*time.Millisecond ||
		cfg.PeerLifetime != 24*time.Hour || cfg.HTTPS != ":8443" || cfg.TLSCert == "" || cfg.TLSKey == "" ||
		cfg.AccessList != "deny" || cfg.AccessListFile != "/etc/trackd/deny.txt" || cfg.Admin != "" || !cfg.Pprof {
		t.Errorf("loaded %+v", cfg)
	}
	cfg, err = Load([]string{"-sync", "redis+cluster://127.0.0.1:7000"}, &bytes.Buffer{})
	if err != nil || cfg.Sync != "redis+cluster://127.0.0.1:7000" || cfg.Store != "memory" {
		t.Errorf("-sync: %+v %v", cfg, err)
	}
	cfg, err = Load([]string{"-state", "/var/lib/trackd/state.snap", "-state-interval", "1m"}, &bytes.Buffer{})
	if err != nil || cfg.State != "/var/lib/trackd/state.snap" || cfg.StateInterval != time.Minute || cfg.Admin != "127.0.0.1:6970" {
		t.Errorf("state flags: %+v %v", cfg, err)
	}
}

func TestVersionFlag(t *testing.T) {
	_, err := Load([]string{"-version"}, &bytes.Buffer{})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("-version: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		file string
		want string
	}{
		{"unknown key", nil, "bogus = 1", `unknown key "bogus"`},
		{"bad toml", nil, "http = ", "config file"},
		{"missing file", []string{"-config", "/nonexistent/trackd.toml"}, "", "no such file"},
		{"bad interval", []string{"-min-interval", "10m", "-max-interval", "1m"}, "", "max_interval"},
		{"bad cidr", []string{"-trusted-proxies", "10.0.0.0/99"}, "", "bad CIDR"},
		{"bad level", []string{"-log-level", "loud"}, "", "log_level"},
		{"numwant", []string{"-default-numwant", "0"}, "", "default_numwant"},
		{"stray arg", []string{"extra"}, "", "unexpected argument"},
		{"header vs query", []string{"-max-query-bytes", "20000"}, "", "max_header_bytes"},
		{"udp sockets negative", []string{"-udp-sockets", "-1"}, "", "udp_sockets"},
		{"udp sockets huge", []string{"-udp-sockets", "100000"}, "", "udp_sockets"},
		{"udp no port", []string{"-udp", "127.0.0.1"}, "", "udp \"127.0.0.1\""},
		{"udp bad port", []string{"-udp", ":99999"}, "", "udp \":99999\""},
		{"udp sockets in file", nil, "udp_sockets = -2", "udp_sockets"},
		{"peer lifetime zero", []string{"-peer-lifetime", "0s"}, "", "peer_lifetime"},
		{"redis timeout", []string{"-store", "redis://127.0.0.1:6379/0", "-redis-timeout", "0s"}, "", "redis_timeout"},
		{"sync with the redis store", []string{"-store", "redis://127.0.0.1:6379/0", "-sync", "redis://127.0.0.1:6379/1"}, "", "sync: only with the memory store"},
		{"https without cert", []string{"-https", ":8443"}, "", "https needs tls_cert and tls_key"},
		{"admin bad", []string{"-admin", "nowhere"}, "", "admin \"nowhere\""},
		{"access list mode", []string{"-access-list", "maybe"}, "", "access_list"},
		{"access list without file", []string{"-access-list", "allow"}, "", "needs access_list_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "-config", writeFile(t, tt.file))
			}
			_, err := Load(args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out bytes.Buffer
	_, err := Load([]string{"-h"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	c := Default()
	var file string
	fs := c.flagSet(&file, &bytes.Buffer{})
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(out.String(), "-"+f.Name) {
			t.Errorf("-h does not list -%s", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("-%s has no explanation", f.Name)
		}
	})
	// Every TOML key has a flag of the same name.
	for _, key := range tomlKeys() {
		if fs.Lookup(strings.ReplaceAll(key, "_", "-")) == nil {
			t.Errorf("config key %s has no flag", key)
		}
	}
	if n < 20 {
		t.Errorf("only %d flags", n)
	}
}

// TestExampleConfig: contrib/trackd.toml names every key with its default
// value, and loads as it is and with every key uncommented.
func TestExampleConfig(t *testing.T) {
	const path = "../contrib/trackd.toml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load([]string{"-config", path}, &bytes.Buffer{}); err != nil {
		t.Fatalf("the example as shipped: %v", err)
	}
	var keys []string
	var uncommented strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if m := regexp.MustCompile(`^#([a-z_0-9]+) = `).FindStringSubmatch(line); m != nil {
			keys = append(keys, m[1])
			uncommented.WriteString(line[1:] + "\n")
		}
	}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		key := typ.Field(i).Tag.Get("toml")
		if !slices.Contains(keys, key) {
			t.Errorf("contrib/trackd.toml does not show %s", key)
		}
	}
	cfg, err := Load([]string{"-config", writeFile(t, uncommented.String())}, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("the example with every key uncommented: %v", err)
	}
	if len(cfg.TrustedProxies)+len(cfg.TrustIPParam) == 0 {
		cfg.TrustedProxies, cfg.TrustIPParam = nil, nil // [] in the file
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("the example's values are not the defaults:\n got %+v\nwant %+v", cfg, Default())
	}
}
