package relay

import (
	"context"
	"testing"
	"time"

	"trackd/bittorrent"
	"trackd/fleet/fleettest"
	"trackd/signaling"
)

// BenchmarkAnnounce is the request path of a WebSocket announce that
// refreshes a peer and picks 5 others, on a signaling.Memory alone and on
// a relay Registry (running, on a Bus in memory with no other instance):
// the difference is the change queued for broadcast.
func BenchmarkAnnounce(b *testing.B) {
	const swarms, perSwarm = 1024, 20
	for _, tt := range []struct {
		name string
		reg  func(b *testing.B) signaling.Registry
	}{
		{"memory", func(b *testing.B) signaling.Registry { return signaling.NewMemory(signaling.Options{}) }},
		{"relay", func(b *testing.B) signaling.Registry {
			r := New(fleettest.NewBus(1), Options{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { r.Run(ctx); close(done) }()
			b.Cleanup(func() { cancel(); <-done })
			return r
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			reg := tt.reg(b)
			anns := make([]signaling.Announce, swarms*perSwarm)
			for i := range anns {
				anns[i] = signaling.Announce{InfoHash: bittorrent.InfoHash{byte(i / perSwarm), byte(i / perSwarm >> 8)}, PeerID: pid(i), Via: &conn{}}
				reg.Announce(&anns[i], nil)
				anns[i].NumWant = 5
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				dst := make([]signaling.Sender, 0, 5)
				var a signaling.Announce
				i := 0
				for pb.Next() {
					i = (i + 7919) % len(anns)
					a = anns[i]
					dst, _, _ = reg.Announce(&a, dst[:0])
				}
			})
		})
	}
}

// BenchmarkRemoteSend is an offer Sent to another instance's peer: the
// message queued for its instance and sent by its goroutine (to a Bus in
// memory where no one listens); dropped/op is the share refused because
// the queue (64 MiB here) was full.
func BenchmarkRemoteSend(b *testing.B) {
	bus := fleettest.NewBus(1)
	r := New(bus, Options{MaxQueueBytes: 64 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	inst := func() *instance {
		for {
			bus.Send(ctx, r.Self(), appendHeader(nil, instanceID(9)))
			if l := r.known(); len(l) == 1 {
				return l[0]
			}
		}
	}()
	p := &remote{inst: inst, key: peerKey{bittorrent.InfoHash{1}, pid(1)}}
	msg := make([]byte, 2500) // an offer with a real SDP is about 2.3 KB
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		p.Send(msg)
	}
	b.StopTimer()
	// with GOMAXPROCS=1 the sender seldom runs and most Sends find the
	// queue full: what they cost is then a refusal's
	b.ReportMetric(float64(r.Stats().RelayDropped)/float64(b.N), "dropped/op")
}

// BenchmarkJoin is an instance that joins a fleet where another holds
// 100,000 WebSocket peers (in 10,000 swarms): from its start until it
// holds them all, through the dump, on a Bus in memory. ns/op is the
// whole join; the peers/s metric its rate.
func BenchmarkJoin(b *testing.B) {
	const n = 100_000
	bus := fleettest.NewBus(1)
	opts := Options{Self: instanceID(0), Heartbeat: 10 * time.Millisecond, Timeout: time.Hour}
	a := New(bus, opts)
	for i := range n {
		s := i % 10_000
		a.Announce(&signaling.Announce{InfoHash: bittorrent.InfoHash{byte(s), byte(s >> 8)}, PeerID: pid(i), Via: &conn{}}, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	b.ResetTimer()
	for i := range b.N {
		opts.Self = instanceID(1 + i)
		j := New(bus, opts)
		jctx, jcancel := context.WithCancel(ctx)
		jdone := make(chan struct{})
		go func() { j.Run(jctx); close(jdone) }()
		for j.Totals().Peers() < n {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		jcancel()
		<-jdone
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "peers/s")
}
