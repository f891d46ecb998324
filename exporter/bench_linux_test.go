package exporter

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testns"
	"github.com/loadcap/loadcap/sampler"
)

// benchTimeWait and benchPairs make the benchmark's 31,000 sockets: TIME_WAIT
// toward four ports and ESTABLISHED pairs (client and server side).
const (
	benchTimeWait = 30000
	benchPairs    = 500
)

// BenchmarkExporter30k measures, at 30,000 TIME_WAIT and 1,000 ESTABLISHED
// sockets in a throw-away namespace (no filter: every socket, top 20), the
// CPU of one exporter sample (snapshot, counters, sysctls, build) and of one
// scrape (text exposition, gzip, as Prometheus asks for it). The share of a
// core at the default 1 s interval is the sample's CPU per second; the
// exporter stretches its interval when that exceeds 2 %.
//
//	go test -run '^$' -bench Exporter30k ./exporter
//
// TIME_WAIT lasts 60 s: keep -benchtime at its default.
func BenchmarkExporter30k(b *testing.B) {
	ns := testns.New(b)
	testns.SetSysctls(b, ns, map[string]string{
		"net.ipv4.ip_local_port_range": "1024 65535",
		"net.ipv4.tcp_tw_reuse":        "0",
		"net.ipv4.tcp_max_tw_buckets":  "262144",
	})
	start := time.Now()
	testns.MakeSockets(b, ns, []uint16{8086, 8087, 8088, 8089}, benchTimeWait, benchPairs, 40*time.Second)
	b.Logf("made %d TIME_WAIT and %d ESTABLISHED sockets in %s", benchTimeWait, 2*benchPairs, time.Since(start).Round(time.Millisecond))
	expires := start.Add(55 * time.Second)
	check := func(b *testing.B, st *State) {
		n := 0
		for _, d := range st.Destinations {
			n += d.States[sampler.TimeWait]
		}
		if n < benchTimeWait {
			b.Fatalf("saw %d TIME_WAIT sockets, want %d", n, benchTimeWait)
		}
		if time.Now().After(expires) {
			b.Fatal("TIME_WAIT sockets are about to expire: keep the benchmark under a minute")
		}
	}
	for _, source := range []string{sampler.SourceNetlink, sampler.SourceProc} {
		e, err := New(Config{NetNS: ns, Source: source, Interval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("sample/"+source, func(b *testing.B) {
			b.ReportAllocs()
			var cpu time.Duration
			for b.Loop() {
				c, err := e.sample()
				if err != nil {
					b.Fatal(err)
				}
				cpu += c
			}
			perOp := cpu / time.Duration(b.N)
			b.ReportMetric(float64(perOp.Microseconds()), "cpu-µs/sample")
			b.ReportMetric(100*perOp.Seconds()/time.Second.Seconds(), "%core@1s")
			check(b, e.Latest())
		})
		if source == sampler.SourceNetlink {
			b.Run("scrape", func(b *testing.B) {
				b.ReportAllocs()
				h := e.Handler()
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept", "text/plain;version=0.0.4")
				req.Header.Set("Accept-Encoding", "gzip")
				size := 0
				m := testns.StartCPU()
				for b.Loop() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("scrape: status %d", w.Code)
					}
					size = w.Body.Len()
				}
				usr, sys := m.Report(b)
				b.ReportMetric(usr+sys, "cpu-µs/scrape")
				b.ReportMetric(float64(size), "gzip-bytes")
			})
		}
		e.Close()
	}
}
