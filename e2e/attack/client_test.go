package attack

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"trackd/bencode"
)

// The well-behaved clients' requests: plain HTTP and BEP 15 UDP, written
// by hand so that every byte on the wire is the test's.

// httpGet sends one GET for target (path and query) to addr from the
// loopback address src on a new connection with "Connection: close", and
// returns the status and body. The whole exchange must end within timeout.
func httpGet(src, addr, target string, timeout time.Duration) (int, []byte, error) {
	c, err := loopbackDialer(src, timeout).Dial("tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr); err != nil {
		return 0, nil, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// announceQuery is an HTTP announce query for hash and peerID (each 20
// bytes) on port with left and extra parameters appended as given.
func announceQuery(hash, peerID string, port int, left string, extra string) string {
	q := "/announce?info_hash=" + url.QueryEscape(hash) + "&peer_id=" + url.QueryEscape(peerID) +
		fmt.Sprintf("&port=%d&left=%s&compact=1", port, left)
	if extra != "" {
		q += "&" + extra
	}
	return q
}

// decodeDict decodes a bencoded dictionary; a "failure reason" in it is
// returned as the error.
func decodeDict(body []byte) (map[string]any, error) {
	v, err := bencode.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("%v in %q", err, truncate(body))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a dictionary: %q", truncate(body))
	}
	if fr, ok := m["failure reason"]; ok {
		return m, fmt.Errorf("failure reason %q", fr)
	}
	return m, nil
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// httpAnnounce announces over HTTP from src and returns the number of
// compact IPv4 peers in the reply; a status other than 200 or a failure
// reason is an error.
func httpAnnounce(src, addr, query string, timeout time.Duration) (int, error) {
	status, body, err := httpGet(src, addr, query, timeout)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("HTTP status %d: %q", status, truncate(body))
	}
	m, err := decodeDict(body)
	if err != nil {
		return 0, err
	}
	peers, ok := m["peers"].(string)
	if !ok || len(peers)%6 != 0 {
		return 0, fmt.Errorf("no compact peers in %q", truncate(body))
	}
	return len(peers) / 6, nil
}

// httpScrape returns the complete and incomplete counts of hash.
func httpScrape(addr, hash string) (complete, incomplete int64, err error) {
	status, body, err := httpGet("127.0.0.1", addr, "/scrape?info_hash="+url.QueryEscape(hash), 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	if status != http.StatusOK {
		return 0, 0, fmt.Errorf("scrape: HTTP status %d", status)
	}
	m, err := decodeDict(body)
	if err != nil {
		return 0, 0, err
	}
	files, _ := m["files"].(map[string]any)
	f, ok := files[hash].(map[string]any)
	if !ok {
		return 0, 0, nil // a torrent without peers is left out
	}
	c, _ := f["complete"].(int64)
	i, _ := f["incomplete"].(int64)
	return c, i, nil
}

// BEP 15.
const (
	udpProtocolID  = 0x41727101980
	actionConnect  = 0
	actionAnnounce = 1
	actionError    = 3

	eventNone    = 0
	eventStarted = 2
	eventStopped = 3
)

// udpAnnounceReq is a BEP 15 announce.
type udpAnnounceReq struct {
	hash, peerID [20]byte
	left         uint64
	event        uint32
	numWant      int32
	port         uint16
}

func appendConnect(b []byte, tx uint32) []byte {
	b = binary.BigEndian.AppendUint64(b, udpProtocolID)
	b = binary.BigEndian.AppendUint32(b, actionConnect)
	return binary.BigEndian.AppendUint32(b, tx)
}

func appendAnnounce(b []byte, connID uint64, tx uint32, r *udpAnnounceReq) []byte {
	b = binary.BigEndian.AppendUint64(b, connID)
	b = binary.BigEndian.AppendUint32(b, actionAnnounce)
	b = binary.BigEndian.AppendUint32(b, tx)
	b = append(b, r.hash[:]...)
	b = append(b, r.peerID[:]...)
	b = binary.BigEndian.AppendUint64(b, 0) // downloaded
	b = binary.BigEndian.AppendUint64(b, r.left)
	b = binary.BigEndian.AppendUint64(b, 0) // uploaded
	b = binary.BigEndian.AppendUint32(b, r.event)
	b = binary.BigEndian.AppendUint32(b, 0) // ip: the sender's
	b = binary.BigEndian.AppendUint32(b, 0) // key
	b = binary.BigEndian.AppendUint32(b, uint32(r.numWant))
	return binary.BigEndian.AppendUint16(b, r.port)
}

// udpExchange sends req on c and returns the first reply carrying tx,
// sending req again every second until deadline (a client retransmits; a
// packet may be dropped while a flood fills trackd's socket buffer). It
// returns how many times req was sent.
func udpExchange(c *net.UDPConn, req []byte, tx uint32, deadline time.Time) ([]byte, int, error) {
	buf := make([]byte, 2048)
	sends := 0
	for {
		now := time.Now()
		if !now.Before(deadline) {
			return nil, sends, fmt.Errorf("no UDP reply (sent %d times)", sends)
		}
		if _, err := c.Write(req); err != nil {
			return nil, sends, err
		}
		sends++
		wait := now.Add(time.Second)
		if deadline.Before(wait) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		for {
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, sends, err
			}
			if n >= 8 && binary.BigEndian.Uint32(buf[4:]) == tx {
				if binary.BigEndian.Uint32(buf) == actionError {
					return nil, sends, fmt.Errorf("UDP error reply %q", buf[8:n])
				}
				return buf[:n], sends, nil
			}
		}
	}
}

// udpConnect dials addr from src and gets a connection id.
func udpConnect(src, addr string, deadline time.Time) (*net.UDPConn, uint64, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, 0, err
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
	if err != nil {
		return nil, 0, err
	}
	const tx = 0x5eed
	rep, _, err := udpExchange(c, appendConnect(nil, tx), tx, deadline)
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("connect: %w", err)
	}
	if len(rep) < 16 || binary.BigEndian.Uint32(rep) != actionConnect {
		c.Close()
		return nil, 0, fmt.Errorf("connect: bad reply %x", rep)
	}
	return c, binary.BigEndian.Uint64(rep[8:]), nil
}

// udpAnnounce connects to addr from src and announces r; it returns the
// number of IPv4 peers in the reply.
func udpAnnounce(src, addr string, r *udpAnnounceReq, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	c, connID, err := udpConnect(src, addr, deadline)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	const tx = 0xa11ce
	rep, _, err := udpExchange(c, appendAnnounce(nil, connID, tx, r), tx, deadline)
	if err != nil {
		return 0, fmt.Errorf("announce: %w", err)
	}
	if len(rep) < 20 || binary.BigEndian.Uint32(rep) != actionAnnounce || (len(rep)-20)%6 != 0 {
		return 0, fmt.Errorf("announce: bad reply %x", rep)
	}
	return (len(rep) - 20) / 6, nil
}

// id20 pads s to 20 bytes, for readable hashes and peer ids.
func id20(s string) [20]byte {
	var b [20]byte
	copy(b[:], s+strings.Repeat("-", 20))
	return b
}

// id20s is id20 as a string.
func id20s(s string) string {
	b := id20(s)
	return string(b[:])
}
