package redisbus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"trackd/internal/redistest"
)

// changeSize is about the size of one change in a batch (changes of about
// 40 bytes: a full batch of 32 KiB carries about 800), to turn Redis CPU
// per batch into Redis CPU per change, that is per announce.
const changeSize = 40

// BenchmarkPublishRead publishes b.N batches to one stream of a loopback
// redis-server, one at a time as an instance's publisher does, while
// readers (the other instances) read every one of them, and reports the
// throughput and the server's CPU time per batch and per change
// (redis-us/batch, redis-ns/change), from /proc/<pid>/stat (utime+stime,
// in clock ticks: redis-stat-us/batch) and, finer, the sum of
// /proc/<pid>/task/*/schedstat. Batches of 32 KiB are the fleet's under
// load; of 4 KiB (about 100 changes), under a lighter one.
func BenchmarkPublishRead(b *testing.B) {
	for _, size := range []int{32 << 10, 4 << 10} {
		for _, readers := range []int{1, 2} {
			b.Run(fmt.Sprintf("size=%dKiB/readers=%d", size>>10, readers), func(b *testing.B) {
				benchPublishRead(b, size, readers)
			})
		}
	}
}

func benchPublishRead(b *testing.B, size, readers int) {
	s := redistest.Start(b)
	ctx := context.Background()
	bus := open(b, s.URL(), Options{})
	pid, err := serverPID(ctx, s)
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]byte, size)
	for k := range batch {
		batch[k] = byte(k * 13)
	}
	if err := bus.Publish(ctx, 0, batch); err != nil {
		b.Fatal(err)
	}
	from, err := bus.Tail(ctx, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	ticks0, ns0 := cpuTime(b, pid)
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			after, n := from, 0
			for n < b.N {
				es, err := bus.Read(ctx, 0, after, 64, time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				if len(es) == 0 {
					b.Errorf("reader: nothing for a second after %d of %d batches", n, b.N)
					return
				}
				for _, e := range es {
					if len(e.Batch) != len(batch) {
						b.Errorf("a batch of %d bytes, want %d", len(e.Batch), len(batch))
					}
				}
				n += len(es)
				after = es[len(es)-1].Pos
			}
		})
	}
	for range b.N {
		if err := bus.Publish(ctx, 0, batch); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	ticks1, ns1 := cpuTime(b, pid)
	perBatch := float64(ns1-ns0) / float64(b.N)
	b.ReportMetric(perBatch/1e3, "redis-us/batch")
	b.ReportMetric(perBatch/float64(size/changeSize), "redis-ns/change")
	b.ReportMetric(float64(ticks1-ticks0)*1e6/float64(clockTicks)/float64(b.N), "redis-stat-us/batch")
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's utime and stime:
// 100 on Linux.
const clockTicks = 100

// serverPID returns the process id of the redis-server s.
func serverPID(ctx context.Context, s *redistest.Server) (int, error) {
	info, err := s.Client().Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no process_id in INFO server")
}

// cpuTime returns the CPU time process pid has used: utime+stime of
// /proc/<pid>/stat in clock ticks, and the sum over its threads of the
// first field of /proc/<pid>/task/*/schedstat in ns. It skips b where
// /proc has neither.
func cpuTime(b *testing.B, pid int) (ticks, ns int64) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	// The fields after the command name (in parentheses, which may hold
	// spaces): state is field 3, utime 14, stime 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, p := range tasks {
		s, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, _ := strconv.ParseInt(strings.Fields(string(s))[0], 10, 64)
		ns += v
	}
	if len(tasks) == 0 {
		ns = (utime + stime) * 1e9 / clockTicks
	}
	return utime + stime, ns
}
