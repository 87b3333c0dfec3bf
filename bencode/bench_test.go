package bencode

import "testing"

// Typical announce reply values: 50 compact peers of 6 bytes each.
var (
	benchPeers = func() []byte {
		p := make([]byte, 50*6)
		for i := range p {
			p[i] = byte(i * 7)
		}
		return p
	}()
	benchComplete    int64 = 1234
	benchIncomplete  int64 = 56
	benchInterval    int64 = 1800
	benchMinInterval int64 = 900
)

// appendAnnounceReply builds an announce reply the way the tracker's hot
// path does: keys hand-written in sorted order.
func appendAnnounceReply(dst []byte) []byte {
	dst = append(dst, 'd')
	dst = AppendString(dst, "complete")
	dst = AppendInt(dst, benchComplete)
	dst = AppendString(dst, "incomplete")
	dst = AppendInt(dst, benchIncomplete)
	dst = AppendString(dst, "interval")
	dst = AppendInt(dst, benchInterval)
	dst = AppendString(dst, "min interval")
	dst = AppendInt(dst, benchMinInterval)
	dst = AppendString(dst, "peers")
	dst = AppendBytes(dst, benchPeers)
	return append(dst, 'e')
}

func announceReplyValue() map[string]any {
	return map[string]any{
		"complete":     benchComplete,
		"incomplete":   benchIncomplete,
		"interval":     benchInterval,
		"min interval": benchMinInterval,
		"peers":        benchPeers,
	}
}

// TestAnnounceReplyForms checks that the hand-built reply, the generic
// Marshal and Decode all agree.
func TestAnnounceReplyForms(t *testing.T) {
	hand := appendAnnounceReply(nil)
	gen, err := Marshal(announceReplyValue())
	if err != nil {
		t.Fatal(err)
	}
	if string(hand) != string(gen) {
		t.Fatalf("hand-built reply %q != Marshal %q", hand, gen)
	}
	v, err := Decode(hand)
	if err != nil {
		t.Fatalf("Decode(hand-built reply): %v", err)
	}
	m := v.(map[string]any)
	if m["interval"] != int64(1800) || m["peers"] != string(benchPeers) {
		t.Fatalf("Decode(hand-built reply) = %#v", v)
	}
}

func BenchmarkAppendAnnounceReply(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	for b.Loop() {
		buf = appendAnnounceReply(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkMarshalAnnounceReply(b *testing.B) {
	b.ReportAllocs()
	v := announceReplyValue()
	var n int
	for b.Loop() {
		out, err := Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
}

func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	data := appendAnnounceReply(nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
