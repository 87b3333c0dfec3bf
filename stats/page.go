package stats

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("stats").Funcs(template.FuncMap{
	"num":      formatCount,
	"u64":      func(v uint32) uint64 { return uint64(v) },
	"rate":     formatRate,
	"duration": formatUptime,
	"pct": func(part, whole uint64) string {
		if whole == 0 {
			return "0%"
		}
		return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
	},
}).Parse(pageHTML))

// ServeHTTP serves the page at /stats and the JSON at /stats.json (any
// path ending in ".json").
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	snap := r.Snapshot()
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasSuffix(req.URL.Path, ".json") {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		enc.Encode(snap)
		return
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pageData{Snapshot: snap, Charts: charts(snap)}); err != nil {
		http.Error(w, "stats page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.Write(buf.Bytes())
}

type pageData struct {
	Snapshot
	Charts []chart
}

// A chart is one SVG line chart: a few series over the history's times.
type chart struct {
	ID, Title, Unit string
	Width, Height   int
	Series          []series
	YTicks          []tick
	XTicks          []tick
	Empty           bool
}

type series struct {
	Name, Color string
	Points      string // the polyline's points attribute
	Last        string
}

type tick struct {
	Pos    float64
	Label  string
	Anchor string // of the label: start, middle or end
}

const (
	chartW, chartH = 640, 180
	padL, padR     = 56, 8
	padT, padB     = 8, 22
)

// wsColor draws the WebSocket figures.
const wsColor = "#2ca02c"

func charts(s Snapshot) []chart {
	h := s.History
	times := make([]int64, len(h))
	for i, x := range h {
		times[i] = x.Time
	}
	pick := func(f func(HistoryItem) float64) []float64 {
		v := make([]float64, len(h))
		for i, x := range h {
			v[i] = f(x)
		}
		return v
	}
	reqs := []namedValues{
		{"UDP", "#1f77b4", pick(func(x HistoryItem) float64 { return x.UDPRate })},
		{"HTTP", "#d62728", pick(func(x HistoryItem) float64 { return x.HTTPRate })},
		{"WebSocket", wsColor, pick(func(x HistoryItem) float64 { return x.WSRate })},
	}
	// the first sample has no rate: leave it out of the rate chart
	rateTimes := times
	if len(rateTimes) > 0 {
		rateTimes = rateTimes[1:]
		for i := range reqs {
			reqs[i].values = reqs[i].values[1:]
		}
	}
	return []chart{
		makeChart("requests", "Requests per second over time", "/s", rateTimes, reqs),
		makeChart("peers", "Peers", "", times, []namedValues{
			{"peers", "#9467bd", pick(func(x HistoryItem) float64 { return float64(x.Peers) })},
			{"WebSocket peers", wsColor, pick(func(x HistoryItem) float64 { return float64(x.WSPeers) })},
		}),
		makeChart("torrents", "Torrents", "", times, []namedValues{{"torrents", "#ff7f0e", pick(func(x HistoryItem) float64 { return float64(x.Torrents) })}}),
	}
}

type namedValues struct {
	name, color string
	values      []float64
}

func makeChart(id, title, unit string, times []int64, data []namedValues) chart {
	c := chart{ID: id, Title: title, Unit: unit, Width: chartW, Height: chartH}
	if len(times) < 2 {
		c.Empty = true
		return c
	}
	t0, t1 := float64(times[0]), float64(times[len(times)-1])
	top := 0.0
	for _, d := range data {
		for _, v := range d.values {
			top = math.Max(top, v)
		}
	}
	top = niceCeil(top)
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(t int64) float64 { return padL + plotW*(float64(t)-t0)/(t1-t0) }
	y := func(v float64) float64 { return padT + plotH*(1-v/top) }
	for _, d := range data {
		var b strings.Builder
		for i, v := range d.values {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", x(times[i]), y(v))
		}
		last := ""
		if n := len(d.values); n > 0 {
			last = formatRate(d.values[n-1])
		}
		c.Series = append(c.Series, series{Name: d.name, Color: d.color, Points: b.String(), Last: last})
	}
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		c.YTicks = append(c.YTicks, tick{Pos: y(v), Label: formatRate(v)})
	}
	span := time.Duration(t1-t0) * time.Second
	for i := 0; i <= 4; i++ {
		t := int64(t0 + (t1-t0)*float64(i)/4)
		ago := span - span*time.Duration(i)/4
		label := "now"
		if ago > 0 {
			label = "−" + formatUptime(ago.Seconds())
		}
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case 4:
			anchor = "end"
		}
		c.XTicks = append(c.XTicks, tick{Pos: x(t), Label: label, Anchor: anchor})
	}
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1), so
// that the axis ticks are round numbers.
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// formatCount writes n with thin groups of thousands: 1 234 567.
func formatCount(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	return b.String()
}

// formatRate writes v short: 950, 12.5k, 1.2M.
func formatRate(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	case v >= 10 || v == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// formatUptime writes seconds as "3d 4h", "5h 12m", "7m" or "40s".
func formatUptime(sec float64) string {
	d := time.Duration(sec) * time.Second
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
