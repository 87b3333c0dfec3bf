package redis

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// The URL schemes Open understands.
const (
	schemeRedis        = "redis"
	schemeRedisTLS     = "rediss"
	schemeCluster      = "redis+cluster"
	schemeClusterTLS   = "rediss+cluster"
	clusterSchemeTrail = "+cluster"
)

// IsURL reports whether s names a Redis store (has one of the schemes
// redis://, rediss://, redis+cluster:// or rediss+cluster://), so that a
// caller can tell it from other -store values such as "memory".
func IsURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return false
	}
	switch strings.ToLower(scheme) {
	case schemeRedis, schemeRedisTLS, schemeCluster, schemeClusterTLS:
		return true
	}
	return false
}

// clientConfig is what a URL says: the options of a standalone client or,
// for a cluster URL, of a cluster client.
type clientConfig struct {
	single  *goredis.Options
	cluster *goredis.ClusterOptions
}

// addrs returns the addresses the URL names, for messages.
func (c clientConfig) addrs() string {
	if c.cluster != nil {
		return strings.Join(c.cluster.Addrs, ",")
	}
	return c.single.Addr
}

// parseURL parses a -store URL (see the package doc).
func parseURL(raw string) (clientConfig, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return clientConfig{}, fmt.Errorf("redis store: %q is not a URL (want redis://host:port/db, rediss://..., or redis+cluster://host1:port1,host2:port2)", redact(raw))
	}
	switch strings.ToLower(scheme) {
	case schemeRedis, schemeRedisTLS:
		o, err := goredis.ParseURL(raw)
		if err != nil {
			return clientConfig{}, fmt.Errorf("redis store: bad URL %q: %w", redact(raw), err)
		}
		return clientConfig{single: o}, nil
	case schemeCluster, schemeClusterTLS:
		o, err := parseClusterURL(strings.TrimSuffix(strings.ToLower(scheme), clusterSchemeTrail), rest)
		if err != nil {
			return clientConfig{}, fmt.Errorf("redis store: bad URL %q: %w", redact(raw), err)
		}
		return clientConfig{cluster: o}, nil
	}
	return clientConfig{}, fmt.Errorf("redis store: unknown URL scheme %q in %q (want redis, rediss, redis+cluster or rediss+cluster)", scheme, redact(raw))
}

// parseClusterURL parses what follows "redis+cluster://":
// [user:pass@]host1:port1,host2:port2[/][?options], into go-redis's cluster
// options, by rewriting it into the form go-redis's ParseClusterURL takes
// (redis://user:pass@host1:port1?addr=host2:port2&options).
func parseClusterURL(scheme, rest string) (*goredis.ClusterOptions, error) {
	authority, query, _ := strings.Cut(rest, "?")
	if i := strings.IndexByte(authority, '/'); i >= 0 {
		if p := strings.Trim(authority[i:], "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("a cluster has only database 0, not %q", p)
		}
		authority = authority[:i]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			addrs = append(addrs, h)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no seed address (want host1:port1,host2:port2)")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u := scheme + "://" + userinfo + addrs[0]
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return goredis.ParseClusterURL(u)
}

// redact returns raw with any password replaced by "xxxxx", for messages.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
