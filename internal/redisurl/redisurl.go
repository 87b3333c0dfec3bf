// Package redisurl parses the Redis URLs trackd takes (-store and -sync)
// into go-redis client options, so that the Redis store and the fleet's
// Redis bus read them alike:
//
//	redis://[user:pass@]host:port[/db][?option=value&...]      one server
//	rediss://[user:pass@]host:port[/db][?...]                  one server over TLS
//	redis+cluster://[user:pass@]host1:port1,host2:port2[?...]  Redis Cluster, from seed nodes
//	rediss+cluster://[user:pass@]host1:port1,host2:port2[?...] Redis Cluster over TLS
//
// The options are go-redis's URL options (dial_timeout, pool_size,
// max_retries, skip_verify, ...); a cluster has only database 0.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The URL schemes Parse understands.
const (
	schemeRedis        = "redis"
	schemeRedisTLS     = "rediss"
	schemeCluster      = "redis+cluster"
	schemeClusterTLS   = "rediss+cluster"
	clusterSchemeTrail = "+cluster"
)

// IsURL reports whether s names a Redis server or cluster (has one of the
// schemes redis://, rediss://, redis+cluster:// or rediss+cluster://), so
// that a caller can tell it from other values such as "memory".
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

// Config is what a URL says: the options of a standalone client (Single)
// or, for a cluster URL, of a cluster client (Cluster). Exactly one is set.
type Config struct {
	Single  *goredis.Options
	Cluster *goredis.ClusterOptions
}

// Addrs returns the addresses the URL names, comma-separated, for
// messages.
func (c Config) Addrs() string {
	if c.Cluster != nil {
		return strings.Join(c.Cluster.Addrs, ",")
	}
	return c.Single.Addr
}

// Parse parses a Redis URL (see the package doc). Its errors show the URL
// with any password redacted.
func Parse(raw string) (Config, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Config{}, fmt.Errorf("%q is not a URL (want redis://host:port/db, rediss://..., or redis+cluster://host1:port1,host2:port2)", Redact(raw))
	}
	switch strings.ToLower(scheme) {
	case schemeRedis, schemeRedisTLS:
		o, err := goredis.ParseURL(raw)
		if err != nil {
			return Config{}, fmt.Errorf("bad URL %q: %w", Redact(raw), redactErr(err, raw))
		}
		return Config{Single: o}, nil
	case schemeCluster, schemeClusterTLS:
		o, err := parseClusterURL(strings.TrimSuffix(strings.ToLower(scheme), clusterSchemeTrail), rest)
		if err != nil {
			return Config{}, fmt.Errorf("bad URL %q: %w", Redact(raw), redactErr(err, raw))
		}
		return Config{Cluster: o}, nil
	}
	return Config{}, fmt.Errorf("unknown URL scheme %q in %q (want redis, rediss, redis+cluster or rediss+cluster)", scheme, Redact(raw))
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

// Redact returns raw with any password replaced by "xxxxx", for messages.
func Redact(raw string) string {
	scheme, user, _, hasPass, rest := split(raw)
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest
}

// Password returns the password raw holds, or "" if it holds none.
func Password(raw string) string {
	_, _, pass, _, _ := split(raw)
	return pass
}

// split splits raw into its scheme, user, password (hasPass if there is
// one, even empty), and what follows the userinfo (from its '@').
func split(raw string) (scheme, user, pass string, hasPass bool, rest string) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", "", "", false, raw
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		end = i
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return scheme, "", "", false, rest
	}
	user, pass, hasPass = strings.Cut(rest[:at], ":")
	return scheme, user, pass, hasPass, rest[at:]
}

// redactErr returns err of parsing raw without raw's password: go-redis's
// parse errors that quote the URL they failed on are *url.Error (its
// other errors quote the scheme, the path or the options, never the
// userinfo).
func redactErr(err error, raw string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = Redact(ue.URL)
	}
	return err
}

// Bound makes every call of the client c configures fail within d: the
// client honours a call's context deadline on the socket; the dial, read,
// write and pool timeouts the URL did not set become d; and a refused
// connection fails at the first dial (not go-redis's five, spaced 100 ms
// apart), so that calls fail fast while Redis is down.
func (c Config) Bound(d time.Duration) {
	if o := c.Single; o != nil {
		o.ContextTimeoutEnabled = true
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, d), orDefault(o.ReadTimeout, d), orDefault(o.WriteTimeout, d)
		o.PoolTimeout = orDefault(o.PoolTimeout, d)
		o.DialerRetries = max(o.DialerRetries, 1)
		return
	}
	o := c.Cluster
	o.ContextTimeoutEnabled = true
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, d), orDefault(o.ReadTimeout, d), orDefault(o.WriteTimeout, d)
	o.PoolTimeout = orDefault(o.PoolTimeout, d)
	o.DialerRetries = max(o.DialerRetries, 1)
}

// orDefault returns d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
