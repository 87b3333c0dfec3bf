package loadgen

import (
	"bufio"
	"net"
	"strconv"
	"sync"
	"time"
)

// CannedWS is a stateless WebSocket tracker with fixed replies, to measure
// the generator's ceiling in its WebSocket mode: it answers every announce
// with a fixed reply, relays the announce's offers back to the connection
// that sent them (with the sender's own peer id, so the generator's checks
// hold), and relays every answer back to the connection that sent it. So
// each announce of K offers costs the generator the same work as against
// a real tracker whose swarms have K other peers: 1 + 2K messages to
// read, 1 + K to write. One goroutine per connection; no swarms.
type CannedWS struct {
	ln  net.Listener
	wg  sync.WaitGroup
	tcp connSet
}

// StartCannedWS serves on addr, which must be a loopback address unless
// allowRemote is set.
func StartCannedWS(addr string, allowRemote bool) (*CannedWS, error) {
	t, err := resolveTarget("ws", addr, allowRemote)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", t.addr.String())
	if err != nil {
		return nil, err
	}
	c := &CannedWS{ln: ln}
	c.wg.Go(func() { c.tcp.accept(ln, &c.wg, c.serve) })
	return c, nil
}

// Addr returns the address served.
func (c *CannedWS) Addr() net.Addr { return c.ln.Addr() }

func (c *CannedWS) String() string {
	return "canned WebSocket tracker on ws://" + c.ln.Addr().String() + "/"
}

// Close stops the server and closes its connections.
func (c *CannedWS) Close() {
	c.ln.Close()
	c.tcp.closeAll()
	c.wg.Wait()
}

func (c *CannedWS) serve(conn net.Conn) {
	e := wsEndpoint{
		conn: conn,
		br:   bufio.NewReaderSize(conn, 4096),
		bw:   bufio.NewWriterSize(conn, 16<<10),
		max:  wsMaxMessage,
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wsServerHandshake(e.br, e.bw); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	var m wsMsg
	var out []byte
	for {
		if e.br.Buffered() == 0 && e.bw.Buffered() > 0 {
			if e.flush() != nil {
				return
			}
		}
		msg, err := e.readMessage()
		if err != nil {
			return
		}
		out = cannedWSReply(out[:0], msg, &m, &e)
		if out == nil {
			return
		}
	}
}

// cannedWSReply queues the replies to one message on e; it returns nil
// when writing failed.
func cannedWSReply(out, msg []byte, m *wsMsg, e *wsEndpoint) []byte {
	fail := func(reason string) []byte {
		out = append(out[:0], `{"failure reason":`...)
		out = appendJSONString(out, []byte(reason))
		out = append(out, '}')
		if e.writeText(out) != nil {
			return nil
		}
		return out
	}
	if err := parseWSMsg(msg, m); err != nil {
		return fail(err.Error())
	}
	if m.action != "announce" {
		return fail("invalid action")
	}
	if m.has&(wsHasInfoHash|wsHasPeerID) != wsHasInfoHash|wsHasPeerID {
		return fail("invalid info_hash or peer_id")
	}
	if m.has&wsHasAnswer != 0 {
		if m.has&(wsHasToPeerID|wsHasOfferID) != wsHasToPeerID|wsHasOfferID {
			return fail("invalid `to_peer_id` (required with `answer`)")
		}
		out = appendRelay(out[:0], "answer", m.answer.raw, &m.offerID, &m.peerID, &m.infoHash)
		if e.writeText(out) != nil {
			return nil
		}
		return out
	}
	out = append(out[:0], `{"complete":`...)
	out = strconv.AppendInt(out, cannedSeeders, 10)
	out = append(out, `,"incomplete":`...)
	out = strconv.AppendInt(out, cannedLeechers, 10)
	out = append(out, `,"action":"announce","info_hash":`...)
	out = appendBinaryString(out, m.infoHash[:])
	out = append(out, `,"interval":120}`...)
	if e.writeText(out) != nil {
		return nil
	}
	for i := range m.offers {
		o := &m.offers[i]
		if !o.hasID || o.offer.raw == nil {
			continue
		}
		out = appendRelay(out[:0], "offer", o.offer.raw, &o.id, &m.peerID, &m.infoHash)
		if e.writeText(out) != nil {
			return nil
		}
	}
	return out
}

// appendRelay appends a relayed offer or answer, in the shape
// bittorrent-tracker relays them.
func appendRelay(out []byte, key string, raw []byte, offerID, peerID, ih *[20]byte) []byte {
	out = append(out, `{"action":"announce","`...)
	out = append(out, key...)
	out = append(out, `":`...)
	out = append(out, raw...)
	out = append(out, `,"offer_id":`...)
	out = appendBinaryString(out, offerID[:])
	out = append(out, `,"peer_id":`...)
	out = appendBinaryString(out, peerID[:])
	out = append(out, `,"info_hash":`...)
	out = appendBinaryString(out, ih[:])
	return append(out, '}')
}
