// Package accesslist decides which info hashes the tracker serves when the
// operator wants to restrict it. trackd is open by default; an access list
// either allows only the hashes it names (allow mode) or refuses the hashes
// it names (deny mode).
//
// The list lives in a text file, one info hash a line, as 40 hex digits or
// 32 base32 characters (the two forms magnet links use); '#' starts a
// comment, blank lines are ignored. A Source holds the list in force and
// replaces it atomically on Reload: a file with a bad line is reported with
// the line's number and the list in force stays as it was.
package accesslist

import (
	"bufio"
	"context"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"trackd/bittorrent"
)

// Mode says what a list means.
type Mode uint8

const (
	// Off: no list; every hash is served.
	Off Mode = iota
	// Allow: only the listed hashes are served.
	Allow
	// Deny: the listed hashes are refused.
	Deny
)

// ParseMode reads "", "off", "allow" or "deny".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "off", "none":
		return Off, nil
	case "allow", "allowlist", "whitelist":
		return Allow, nil
	case "deny", "denylist", "blacklist":
		return Deny, nil
	}
	return Off, fmt.Errorf("access list mode %q: want off, allow or deny", s)
}

func (m Mode) String() string {
	switch m {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "off"
}

// List is a parsed access list. The zero value, and a nil *List, allow
// everything.
type List struct {
	mode   Mode
	hashes map[bittorrent.InfoHash]struct{}
}

// New returns a List of mode over hashes.
func New(mode Mode, hashes []bittorrent.InfoHash) *List {
	l := &List{mode: mode, hashes: make(map[bittorrent.InfoHash]struct{}, len(hashes))}
	for _, h := range hashes {
		l.hashes[h] = struct{}{}
	}
	return l
}

// Allowed reports whether the tracker serves ih.
func (l *List) Allowed(ih bittorrent.InfoHash) bool {
	if l == nil || l.mode == Off {
		return true
	}
	_, listed := l.hashes[ih]
	return listed == (l.mode == Allow)
}

// Mode returns the list's mode.
func (l *List) Mode() Mode {
	if l == nil {
		return Off
	}
	return l.mode
}

// Len returns the number of hashes listed.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.hashes)
}

// LineError is a line of a list file that is not an info hash.
type LineError struct {
	Line int    // 1-based
	Text string // the line, trimmed, at most 80 bytes
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %q: %v", e.Line, e.Text, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

var (
	errLength = errors.New("an info hash is 40 hex digits or 32 base32 characters")
	errDigits = errors.New("not a hex or base32 info hash")
)

// maxLine bounds one line of a list file, comments included.
const maxLine = 4096

// Parse reads a list file: one info hash a line, hex or base32, '#'
// comments. It stops at the first bad line and returns a *LineError.
func Parse(r io.Reader) ([]bittorrent.InfoHash, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLine)
	var hashes []bittorrent.InfoHash
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		h, err := ParseHash(line)
		if err != nil {
			if len(line) > 80 {
				line = line[:80]
			}
			return nil, &LineError{Line: n, Text: line, Err: err}
		}
		hashes = append(hashes, h)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: n + 1, Err: fmt.Errorf("line longer than %d bytes", maxLine)}
		}
		return nil, err
	}
	return hashes, nil
}

// ParseHash reads one info hash: 40 hex digits or 32 base32 characters
// (RFC 4648 alphabet, no padding), in either case.
func ParseHash(s string) (bittorrent.InfoHash, error) {
	var h bittorrent.InfoHash
	switch len(s) {
	case 40:
		if _, err := hex.Decode(h[:], []byte(s)); err != nil {
			return h, errDigits
		}
	case 32:
		b, err := base32.StdEncoding.DecodeString(strings.ToUpper(s))
		if err != nil || len(b) != len(h) {
			return h, errDigits
		}
		copy(h[:], b)
	default:
		return h, errLength
	}
	return h, nil
}

// Source is the list in force, read from a file. Allowed is safe for
// concurrent use with Reload; a request sees either the old list or the
// new one, never a mix. A Source with Mode Off, or a nil *Source, allows
// everything.
type Source struct {
	mode Mode
	path string
	log  *slog.Logger
	cur  atomic.Pointer[List]

	mu    sync.Mutex // serialises loads; guards stamp
	stamp fileStamp  // the file's size and modification time at the last load
}

type fileStamp struct {
	size int64
	mod  int64 // nanoseconds since 1970
}

// Open reads the list at path for mode. With mode Off, path is ignored and
// nothing is read. A missing or bad file is an error: trackd refuses to
// start with an access list it cannot read.
func Open(mode Mode, path string, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{mode: mode, path: path, log: log}
	if mode == Off {
		return s, nil
	}
	if path == "" {
		return nil, fmt.Errorf("access list mode %s needs a file", mode)
	}
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Allowed reports whether ih is served under the list in force.
func (s *Source) Allowed(ih bittorrent.InfoHash) bool {
	if s == nil || s.mode == Off {
		return true
	}
	return s.cur.Load().Allowed(ih)
}

// Reload reads the file again and puts it in force. When the file cannot
// be read or has a bad line, the error says where and the list in force
// stays. Reload with mode Off does nothing.
func (s *Source) Reload() error {
	if s == nil || s.mode == Off {
		return nil
	}
	l, err := s.load()
	if err != nil {
		s.log.Error("access list not reloaded; the previous list stays in force", "file", s.path, "err", err)
		return err
	}
	s.log.Info("access list reloaded", "file", s.path, "mode", s.mode.String(), "hashes", l.Len())
	return nil
}

func (s *Source) load() (*List, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("access list: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("access list: %w", err)
	}
	hashes, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("access list %s: %w", s.path, err)
	}
	l := New(s.mode, hashes)
	s.cur.Store(l)
	s.stamp = fileStamp{fi.Size(), fi.ModTime().UnixNano()}
	return l, nil
}

// Watch reloads the list whenever the file's size or modification time
// changes, checking every interval, until ctx is done. A file replaced by
// rename (as editors and configuration tools write) counts as a change. A
// bad file is logged and keeps the list in force; Watch tries again when
// the file changes once more.
func (s *Source) Watch(ctx context.Context, interval time.Duration) {
	if s == nil || s.mode == Off {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var failed fileStamp
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(s.path)
		if err != nil {
			continue
		}
		st := fileStamp{fi.Size(), fi.ModTime().UnixNano()}
		s.mu.Lock()
		seen := st == s.stamp
		s.mu.Unlock()
		if seen || st == failed {
			continue
		}
		if s.Reload() != nil {
			failed = st
		}
	}
}
