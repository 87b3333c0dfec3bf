package wsserver

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// recorder is an endpoint that records what readFrames hands it.
type recorder struct {
	msgs, pings []string
	closes      [][]byte
}

func (r *recorder) message(msg []byte) { r.msgs = append(r.msgs, string(msg)) }
func (r *recorder) ping(p []byte)      { r.pings = append(r.pings, string(p)) }
func (r *recorder) peerClose(p []byte) { r.closes = append(r.closes, append([]byte{}, p...)) }

// clientFrame is a masked client frame.
func clientFrame(fin bool, op ws.OpCode, p string) []byte {
	f := ws.MaskFrame(ws.NewFrame(op, fin, []byte(p)))
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// TestReadFrames: frames whole or in pieces give the same messages,
// pings, closes and errors.
func TestReadFrames(t *testing.T) {
	long := strings.Repeat("ab", 40000)
	tests := []struct {
		name  string
		data  []byte
		msgs  []string
		pings []string
		err   *closeErr
		stop  bool
	}{
		{"text", clientFrame(true, ws.OpText, "hello"), []string{"hello"}, nil, nil, false},
		{"empty", clientFrame(true, ws.OpText, ""), []string{""}, nil, nil, false},
		{"two", cat(clientFrame(true, ws.OpText, "a"), clientFrame(true, ws.OpText, "b")), []string{"a", "b"}, nil, nil, false},
		{"16-bit length", clientFrame(true, ws.OpText, strings.Repeat("x", 300)), []string{strings.Repeat("x", 300)}, nil, nil, false},
		{"64-bit length", clientFrame(true, ws.OpText, long), []string{long}, nil, nil, false},
		{"binary strings", clientFrame(true, ws.OpText, "\u0000\u00ff\u0080"), []string{"\u0000\u00ff\u0080"}, nil, nil, false},
		{"fragments and ping", cat(clientFrame(false, ws.OpText, "a"), clientFrame(true, ws.OpPing, "p"),
			clientFrame(false, ws.OpContinuation, "b"), clientFrame(true, ws.OpContinuation, "c")), []string{"abc"}, []string{"p"}, nil, false},
		{"utf-8 split over fragments", cat(clientFrame(false, ws.OpText, "\xc3"), clientFrame(true, ws.OpContinuation, "\xa9")), []string{"é"}, nil, nil, false},
		{"close stops", cat(clientFrame(true, ws.OpClose, ""), clientFrame(true, ws.OpText, "ignored")), nil, nil, nil, true},
		{"too big", clientFrame(true, ws.OpText, strings.Repeat("x", 100001)), nil, nil, errTooBig, false},
		{"too big in fragments", cat(clientFrame(false, ws.OpText, long), clientFrame(true, ws.OpContinuation, long)), nil, nil, errTooBig, false},
		{"binary", clientFrame(true, ws.OpBinary, "x"), nil, nil, errBinary, false},
		{"bad utf-8", clientFrame(true, ws.OpText, "\xff"), nil, nil, errUTF8, false},
		{"unmasked", ws.MustCompileFrame(ws.NewTextFrame([]byte("x"))), nil, nil, errUnmasked, false},
		{"rsv", []byte{0xC1, 0x80, 0, 0, 0, 0}, nil, nil, errReserved, false},
		{"opcode 11", []byte{0x8B, 0x80, 0, 0, 0, 0}, nil, nil, errReserved, false},
		{"long ping", clientFrame(true, ws.OpPing, strings.Repeat("x", 126)), nil, nil, errControl, false},
		{"fragmented close", clientFrame(false, ws.OpClose, ""), nil, nil, errControl, false},
		{"non-minimal 16", []byte{0x81, 0xFE, 0, 5, 0, 0, 0, 0, 'a', 'b', 'c', 'd', 'e'}, nil, nil, errLength, false},
		{"non-minimal 64", []byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0}, nil, nil, errLength, false},
		{"64-bit top bit", []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0}, nil, nil, errLength, false},
		{"lone continuation", clientFrame(true, ws.OpContinuation, "x"), nil, nil, errContinuation, false},
		{"text in fragments", cat(clientFrame(false, ws.OpText, "x"), clientFrame(true, ws.OpText, "y")), nil, nil, errNotContinued, false},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 3, 1000} {
			r, err, stop := feed(tt.data, chunk, 100000)
			if !reflect.DeepEqual(r.msgs, tt.msgs) || !reflect.DeepEqual(r.pings, tt.pings) || err != tt.err || stop != tt.stop {
				t.Errorf("%s (chunk %d): msgs %.30q pings %q err %v stop %v; want %.30q %q %v %v",
					tt.name, chunk, r.msgs, r.pings, err, stop, tt.msgs, tt.pings, tt.err, tt.stop)
			}
		}
	}
}

// feed hands data to readFrames as a connection would get it, chunk
// bytes at a time (0: all at once), keeping the incomplete rest.
func feed(data []byte, chunk, maxMsg int) (*recorder, *closeErr, bool) {
	r := &recorder{}
	var st reassembly
	var buf []byte
	if chunk <= 0 {
		chunk = len(data) + 1
	}
	for len(data) > 0 {
		k := min(chunk, len(data))
		buf = append(buf, data[:k]...)
		data = data[k:]
		n, err, stop := readFrames(buf, &st, maxMsg, r)
		if n < 0 || n > len(buf) {
			panic(fmt.Sprintf("readFrames consumed %d of %d", n, len(buf)))
		}
		if err != nil || stop {
			return r, err, stop
		}
		buf = append(buf[:0], buf[n:]...)
	}
	return r, nil, false
}

// TestCloseReply: a client's close frame is echoed, or refused.
func TestCloseReply(t *testing.T) {
	tests := []struct {
		p    []byte
		want *closeErr
	}{
		{nil, nil},
		{[]byte{3}, errCloseFrame},
		{ws.NewCloseFrameBody(1000, "bye"), errNormal},
		{ws.NewCloseFrameBody(1001, ""), &closeErr{code: 1001}},
		{ws.NewCloseFrameBody(4999, ""), &closeErr{code: 4999}},
		{ws.NewCloseFrameBody(1005, ""), errCloseFrame},
		{ws.NewCloseFrameBody(1006, ""), errCloseFrame},
		{ws.NewCloseFrameBody(999, ""), errCloseFrame},
		{ws.NewCloseFrameBody(5000, ""), errCloseFrame},
		{append(ws.NewCloseFrameBody(1000, ""), 0xff), errUTF8},
	}
	for _, tt := range tests {
		if got := closeReply(tt.p); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("closeReply(%x) = %v, want %v", tt.p, got, tt.want)
		}
	}
}

// TestAppendFrame: server frames as gobwas/ws reads them.
func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536, 70000} {
		p := bytes.Repeat([]byte{'z'}, n)
		f, err := readFrame(bytes.NewReader(appendFrame(nil, opText, p)))
		if err != nil || f.Header.OpCode != ws.OpText || !f.Header.Fin || f.Header.Masked || !bytes.Equal(f.Payload, p) {
			t.Errorf("%d bytes: %+v %v", n, f.Header, err)
		}
	}
	f, err := readFrame(bytes.NewReader(appendClose(nil, errTooBig)))
	if code, reason := ws.ParseCloseFrameData(f.Payload); err != nil || code != 1009 || reason != errTooBig.reason {
		t.Errorf("close frame: %d %q %v", code, reason, err)
	}
}

// FuzzFrames: whatever the bytes, readFrames neither panics nor reads
// past them, hands on only valid UTF-8 within the size bound, and finds
// the same frames whether the bytes come at once or a few at a time.
func FuzzFrames(f *testing.F) {
	f.Add(clientFrame(true, ws.OpText, "hello"))
	f.Add(cat(clientFrame(false, ws.OpText, "a"), clientFrame(true, ws.OpPing, "p"), clientFrame(true, ws.OpContinuation, "b")))
	f.Add(clientFrame(true, ws.OpText, strings.Repeat("x", 300)))
	f.Add(clientFrame(true, ws.OpClose, "\x03\xe8bye"))
	f.Add(clientFrame(true, ws.OpBinary, "x"))
	f.Add([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0})
	f.Add([]byte{0x81, 0xFE, 0, 5, 0, 0, 0, 0, 'a'})
	f.Add([]byte{0xC1, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxMsg = 512
		whole, err1, stop1 := feed(append([]byte{}, data...), 0, maxMsg)
		parts, err2, stop2 := feed(append([]byte{}, data...), 3, maxMsg)
		if !reflect.DeepEqual(whole, parts) || err1 != err2 || stop1 != stop2 {
			t.Fatalf("whole: %q %v %v; in parts: %q %v %v", whole.msgs, err1, stop1, parts.msgs, err2, stop2)
		}
		for _, m := range whole.msgs {
			if len(m) > maxMsg || !utf8.ValidString(m) {
				t.Fatalf("message of %d bytes, valid UTF-8 %v", len(m), utf8.ValidString(m))
			}
		}
	})
}

// nop is an endpoint that does nothing.
type nop struct{}

func (nop) message([]byte)   {}
func (nop) ping([]byte)      {}
func (nop) peerClose([]byte) {}

// BenchmarkReadFrame: parsing a client's text frame (header, unmask,
// UTF-8 check) with this package's codec and with gobwas/ws's
// ReadHeader and Cipher; each iteration first copies the masked frame
// into the read buffer, as a read would.
func BenchmarkReadFrame(b *testing.B) {
	for _, n := range []int{200, 4096} {
		frame := clientFrame(true, ws.OpText, strings.Repeat("a", n))
		buf := make([]byte, len(frame))
		b.Run(fmt.Sprintf("own/%d", n), func(b *testing.B) {
			var st reassembly
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, frame)
				if k, err, _ := readFrames(buf, &st, 1<<20, nop{}); k != len(buf) || err != nil {
					b.Fatal(k, err)
				}
			}
		})
		b.Run(fmt.Sprintf("gobwas/%d", n), func(b *testing.B) {
			var r bytes.Reader
			payload := make([]byte, n)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, frame)
				r.Reset(buf)
				h, err := ws.ReadHeader(&r)
				if err != nil || h.Length != int64(n) {
					b.Fatal(h, err)
				}
				if _, err := io.ReadFull(&r, payload); err != nil {
					b.Fatal(err)
				}
				ws.Cipher(payload, h.Mask, 0)
				if !utf8.Valid(payload) {
					b.Fatal("not utf-8")
				}
			}
		})
	}
}

// BenchmarkWriteFrame: a server text frame into a reused buffer.
func BenchmarkWriteFrame(b *testing.B) {
	for _, n := range []int{200, 4096} {
		p := bytes.Repeat([]byte{'a'}, n)
		b.Run(fmt.Sprintf("own/%d", n), func(b *testing.B) {
			buf := make([]byte, 0, n+16)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendFrame(buf[:0], opText, p)
			}
		})
		b.Run(fmt.Sprintf("gobwas/%d", n), func(b *testing.B) {
			var w bytes.Buffer
			w.Grow(n + 16)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				w.Reset()
				if err := ws.WriteHeader(&w, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(n)}); err != nil {
					b.Fatal(err)
				}
				w.Write(p)
			}
		})
	}
}

// readFrame reads a server frame of at most 1 MiB from r.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(f.Payload, h.Mask, 0)
	}
	return f, nil
}

// TestPendingSince: the clock of unfinished input.
func TestPendingSince(t *testing.T) {
	tests := []struct {
		name         string
		since, now   time.Duration
		inMsg, start bool
		k, rest      int
		want         time.Duration
	}{
		{"nothing left", 5, 9, false, false, 10, 0, 0},
		{"a partial frame begins", 0, 9, false, false, 0, 3, 9},
		{"the same partial frame", 5, 9, false, false, 0, 3, 5},
		{"a frame done, another begun", 5, 9, false, false, 10, 3, 9},
		{"a fragmented message begins", 0, 9, true, true, 10, 0, 9},
		{"its next fragment", 5, 9, true, false, 10, 0, 5},
		{"a message done, another begun", 5, 9, true, true, 10, 2, 9},
		{"at time 0", 0, 0, false, false, 0, 3, 1},
	}
	for _, tt := range tests {
		st := reassembly{inMsg: tt.inMsg, started: tt.start}
		if got := pendingSince(tt.since, tt.now, &st, tt.k, tt.rest); got != tt.want || st.started {
			t.Errorf("%s: %v (started %v), want %v", tt.name, got, st.started, tt.want)
		}
	}
}
