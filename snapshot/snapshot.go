// Package snapshot writes and reads trackd's state file: every swarm, its
// peers and its download counter, so that a restart (or an upgrade) keeps
// the swarms.
//
// A snapshot is written to a temporary file in the same directory, synced,
// then renamed over the old one and the directory synced: a crash at any
// point leaves either the old snapshot or the new one, never a mix. A file
// that does not end in a valid checksum is refused as a whole (Read checks
// it before it hands out a single swarm), and MoveAside puts it out of the
// way without deleting it.
//
// # Format
//
// Everything is big-endian; "uvarint" is encoding/binary's.
//
//	header   "trackd-snapshot\n" (16 bytes), version uint32, flags uint32,
//	         written-at int64 (Unix nanoseconds)
//	swarm    'S', info hash (20 bytes), downloaded uvarint, peers uvarint,
//	         then each peer:
//	           family byte (4 or 6), address (4 or 16 bytes), port uint16,
//	           state byte (1: seeder, 2: its completed event was counted),
//	           expires uvarint (Unix seconds),
//	           peer id (20 bytes) when flags has FlagPeerIDs
//	end      'E', swarms uvarint, peers uvarint,
//	         CRC-32C of every byte before it, uint32
//
// Version 1 is this layout. A later version gets a new number and Read
// keeps reading every older one (testdata holds a file of each).
package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"trackd/bittorrent"
)

// Version is the format Write writes.
const Version = 1

const magic = "trackd-snapshot\n"

// Flags of the header.
const (
	// FlagPeerIDs: every peer record carries its 20-byte peer id.
	FlagPeerIDs uint32 = 1 << iota
)

const (
	stateSeeder    = 1
	stateCompleted = 2
)

// Peer is one peer of a swarm as the snapshot keeps it.
type Peer struct {
	Addr      netip.AddrPort
	ID        bittorrent.PeerID // zero when the snapshot keeps no ids
	Seeder    bool
	Completed bool // the session's completed event has been counted
	Expires   time.Time
}

// Swarm is one torrent.
type Swarm struct {
	InfoHash   bittorrent.InfoHash
	Downloaded uint32
	Peers      []Peer
}

// Info describes a snapshot file.
type Info struct {
	Version   uint32
	Flags     uint32
	WrittenAt time.Time
	Swarms    uint64
	Peers     uint64
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error about a file's content (as opposed
// to reading it): truncated, bad checksum, unknown version, bad record.
var ErrCorrupt = errors.New("snapshot is corrupt")

// Write writes a snapshot to path. It calls each with a function to call
// once per swarm (the swarm may be reused by the caller after the call).
// The file appears at path only when complete and synced.
func Write(path string, flags uint32, each func(put func(*Swarm) error) error) (Info, error) {
	dir := filepath.Dir(path)
	pattern := "." + filepath.Base(path) + ".tmp-*"
	// what a write cut short by a crash left behind
	if stale, _ := filepath.Glob(filepath.Join(dir, pattern)); len(stale) > 0 {
		for _, s := range stale {
			os.Remove(s)
		}
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return Info{}, err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	info, err := encode(f, flags, each)
	if err != nil {
		return Info{}, err
	}
	if err := f.Sync(); err != nil {
		return Info{}, err
	}
	if err := f.Close(); err != nil {
		return Info{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return Info{}, err
	}
	done = true
	// the rename is durable once the directory is synced
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return info, nil
}

// Encode writes to w a snapshot in the format of a state file, checksum
// included, calling each as Write does: what a fleet's instance hands a
// joining one (package fleet). Decode reads it back.
func Encode(w io.Writer, flags uint32, each func(put func(*Swarm) error) error) (Info, error) {
	return encode(w, flags, each)
}

// encode writes the snapshot to w: header, swarms, end record, checksum.
func encode(w io.Writer, flags uint32, each func(put func(*Swarm) error) error) (Info, error) {
	info := Info{Version: Version, Flags: flags, WrittenAt: time.Now()}
	crc := crc32.New(crcTable)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	var b []byte
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, Version)
	b = binary.BigEndian.AppendUint32(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(info.WrittenAt.UnixNano()))
	if _, err := bw.Write(b); err != nil {
		return Info{}, err
	}
	err := each(func(s *Swarm) error {
		b = appendSwarm(b[:0], s, flags)
		info.Swarms++
		info.Peers += uint64(len(s.Peers))
		_, err := bw.Write(b)
		return err
	})
	if err != nil {
		return Info{}, err
	}
	b = append(b[:0], 'E')
	b = binary.AppendUvarint(b, info.Swarms)
	b = binary.AppendUvarint(b, info.Peers)
	if _, err := bw.Write(b); err != nil {
		return Info{}, err
	}
	if err := bw.Flush(); err != nil {
		return Info{}, err
	}
	if _, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return Info{}, err
	}
	return info, nil
}

// Decode checks the snapshot b, as Encode wrote it, and then calls fn for
// every swarm in it (the Swarm is reused between calls), as Read does for
// a file: nothing is handed to fn unless all of b is intact.
func Decode(b []byte, fn func(*Swarm) error) (Info, error) {
	if len(b) < len(magic)+16+4 {
		return Info{}, fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(b))
	}
	body := b[:len(b)-4]
	if binary.BigEndian.Uint32(b[len(body):]) != crc32Sum(body) {
		return Info{}, fmt.Errorf("%w: checksum mismatch (truncated or altered)", ErrCorrupt)
	}
	return decode(bufio.NewReaderSize(bytes.NewReader(body), 64<<10), fn)
}

func appendSwarm(b []byte, s *Swarm, flags uint32) []byte {
	b = append(b, 'S')
	b = append(b, s.InfoHash[:]...)
	b = binary.AppendUvarint(b, uint64(s.Downloaded))
	b = binary.AppendUvarint(b, uint64(len(s.Peers)))
	for i := range s.Peers {
		p := &s.Peers[i]
		a := p.Addr.Addr().Unmap()
		if a.Is4() {
			b = append(b, 4)
			a4 := a.As4()
			b = append(b, a4[:]...)
		} else {
			b = append(b, 6)
			a16 := a.As16()
			b = append(b, a16[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, p.Addr.Port())
		var st byte
		if p.Seeder {
			st |= stateSeeder
		}
		if p.Completed {
			st |= stateCompleted
		}
		b = append(b, st)
		b = binary.AppendUvarint(b, uint64(max(p.Expires.Unix(), 0)))
		if flags&FlagPeerIDs != 0 {
			b = append(b, p.ID[:]...)
		}
	}
	return b
}

// Read checks the snapshot at path and then calls fn for every swarm in it
// (the Swarm is reused between calls). Nothing is handed to fn unless the
// whole file is intact: a truncated or altered file gives an error that
// wraps ErrCorrupt and no call. An error from fn stops Read and is
// returned.
func Read(path string, fn func(*Swarm) error) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	if err := verify(f); err != nil {
		return Info{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Info{}, err
	}
	st, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	return decode(bufio.NewReaderSize(io.LimitReader(f, st.Size()-4), 1<<20), fn)
}

// verify checks the trailing checksum against the rest of the file.
func verify(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < int64(len(magic))+16+4 {
		return fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, st.Size())
	}
	crc := crc32.New(crcTable)
	if _, err := io.CopyN(crc, f, st.Size()-4); err != nil {
		return err
	}
	var sum [4]byte
	if _, err := io.ReadFull(f, sum[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(sum[:]) != crc.Sum32() {
		return fmt.Errorf("%w: checksum mismatch (truncated or altered)", ErrCorrupt)
	}
	return nil
}

// decode reads a snapshot's body from r (without the trailing checksum,
// which Read has checked) and calls fn for every swarm.
func decode(r *bufio.Reader, fn func(*Swarm) error) (Info, error) {
	d := decoder{r: r}
	var hdr [len(magic) + 16]byte
	d.full(hdr[:])
	if d.err != nil {
		return Info{}, d.corrupt("header: %v", d.err)
	}
	if !bytes.Equal(hdr[:len(magic)], []byte(magic)) {
		return Info{}, d.corrupt("not a trackd snapshot")
	}
	be := binary.BigEndian
	info := Info{
		Version:   be.Uint32(hdr[len(magic):]),
		Flags:     be.Uint32(hdr[len(magic)+4:]),
		WrittenAt: time.Unix(0, int64(be.Uint64(hdr[len(magic)+8:]))),
	}
	switch info.Version {
	case 1:
		return info, d.v1(&info, fn)
	}
	return info, d.corrupt("format version %d is newer than this trackd reads (up to %d)", info.Version, Version)
}

type decoder struct {
	r   *bufio.Reader
	err error
}

func (d *decoder) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func (d *decoder) full(b []byte) {
	if d.err == nil {
		_, d.err = io.ReadFull(d.r, b)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	c, err := d.r.ReadByte()
	d.err = err
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d.r)
	d.err = err
	return v
}

// v1 reads the records of a version 1 file.
func (d *decoder) v1(info *Info, fn func(*Swarm) error) error {
	var s Swarm
	var buf [20]byte
	for {
		tag := d.byte()
		if d.err != nil {
			return d.corrupt("record: %v", d.err)
		}
		switch tag {
		case 'S':
		case 'E':
			swarms, peers := d.uvarint(), d.uvarint()
			if d.err != nil {
				return d.corrupt("end: %v", d.err)
			}
			if swarms != info.Swarms || peers != info.Peers {
				return d.corrupt("end record counts %d swarms, %d peers; the file has %d, %d", swarms, peers, info.Swarms, info.Peers)
			}
			if _, err := d.r.ReadByte(); err != io.EOF {
				return d.corrupt("data after the end record")
			}
			return nil
		default:
			return d.corrupt("unknown record %q", tag)
		}
		d.full(s.InfoHash[:])
		dl, n := d.uvarint(), d.uvarint()
		if d.err != nil {
			return d.corrupt("swarm %d: %v", info.Swarms, d.err)
		}
		if dl > 1<<32-1 {
			return d.corrupt("swarm %d: downloaded %d", info.Swarms, dl)
		}
		s.Downloaded = uint32(dl)
		s.Peers = s.Peers[:0]
		for i := uint64(0); i < n; i++ {
			var p Peer
			switch d.byte() {
			case 4:
				d.full(buf[:4])
				p.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[:4])), 0)
			case 6:
				var a [16]byte
				d.full(a[:])
				p.Addr = netip.AddrPortFrom(netip.AddrFrom16(a), 0)
			default:
				if d.err == nil {
					return d.corrupt("swarm %d, peer %d: bad address family", info.Swarms, i)
				}
			}
			d.full(buf[:2])
			p.Addr = netip.AddrPortFrom(p.Addr.Addr(), binary.BigEndian.Uint16(buf[:2]))
			st := d.byte()
			p.Seeder, p.Completed = st&stateSeeder != 0, st&stateCompleted != 0
			p.Expires = time.Unix(int64(min(d.uvarint(), 1<<62)), 0)
			if info.Flags&FlagPeerIDs != 0 {
				d.full(p.ID[:])
			}
			if d.err != nil {
				return d.corrupt("swarm %d, peer %d: %v", info.Swarms, i, d.err)
			}
			s.Peers = append(s.Peers, p)
		}
		info.Swarms++
		info.Peers += n
		if err := fn(&s); err != nil {
			return err
		}
	}
}

// MoveAside renames a snapshot that cannot be read to path.corrupt-TIME,
// so that trackd can start empty without losing the file, and returns the
// new name.
func MoveAside(path string) (string, error) {
	to := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, to); err != nil {
		return "", err
	}
	return to, nil
}

// crc32Sum is the file checksum of b.
func crc32Sum(b []byte) uint32 { return crc32.Checksum(b, crcTable) }
