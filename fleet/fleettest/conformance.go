package fleettest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"trackd/fleet"
)

// Slack is how many entries more than its bound a trimmed stream may keep
// in TestBus: Redis trims whole nodes of a stream (MAXLEN ~), of up to 100
// entries by default.
const Slack = 100

// TestBus runs the behaviour every fleet.Bus must have, as subtests of t,
// so that the Bus in memory is held to what Redis does (fleet/redisbus
// runs it too). newBus must return a new, empty Bus; TestBus closes it.
// maxLen is the number of entries each stream of those Buses keeps (about:
// up to Slack more), or 0 to leave trimming untested.
//
// The subtests wait for real time (blocking reads, expiries: a few
// seconds in all), and never assume a delivery time: they poll for what
// they wait for.
func TestBus(t *testing.T, maxLen int, newBus func(t *testing.T) fleet.Bus) {
	tests := []struct {
		name string
		fn   func(*testing.T, fleet.Bus)
	}{
		{"Tail", testTail},
		{"PublishReadOrder", testPublishReadOrder},
		{"ReadFromEnd", testReadFromEnd},
		{"ReadFromStart", testReadFromStart},
		{"ReadBlocks", testReadBlocks},
		{"BatchesAreCopied", testCopies},
		{"StreamsApart", testStreamsApart},
		{"Trim", func(t *testing.T, b fleet.Bus) { testTrim(t, b, maxLen) }},
		{"SendDirectAndBroadcast", testSend},
		{"ListenEndsWithContext", testListenEnds},
		{"Claim", testClaim},
		{"AppendChunk", testAppendChunk},
		{"BlobExpiry", testBlobExpiry},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBus(t)
			closed := false
			t.Cleanup(func() {
				if !closed {
					b.Close()
				}
			})
			tt.fn(t, b)
			closed = true
			if err := b.Close(); err != nil && tt.name != "Close" {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// ctxFor returns a context that ends after d or with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// publish publishes batch to stream i and fails t on error.
func publish(t *testing.T, b fleet.Bus, i int, batch string) {
	t.Helper()
	if err := b.Publish(ctxFor(t, 10*time.Second), i, []byte(batch)); err != nil {
		t.Fatalf("Publish(%d, %q): %v", i, batch, err)
	}
}

// tail returns the tail of stream i and fails t on error.
func tail(t *testing.T, b fleet.Bus, i int) string {
	t.Helper()
	pos, err := b.Tail(ctxFor(t, 10*time.Second), i)
	if err != nil {
		t.Fatalf("Tail(%d): %v", i, err)
	}
	return pos
}

// readAll reads stream i after after, max at a time without blocking,
// until it has all, and returns the batches and the last position.
func readAll(t *testing.T, b fleet.Bus, i int, after string, max int) ([]string, string) {
	t.Helper()
	var out []string
	for range 100000 {
		es, err := b.Read(ctxFor(t, 10*time.Second), i, after, max, 0)
		if err != nil {
			t.Fatalf("Read(%d, %q, %d): %v", i, after, max, err)
		}
		if len(es) > max {
			t.Fatalf("Read(%d, %q, %d) returned %d entries", i, after, max, len(es))
		}
		if len(es) == 0 {
			return out, after
		}
		for _, e := range es {
			out = append(out, string(e.Batch))
			after = e.Pos
		}
	}
	t.Fatal("readAll: the stream does not end")
	return nil, ""
}

func testTail(t *testing.T, b fleet.Bus) {
	if b.NumStreams() < 1 {
		t.Fatalf("NumStreams = %d, want at least 1", b.NumStreams())
	}
	for i := range b.NumStreams() {
		if pos := tail(t, b, i); pos != "" {
			t.Errorf("Tail(%d) of an empty stream = %q, want \"\"", i, pos)
		}
	}
	publish(t, b, 0, "a")
	first := tail(t, b, 0)
	publish(t, b, 0, "b")
	second := tail(t, b, 0)
	if first == "" || second == "" || first == second {
		t.Fatalf("Tail after one and two entries: %q, %q", first, second)
	}
	got, last := readAll(t, b, 0, first, 10)
	if !slices.Equal(got, []string{"b"}) || last != second {
		t.Errorf("Read after the first tail: %q ending at %q; want [b] ending at the tail %q", got, last, second)
	}
}

func testPublishReadOrder(t *testing.T, b fleet.Bus) {
	publish(t, b, 0, "start")
	from := tail(t, b, 0)
	var want []string
	for k := range 25 {
		want = append(want, fmt.Sprint("batch-", k))
		publish(t, b, 0, want[k])
	}
	for _, max := range []int{1, 3, 25, 100} {
		got, last := readAll(t, b, 0, from, max)
		if !slices.Equal(got, want) {
			t.Errorf("read %d at a time: %q, want %q", max, got, want)
		}
		if last != tail(t, b, 0) {
			t.Errorf("read %d at a time: ended at %q, want the tail %q", max, last, tail(t, b, 0))
		}
	}
}

// testReadFromEnd: a Read after "" sees only what is published after it
// started, in order.
func testReadFromEnd(t *testing.T, b fleet.Bus) {
	publish(t, b, 0, "old")
	ctx := ctxFor(t, 20*time.Second)
	got := make(chan []fleet.Entry, 1)
	go func() {
		es, err := b.Read(ctx, 0, "", 100, 10*time.Second)
		if err != nil {
			t.Errorf("Read after \"\": %v", err)
		}
		got <- es
	}()
	// The reader starts at some time: publish until it returns.
	var es []fleet.Entry
	n := 0
	for es == nil {
		select {
		case es = <-got:
			if es == nil {
				t.Fatal("Read after \"\" returned nothing while batches were published")
			}
		case <-time.After(20 * time.Millisecond):
			publish(t, b, 0, fmt.Sprint("new-", n))
			n++
		}
	}
	first := -1
	for k, e := range es {
		var m int
		if _, err := fmt.Sscanf(string(e.Batch), "new-%d", &m); err != nil {
			t.Fatalf("Read after \"\" returned %q", e.Batch)
		}
		if k == 0 {
			first = m
		} else if m != first+k {
			t.Fatalf("Read after \"\" returned new-%d at %d after new-%d: out of order", m, k, first)
		}
	}
}

// testReadFromStart: a Read after fleet.StreamStart sees every entry the
// stream holds, in order: where a reader begins that found its stream
// empty (Tail ""), so that it misses nothing published since.
func testReadFromStart(t *testing.T, b fleet.Bus) {
	publish(t, b, 0, "first")
	publish(t, b, 0, "second")
	got, last := readAll(t, b, 0, fleet.StreamStart, 10)
	if !slices.Equal(got, []string{"first", "second"}) || last != tail(t, b, 0) {
		t.Errorf("Read after StreamStart: %q ending at %q; want [first second] ending at the tail %q", got, last, tail(t, b, 0))
	}
}

// testReadBlocks: a Read with nothing to return waits its block and
// returns nothing, no error; with a block of 0 it returns at once; a
// blocked Read returns as soon as an entry comes.
func testReadBlocks(t *testing.T, b fleet.Bus) {
	ctx := ctxFor(t, 20*time.Second)
	publish(t, b, 0, "x")
	pos := tail(t, b, 0)
	start := time.Now()
	es, err := b.Read(ctx, 0, pos, 10, 300*time.Millisecond)
	if d := time.Since(start); err != nil || len(es) != 0 || d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("Read with nothing to return, block 300ms: %d entries, %v, after %v", len(es), err, d)
	}
	start = time.Now()
	es, err = b.Read(ctx, 0, pos, 10, 0)
	if d := time.Since(start); err != nil || len(es) != 0 || d > 2*time.Second {
		t.Errorf("Read with nothing to return, block 0: %d entries, %v, after %v", len(es), err, d)
	}
	published := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		published <- b.Publish(ctx, 0, []byte("y"))
	}()
	start = time.Now()
	es, err = b.Read(ctx, 0, pos, 10, 10*time.Second)
	if d := time.Since(start); err != nil || len(es) != 1 || string(es[0].Batch) != "y" || d > 5*time.Second {
		t.Errorf("blocked Read while y is published: %d entries, %v, after %v", len(es), err, d)
	}
	if err := <-published; err != nil {
		t.Errorf("Publish: %v", err)
	}
}

// testCopies: neither the publisher's nor the reader's changes to their
// slices touch what the Bus holds.
func testCopies(t *testing.T, b fleet.Bus) {
	ctx := ctxFor(t, 10*time.Second)
	publish(t, b, 0, "start")
	from := tail(t, b, 0)
	batch := []byte("original")
	if err := b.Publish(ctx, 0, batch); err != nil {
		t.Fatal(err)
	}
	copy(batch, "XXXXXXXX")
	es, err := b.Read(ctx, 0, from, 1, 0)
	if err != nil || len(es) != 1 || string(es[0].Batch) != "original" {
		t.Fatalf("Read = %v, %v; want [original]", es, err)
	}
	copy(es[0].Batch, "YYYYYYYY")
	if got, _ := readAll(t, b, 0, from, 1); !slices.Equal(got, []string{"original"}) {
		t.Errorf("read again: %q, want [original]", got)
	}
	// A large batch, binary, goes through whole.
	big := make([]byte, 64<<10)
	for k := range big {
		big[k] = byte(k * 7)
	}
	if err := b.Publish(ctx, 0, big); err != nil {
		t.Fatal(err)
	}
	es, err = b.Read(ctx, 0, from, 2, 0)
	if err != nil || len(es) != 2 || !bytes.Equal(es[1].Batch, big) {
		t.Errorf("a 64 KiB binary batch did not come back whole (%d entries, %v)", len(es), err)
	}
}

// testStreamsApart: what is published to one stream is read from it
// only.
func testStreamsApart(t *testing.T, b fleet.Bus) {
	n := b.NumStreams()
	if n < 2 {
		t.Skipf("the Bus has %d stream", n)
	}
	froms := make([]string, n)
	for i := range n {
		publish(t, b, i, "start")
		froms[i] = tail(t, b, i)
	}
	for k := range 3 {
		for i := range n {
			publish(t, b, i, fmt.Sprintf("%d/%d", i, k))
		}
	}
	for i := range n {
		got, _ := readAll(t, b, i, froms[i], 100)
		want := []string{fmt.Sprintf("%d/0", i), fmt.Sprintf("%d/1", i), fmt.Sprintf("%d/2", i)}
		if !slices.Equal(got, want) {
			t.Errorf("stream %d: %q, want %q", i, got, want)
		}
	}
}

// testTrim: a stream keeps about its bound, the newest entries.
func testTrim(t *testing.T, b fleet.Bus, maxLen int) {
	if maxLen <= 0 {
		t.Skip("no bound given")
	}
	publish(t, b, 0, "first")
	first := tail(t, b, 0)
	n := 2*maxLen + 2*Slack
	for k := range n {
		publish(t, b, 0, fmt.Sprint(k))
	}
	got, _ := readAll(t, b, 0, first, 1000)
	if len(got) < maxLen || len(got) > maxLen+Slack {
		t.Errorf("after %d entries the stream keeps %d after the first; want %d to %d", n+1, len(got), maxLen, maxLen+Slack)
	}
	if len(got) > 0 && got[len(got)-1] != fmt.Sprint(n-1) {
		t.Errorf("the last entry is %q, want %d", got[len(got)-1], n-1)
	}
}

// inbox records the messages one listener got.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (in *inbox) add(msg []byte) {
	in.mu.Lock()
	in.msgs = append(in.msgs, string(msg))
	in.mu.Unlock()
}

func (in *inbox) has(msg string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Contains(in.msgs, msg)
}

func (in *inbox) hasPrefix(p string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, m := range in.msgs {
		if len(m) >= len(p) && m[:len(p)] == p {
			return true
		}
	}
	return false
}

// listen starts a Listen of self that records into an inbox, and returns
// the inbox and a func that stops it and returns Listen's error.
func listen(t *testing.T, b fleet.Bus, self fleet.Instance) (*inbox, func() error) {
	in := &inbox{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Listen(ctx, self, in.add) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("Listen did not return within 10s of its context's end")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return in, stop
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// synced sends probes to every instance until every inbox got one, so
// that the listeners are known to be subscribed.
func synced(t *testing.T, b fleet.Bus, ins ...*inbox) {
	t.Helper()
	ctx := ctxFor(t, 20*time.Second)
	for k := 0; ; k++ {
		all := true
		for _, in := range ins {
			all = all && in.hasPrefix("probe-")
		}
		if all {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("the listeners got no probe within 20s")
		}
		if err := b.Send(ctx, fleet.Instance{}, fmt.Appendf(nil, "probe-%d", k)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testSend(t *testing.T, b fleet.Bus) {
	ctx := ctxFor(t, 20*time.Second)
	ida, idb, idc := fleet.Instance{1}, fleet.Instance{2}, fleet.Instance{3}
	a, _ := listen(t, b, ida)
	bb, _ := listen(t, b, idb)
	synced(t, b, a, bb)
	for _, m := range []struct {
		to  fleet.Instance
		msg string
	}{{ida, "to-a"}, {idb, "to-b"}, {idc, "to-c"}, {fleet.Instance{}, "to-all"}} {
		if err := b.Send(ctx, m.to, []byte(m.msg)); err != nil {
			t.Fatalf("Send(%s, %q): %v", m.to, m.msg, err)
		}
	}
	if !waitFor(10*time.Second, func() bool {
		return a.has("to-a") && a.has("to-all") && bb.has("to-b") && bb.has("to-all")
	}) {
		t.Fatalf("within 10s, a got %q and b got %q; want each its own message and to-all", a.msgs, bb.msgs)
	}
	time.Sleep(100 * time.Millisecond) // for a wrongly delivered message to arrive
	if a.has("to-b") || a.has("to-c") || bb.has("to-a") || bb.has("to-c") {
		t.Errorf("a got %q, b got %q: a message to one instance reached another", a.msgs, bb.msgs)
	}
	// A message to an instance that does not listen is no error.
	if err := b.Send(ctx, fleet.Instance{9}, []byte("nobody")); err != nil {
		t.Errorf("Send to an instance without a listener: %v", err)
	}
}

func testListenEnds(t *testing.T, b fleet.Bus) {
	in, stop := listen(t, b, fleet.Instance{1})
	synced(t, b, in)
	if err := stop(); err != context.Canceled {
		t.Errorf("Listen returned %v when its context was canceled, want context.Canceled", err)
	}
}

func testClaim(t *testing.T, b fleet.Bus) {
	ctx := ctxFor(t, 10*time.Second)
	claim := func(key string, ttl time.Duration) bool {
		t.Helper()
		ok, err := b.Claim(ctx, key, ttl)
		if err != nil {
			t.Fatalf("Claim(%q): %v", key, err)
		}
		return ok
	}
	if !claim("k", 300*time.Millisecond) {
		t.Fatal("the first Claim of k failed")
	}
	if claim("k", time.Minute) {
		t.Error("a second Claim of k succeeded while the first held it")
	}
	if !claim("other", time.Minute) {
		t.Error("the first Claim of another key failed")
	}
	// Of many at once, exactly one wins.
	var wins sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 10 {
		wins.Go(func() {
			if ok, err := b.Claim(ctx, "race", time.Minute); err == nil && ok {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wins.Wait()
	if won != 1 {
		t.Errorf("10 concurrent Claims of one key: %d won, want 1", won)
	}
	if !waitFor(5*time.Second, func() bool { return claim("k", time.Minute) }) {
		t.Error("k could not be claimed again after its ttl")
	}
}

func testAppendChunk(t *testing.T, b fleet.Bus) {
	ctx := ctxFor(t, 20*time.Second)
	chunks := [][]byte{[]byte("zero"), make([]byte, 100<<10), {0, 1, 2}}
	for k := range chunks[1] {
		chunks[1][k] = byte(k)
	}
	for _, c := range chunks {
		if err := b.Append(ctx, "blob", c, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range chunks {
		c, ok, err := b.Chunk(ctx, "blob", i, 0)
		if err != nil || !ok || !bytes.Equal(c, want) {
			t.Errorf("Chunk(%d) = %d bytes, %v, %v; want the %d bytes appended", i, len(c), ok, err, len(want))
		}
	}
	start := time.Now()
	c, ok, err := b.Chunk(ctx, "blob", 3, 200*time.Millisecond)
	if d := time.Since(start); ok || err != nil || c != nil || d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("Chunk past the end, wait 200ms: %q, %v, %v after %v; want not ok after the wait", c, ok, err, d)
	}
	if c, ok, err := b.Chunk(ctx, "none", 0, 0); ok || err != nil || c != nil {
		t.Errorf("Chunk of a missing blob: %q, %v, %v; want not ok, no error", c, ok, err)
	}
	// A Chunk waits for the chunk appended while it waits.
	appended := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		appended <- b.Append(ctx, "blob", []byte("three"), time.Minute)
	}()
	start = time.Now()
	c, ok, err = b.Chunk(ctx, "blob", 3, 10*time.Second)
	if d := time.Since(start); !ok || err != nil || string(c) != "three" || d > 5*time.Second {
		t.Errorf("Chunk(3) waiting while it is appended: %q, %v, %v after %v", c, ok, err, d)
	}
	if err := <-appended; err != nil {
		t.Errorf("Append: %v", err)
	}
}

// testBlobExpiry: a blob expires ttl after its last Append, whole.
func testBlobExpiry(t *testing.T, b fleet.Bus) {
	ctx := ctxFor(t, 20*time.Second)
	appendTo := func(key, chunk string, ttl time.Duration) {
		t.Helper()
		if err := b.Append(ctx, key, []byte(chunk), ttl); err != nil {
			t.Fatal(err)
		}
	}
	// Checked 250ms after the first Append's ttl would have ended it,
	// 250ms before the second's does.
	appendTo("short", "a", 200*time.Millisecond)
	appendTo("kept", "a", time.Second)
	time.Sleep(500 * time.Millisecond)
	appendTo("kept", "b", time.Second) // renews the whole blob
	time.Sleep(750 * time.Millisecond)
	if c, ok, err := b.Chunk(ctx, "short", 0, 0); ok || err != nil {
		t.Errorf("a blob 1s after its ttl of 200ms: chunk 0 = %q, %v, %v; want gone", c, ok, err)
	}
	for i, want := range []string{"a", "b"} {
		if c, ok, err := b.Chunk(ctx, "kept", i, 0); !ok || err != nil || string(c) != want {
			t.Errorf("a blob 750ms after its last Append of ttl 1s: chunk %d = %q, %v, %v; want %q", i, c, ok, err, want)
		}
	}
	if !waitFor(5*time.Second, func() bool { _, ok, _ := b.Chunk(ctx, "kept", 0, 0); return !ok }) {
		t.Error("a blob was still there 5s after its last Append of ttl 1s")
	}
}

// testClose: Close ends a blocked Read and a Listen, and every call after
// it fails.
func testClose(t *testing.T, b fleet.Bus) {
	in := &inbox{}
	listenDone := make(chan error, 1)
	go func() { listenDone <- b.Listen(context.Background(), fleet.Instance{1}, in.add) }()
	synced(t, b, in)
	publish(t, b, 0, "x")
	pos := tail(t, b, 0)
	readDone := make(chan error, 1)
	go func() {
		_, err := b.Read(context.Background(), 0, pos, 10, 5*time.Second)
		readDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	start := time.Now()
	select {
	case err := <-listenDone:
		if err == nil {
			t.Error("Listen returned nil after Close, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen did not return within 5s of Close")
	}
	select {
	case err := <-readDone:
		if err == nil {
			t.Error("a blocked Read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Read did not return within 5s of Close")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Listen and a blocked Read took %v to return after Close", d)
	}
	ctx := ctxFor(t, 10*time.Second)
	if err := b.Publish(ctx, 0, []byte("y")); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if _, err := b.Tail(ctx, 0); err == nil {
		t.Error("Tail after Close succeeded")
	}
	if err := b.Send(ctx, fleet.Instance{}, []byte("y")); err == nil {
		t.Error("Send after Close succeeded")
	}
	if _, err := b.Claim(ctx, "k", time.Second); err == nil {
		t.Error("Claim after Close succeeded")
	}
	if err := b.Append(ctx, "k", []byte("y"), time.Second); err == nil {
		t.Error("Append after Close succeeded")
	}
	if _, _, err := b.Chunk(ctx, "k", 0, 0); err == nil {
		t.Error("Chunk after Close succeeded")
	}
	if err := b.Listen(ctx, fleet.Instance{1}, func([]byte) {}); err == nil {
		t.Error("Listen after Close returned nil")
	}
}
