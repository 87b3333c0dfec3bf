package udp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"
)

// Connection ids without state.
//
// BEP 15 has a client first "connect" and then quote the connection id it
// got in every announce and scrape, to prove that it can receive packets
// at the address it sends from (otherwise a forged source address would
// turn the tracker into a reflector against that address). The tracker must
// recognise the ids it handed out; trackd does so without remembering them:
// an id is a keyed pseudo-random function of the client's address, port and
// the current minute,
//
//	id = first 8 bytes of AES_k( AES_k(A) XOR B )
//	A  = the client's IP address as 16 bytes (an IPv4 address in its
//	     v4-mapped form ::ffff:a.b.c.d, so that an IPv4 client has the same
//	     ids whether it reaches a v4 or a dual-stack socket)
//	B  = port (2 bytes, big-endian) | window (8 bytes, big-endian) | 6 zero bytes
//	window = floor(unix time / 60 s)
//	k  = SHA-256(Options.Secret)[:16], or 16 random bytes
//
// That is CBC-MAC over a message of exactly two blocks. CBC-MAC is a secure
// pseudo-random function for messages of one fixed length (Bellare, Kilian
// and Rogaway, "The security of the cipher block chaining message
// authentication code", 1994/2000); the length-extension weakness of plain
// CBC-MAC needs messages of different lengths, which never occur here. A
// truncation of a PRF is a PRF, so someone who does not know k and cannot
// receive at address A guesses an id that (A, port) will accept with
// probability 3·2^-64 per try (three windows are accepted), however many
// ids of other addresses, ports or windows they have collected. An IPv6
// address needs no folding or hashing to fit: all 16 bytes are the first
// block, and the second brings in the port and the time. Issuing an id
// costs two AES block encryptions (about 20 ns each with AES-NI); checking
// one costs the same, plus one more encryption per older window tried.
// The key is only as strong as Options.Secret: a guessable secret can be
// found offline from a single id, so it should be long and random.
//
// An id is accepted in the window it was issued in and the two after it, so
// it lives between 2 and 3 minutes: BEP 15 has clients reuse an id for up
// to one minute and asks servers to accept it for two. Nothing is stored per
// client: the only state is the key, which instances behind one address
// share by sharing Options.Secret (and a reasonably synchronised clock).
type connIDs struct {
	block cipher.Block
	now   func() time.Time
}

const (
	idWindow      = time.Minute
	idPastWindows = 2 // windows before the current one still accepted
)

func newConnIDs(secret []byte, now func() time.Time) connIDs {
	var key [16]byte
	if len(secret) == 0 {
		rand.Read(key[:]) // never fails (crypto/rand crashes the program instead)
	} else {
		sum := sha256.Sum256(secret)
		copy(key[:], sum[:16])
	}
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: the key is 16 bytes
	}
	return connIDs{block: b, now: now}
}

// idScratch is where the encryptions happen. cipher.Block is an interface,
// so the compiler must assume its arguments escape: a stack array would be
// moved to the heap on every call. The scratch lives in the pooled
// per-packet state instead.
type idScratch [32]byte

// window returns the number of the time window t falls in.
func window(t time.Time) uint64 {
	s := t.Unix()
	w := s / int64(idWindow/time.Second)
	if s%int64(idWindow/time.Second) < 0 {
		w--
	}
	return uint64(w)
}

// prepare encrypts the address block into buf[:16]; tag then finishes an
// id for one window. As16 gives an IPv4 address and its v4-mapped form the
// same 16 bytes and ignores zones, so the ids do not depend on how the
// socket reported the sender.
func (c *connIDs) prepare(buf *idScratch, addr netip.Addr) {
	a := addr.As16()
	copy(buf[16:], a[:])
	c.block.Encrypt(buf[:16], buf[16:])
}

// tag computes the id of the prepared address for port and window w. It
// leaves buf[:16] as prepare left it, so it may be called again.
func (c *connIDs) tag(buf *idScratch, port uint16, w uint64) uint64 {
	// B as two big-endian words: port | window | 6 zero bytes.
	be := binary.BigEndian
	b0 := uint64(port)<<48 | w>>16
	b1 := w << 48
	be.PutUint64(buf[16:], be.Uint64(buf[0:])^b0)
	be.PutUint64(buf[24:], be.Uint64(buf[8:])^b1)
	c.block.Encrypt(buf[16:], buf[16:])
	return be.Uint64(buf[16:24])
}

// issue returns the id for from in the current window.
func (c *connIDs) issue(buf *idScratch, from netip.AddrPort) uint64 {
	c.prepare(buf, from.Addr())
	return c.tag(buf, from.Port(), window(c.now()))
}

// valid reports whether id was issued to from in the current window or one
// of the idPastWindows before it.
func (c *connIDs) valid(buf *idScratch, from netip.AddrPort, id uint64) bool {
	c.prepare(buf, from.Addr())
	w := window(c.now())
	for i := range uint64(idPastWindows + 1) {
		// Which window matched is no secret, so stopping early
		// leaks nothing worth hiding.
		if c.tag(buf, from.Port(), w-i) == id {
			return true
		}
	}
	return false
}

// canonicalAddrPort is the form of a sender's address that ids and the
// tracker see: IPv4 senders reported by a dual-stack socket as
// ::ffff:a.b.c.d become plain IPv4, and IPv6 zones are dropped.
func canonicalAddrPort(ap netip.AddrPort) netip.AddrPort {
	a := ap.Addr().Unmap()
	if a.Is6() && a.Zone() != "" {
		a = a.WithZone("")
	}
	return netip.AddrPortFrom(a, ap.Port())
}
