package redis

import (
	"strings"
	"testing"
)

// TestParseURLErrors: the store's URL errors name the store and hide the
// password (the parsing itself is tested in internal/redisurl).
func TestParseURLErrors(t *testing.T) {
	for _, u := range []string{"memory", "http://h:1", "redis://u:hunter2@h:1/x"} {
		_, err := parseURL(u)
		if err == nil || !strings.HasPrefix(err.Error(), "redis store: ") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseURL(%q) = %v, want an error starting with \"redis store: \" without the password", u, err)
		}
	}
	if _, err := parseURL("redis+cluster://h1:7000,h2:7001"); err != nil {
		t.Errorf("parseURL of a cluster URL: %v", err)
	}
	if !IsURL("rediss+cluster://h:1") || IsURL("memory") {
		t.Error("IsURL does not tell Redis URLs from others")
	}
}
