package redis

import (
	"fmt"

	"trackd/internal/redisurl"
)

// IsURL reports whether s names a Redis store (has one of the schemes
// redis://, rediss://, redis+cluster:// or rediss+cluster://), so that a
// caller can tell it from other -store values such as "memory".
func IsURL(s string) bool { return redisurl.IsURL(s) }

// parseURL parses a -store URL (see the package doc and package
// internal/redisurl).
func parseURL(raw string) (redisurl.Config, error) {
	cfg, err := redisurl.Parse(raw)
	if err != nil {
		return cfg, fmt.Errorf("redis store: %w", err)
	}
	return cfg, nil
}
