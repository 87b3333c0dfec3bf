package redis

import (
	"encoding/binary"
	"net/netip"

	"trackd/bittorrent"
)

// Key layout. Every torrent falls in one of numBuckets buckets, by the
// first two bytes of its info hash (info hashes are SHA-1 digests, so
// evenly); a bucket's hash tag {xyz} (three hex digits) is in every key of
// the bucket and of its torrents, so that Redis Cluster keeps them in one
// slot and one script may touch them all:
//
//	<prefix>{xyz}:t            hash: info hash -> downloaded (torrents with peers or downloads)
//	<prefix>{xyz}:d            sorted set: info hash -> due (torrents with peers; see scripts.go)
//	<prefix>{xyz}:n            hash: s, l, t (the bucket's stored seeders, leechers, torrents)
//	<prefix>{xyz}:<hash>:s4    sorted set: IPv4 seeders, addr -> expiry in ms
//	<prefix>{xyz}:<hash>:l4    IPv4 leechers
//	<prefix>{xyz}:<hash>:s6    IPv6 seeders
//	<prefix>{xyz}:<hash>:l6    IPv6 leechers
//	<prefix>{xyz}:<hash>:p     hash: addr -> peer id, flags
//	<prefix>totals             hash: s, l, t, the sum over the buckets (written by the sweeper)
//	<prefix>sweeper            string: the sweeper's lease
//
// <hash> is the raw 20 bytes of the info hash, whatever they are: Redis
// keys are binary-safe, and a '{' or '}' in it does not matter since the
// hash tag is the first {...} of the key. The bucket keys let the sweeper,
// ScrapeAll and the totals walk every torrent without a SCAN of the
// keyspace, and let the announce script keep them in step atomically.
//
// The number of buckets is part of the layout: changing it orphans the
// data of an existing deployment.
const numBuckets = 1024

// Torrent key kinds, in the order of the scripts' KEYS.
const (
	keyT = iota
	keyD
	keyN
	keyS4
	keyL4
	keyS6
	keyL6
	keyP
	numKeys
)

// Only the per-torrent kinds are listed; the bucket kinds come first.
var torrentSuffixes = [numKeys]string{keyS4: ":s4", keyL4: ":l4", keyS6: ":s6", keyL6: ":l6", keyP: ":p"}

var bucketSuffixes = [3]string{keyT: ":t", keyD: ":d", keyN: ":n"}

const hexDigits = "0123456789abcdef"

// bucketOf returns the bucket of h.
func bucketOf(h *bittorrent.InfoHash) int {
	return int(binary.BigEndian.Uint16(h[:2])) % numBuckets
}

// appendTag appends "{xyz}" for bucket b.
func appendTag(dst []byte, b int) []byte {
	return append(dst, '{', hexDigits[b>>8&0xf], hexDigits[b>>4&0xf], hexDigits[b&0xf], '}')
}

// bucketKey returns the bucket key of kind k (keyT, keyD or keyN).
func (s *Store) bucketKey(b, k int) string {
	buf := make([]byte, 0, len(s.prefix)+7)
	buf = appendTag(append(buf, s.prefix...), b)
	return string(append(buf, bucketSuffixes[k]...))
}

// torrentKeys appends the numKeys keys of h's torrent, in the order of the
// scripts' KEYS, to keys, and extra to the same allocation, returned as
// its own string: one allocation for every string of a call.
func (s *Store) torrentKeys(keys []string, h *bittorrent.InfoHash, extra []byte) ([]string, string) {
	b := bucketOf(h)
	n := len(s.prefix) + 5
	size := 3*(n+2) + len(extra)
	for _, suf := range torrentSuffixes[keyS4:] {
		size += n + 1 + len(h) + len(suf)
	}
	buf := make([]byte, 0, size)
	var ends [numKeys]int
	for k := range numKeys {
		buf = appendTag(append(buf, s.prefix...), b)
		if k < keyS4 {
			buf = append(buf, bucketSuffixes[k]...)
		} else {
			buf = append(buf, ':')
			buf = append(buf, h[:]...)
			buf = append(buf, torrentSuffixes[k]...)
		}
		ends[k] = len(buf)
	}
	buf = append(buf, extra...)
	all := string(buf)
	start := 0
	for k := range numKeys {
		keys = append(keys, all[start:ends[k]])
		start = ends[k]
	}
	return keys, all[start:]
}

// appendAddr appends the stored form of ap: the IP (4 bytes for IPv4, 16
// for anything else, v4-mapped included), then the port, big-endian.
func appendAddr(dst []byte, ap netip.AddrPort) []byte {
	ip := ap.Addr()
	if ip.Is4() {
		b := ip.As4()
		dst = append(dst, b[:]...)
	} else {
		b := ip.As16()
		dst = append(dst, b[:]...)
	}
	return binary.BigEndian.AppendUint16(dst, ap.Port())
}
