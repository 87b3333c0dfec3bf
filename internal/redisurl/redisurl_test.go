package redisurl

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		addrs   []string // want a cluster client of these seeds; nil: standalone
		addr    string   // standalone address
		db      int
		user    string
		pass    string
		tls     bool
		readTO  time.Duration
		wantErr string
	}{
		{url: "redis://localhost:6379/0", addr: "localhost:6379"},
		{url: "redis://127.0.0.1:7000/3", addr: "127.0.0.1:7000", db: 3},
		{url: "redis://u:p%40ss@h:1/2?read_timeout=2s", addr: "h:1", db: 2, user: "u", pass: "p@ss", readTO: 2 * time.Second},
		{url: "redis://[::1]:6380", addr: "[::1]:6380"},
		{url: "rediss://:secret@h:6380/1", addr: "h:6380", db: 1, pass: "secret", tls: true},
		{url: "REDIS://h:1", addr: "h:1"},
		{url: "redis+cluster://h1:7000,h2:7001,h3:7002", addrs: []string{"h1:7000", "h2:7001", "h3:7002"}},
		{url: "redis+cluster://u:pw@h1:7000,h2:7001/?read_timeout=3s", addrs: []string{"h1:7000", "h2:7001"}, user: "u", pass: "pw", readTO: 3 * time.Second},
		{url: "redis+cluster://h1:7000/0", addrs: []string{"h1:7000"}},
		{url: "rediss+cluster://h1:7000,h2:7001", addrs: []string{"h1:7000", "h2:7001"}, tls: true},
		{url: "redis+cluster://h1:7000/2", wantErr: "only database 0"},
		{url: "redis+cluster://", wantErr: "no seed address"},
		{url: "redis+cluster://h1:1?bogus=1", wantErr: "bogus"},
		{url: "redis://h:1/x", wantErr: "invalid database"},
		{url: "memory", wantErr: "not a URL"},
		{url: "http://h:1", wantErr: "unknown URL scheme"},
		{url: "redis://u:hunter2@h:1/x", wantErr: "u:xxxxx@h:1"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg, err := Parse(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.url, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.url, err)
			}
			var user, pass string
			var tls bool
			var readTO time.Duration
			if tt.addrs != nil {
				o := cfg.Cluster
				if o == nil {
					t.Fatalf("Parse(%q) gave a standalone client, want a cluster", tt.url)
				}
				if !slices.Equal(o.Addrs, tt.addrs) {
					t.Errorf("seeds = %v, want %v", o.Addrs, tt.addrs)
				}
				user, pass, tls, readTO = o.Username, o.Password, o.TLSConfig != nil, o.ReadTimeout
			} else {
				o := cfg.Single
				if o == nil {
					t.Fatalf("Parse(%q) gave a cluster client, want a standalone one", tt.url)
				}
				if o.Addr != tt.addr || o.DB != tt.db {
					t.Errorf("addr, db = %s, %d; want %s, %d", o.Addr, o.DB, tt.addr, tt.db)
				}
				user, pass, tls, readTO = o.Username, o.Password, o.TLSConfig != nil, o.ReadTimeout
			}
			if user != tt.user || pass != tt.pass || tls != tt.tls || readTO != tt.readTO {
				t.Errorf("user %q pass %q tls %v read_timeout %v; want %q %q %v %v", user, pass, tls, readTO, tt.user, tt.pass, tt.tls, tt.readTO)
			}
		})
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"memory":                  false,
		"":                        false,
		"redis://h:1":             true,
		"rediss://h:1":            true,
		"redis+cluster://h:1,h:2": true,
		"Redis://h:1":             true,
		"unix:///tmp/redis.sock":  false,
		"http://h":                false,
	} {
		if got := IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://h:1/0":                   "redis://h:1/0",
		"redis://u:pw@h:1/0":              "redis://u:xxxxx@h:1/0",
		"redis://:pw@h:1":                 "redis://:xxxxx@h:1",
		"redis+cluster://u:p@w@a:1,b:2?x": "redis+cluster://u:xxxxx@a:1,b:2?x",
		"redis://user@h:1":                "redis://user@h:1",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
