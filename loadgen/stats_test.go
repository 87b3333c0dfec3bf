package loadgen

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 1 + v/64 {
		b := histBucket(v)
		if b < prev {
			t.Fatalf("bucket of %d is %d, below the previous %d", v, b, prev)
		}
		prev = b
		if up := histUpper(b); up < v || (v >= histSub && float64(up-v) > float64(v)/16) {
			t.Fatalf("value %d in bucket %d whose upper bound is %d", v, b, up)
		}
		if b > 0 && histUpper(b-1) >= v {
			t.Fatalf("value %d also fits bucket %d (upper %d)", v, b-1, histUpper(b-1))
		}
	}
	if b := histBucket(1 << 63); b != histBuckets-1 {
		t.Errorf("huge value in bucket %d", b)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h, other Histogram
	for i := 1; i <= 1000; i++ {
		if i%2 == 0 {
			h.Record(time.Duration(i) * time.Microsecond)
		} else {
			other.Record(time.Duration(i) * time.Microsecond)
		}
	}
	h.Merge(&other)
	if h.Count() != 1000 || h.Max() != time.Millisecond {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Millisecond}} {
		got := h.Quantile(q.q)
		if got < q.want || float64(got-q.want) > float64(q.want)/16 {
			t.Errorf("q%.2f = %v, want %v (+6.25%%)", q.q, got, q.want)
		}
	}
	if m := h.Mean(); m < 500*time.Microsecond || m > 501*time.Microsecond {
		t.Errorf("mean %v", m)
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram")
	}
	if n := testing.AllocsPerRun(100, func() { h.Record(time.Millisecond) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}

func TestStatsMerge(t *testing.T) {
	var a, b Stats
	a.Responses, b.Responses = 1, 2
	a.addError("x")
	b.addErrors("x", 2)
	b.addError("y")
	b.Latency.Record(time.Second)
	a.Merge(&b)
	if a.Responses != 3 || a.Errors != 4 || a.ErrorMsgs["x"] != 3 || a.ErrorMsgs["y"] != 1 || a.Latency.Count() != 1 {
		t.Errorf("%+v", a)
	}
}
