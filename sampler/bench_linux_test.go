package sampler

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/internal/testns"
)

// startCPU starts measuring the CPU time of a benchmark (testns.CPUMeter).
func startCPU() *cpuMeter { return (*cpuMeter)(testns.StartCPU()) }

type cpuMeter testns.CPUMeter

func (m *cpuMeter) report(b *testing.B) { (*testns.CPUMeter)(m).Report(b) }

// benchTimeWait is the number of TIME_WAIT sockets the big benchmark makes.
const benchTimeWait = 32000

// BenchmarkSnapshot30k compares, at 32,000 TIME_WAIT sockets (plus 500
// ESTABLISHED pairs) in a throw-away namespace, one snapshot over netlink,
// one over /proc parsing and `ss -tan state time-wait | wc -l`, and measures
// the CPU cost of a Run sampling every 250 ms.
//
//	go test -run '^$' -bench Snapshot30k ./sampler
//
// TIME_WAIT lasts 60 s, so all of it must finish well within a minute of
// the setup: keep -benchtime at its default.
func BenchmarkSnapshot30k(b *testing.B) {
	ns := newTestNetNS(b)
	// A wide range, no TIME_WAIT reuse on loopback and room for all the
	// TIME_WAIT sockets in this namespace; four destination ports.
	setSysctls(b, ns, map[string]string{
		"net.ipv4.ip_local_port_range": "1024 65535",
		"net.ipv4.tcp_tw_reuse":        "0",
		"net.ipv4.tcp_max_tw_buckets":  "262144",
	})
	ports := []uint16{8086, 8087, 8088, 8089}
	start := time.Now()
	makeSockets(b, ns, ports, benchTimeWait, 500, 40*time.Second)
	b.Logf("made %d TIME_WAIT and %d ESTABLISHED sockets in %s", benchTimeWait, 1000, time.Since(start).Round(time.Millisecond))
	expires := start.Add(55 * time.Second)

	var watches []Match
	for _, p := range ports {
		watches = append(watches, Match{Name: strconv.Itoa(int(p)), Dst: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)})
	}
	check := func(b *testing.B, n int) {
		if n < benchTimeWait {
			b.Fatalf("saw %d TIME_WAIT sockets, want %d", n, benchTimeWait)
		}
		if time.Now().After(expires) {
			b.Fatalf("TIME_WAIT sockets are about to expire: keep the benchmark under a minute")
		}
	}

	for _, source := range []string{SourceNetlink, "netlink-v2", SourceProc} {
		s, err := Open(Options{NetNS: ns, Source: strings.TrimSuffix(source, "-v2")})
		if err != nil {
			b.Fatal(err)
		}
		if source == "netlink-v2" {
			s.compat = false // one SOCK_DIAG_BY_FAMILY dump per family
		}
		b.Run(source+"/time-wait", func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			cpu := startCPU()
			for b.Loop() {
				n = 0
				if err := s.Walk(StatesOf(TimeWait), func(*Socket) { n++ }); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
			check(b, n)
		})
		b.Run(source+"/nothing", func(b *testing.B) {
			if source == SourceProc {
				b.Skip("/proc has no kernel-side filter")
			}
			for b.Loop() {
				if err := s.Walk(StatesOf(SynSent), func(*Socket) {}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(source+"/snapshot", func(b *testing.B) {
			b.ReportAllocs()
			var snap *Snapshot
			cpu := startCPU()
			for b.Loop() {
				snap, err = s.Snapshot(Query{Matches: watches})
				if err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
			check(b, snap.Matched[TimeWait])
		})
		s.Close()
	}

	b.Run("ss/time-wait", func(b *testing.B) {
		b.ReportAllocs()
		fd, err := openNetNS(ns)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		n := 0
		cpu := startCPU()
		// The child of a thread inside the namespace starts there too.
		err = inNetNS(fd, func() error {
			for b.Loop() {
				out, err := exec.Command("sh", "-c", "ss -tan state time-wait | wc -l").Output()
				if err != nil {
					return fmt.Errorf("ss: %w", err)
				}
				if n, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
					return fmt.Errorf("ss: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		cpu.report(b)
		check(b, n-1) // wc counts the header line
	})

	// The cost of a Run sampling every 250 ms for 5 s (2 watches, all
	// states), as a share of one core: the whole process's CPU time over
	// the span, and the samples' own. "uncapped" samples every 250 ms
	// whatever it costs; the default Run stretches its interval to stay
	// within DefaultMaxCPU.
	for _, c := range []struct {
		name   string
		maxCPU float64
	}{{"run-250ms-uncapped", -1}, {"run-250ms", 0}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r, err := StartRun(context.Background(), RunConfig{Interval: 250 * time.Millisecond, NetNS: ns, MaxCPU: c.maxCPU, Watches: []Watch{
					{Name: "a", Dst: netip.MustParseAddrPort("127.0.0.1:8086")},
					{Name: "b", Dst: netip.MustParseAddrPort("127.0.0.1:8087")},
				}})
				if err != nil {
					b.Fatal(err)
				}
				var before, after unix.Rusage
				unix.Getrusage(unix.RUSAGE_SELF, &before)
				t0 := time.Now()
				time.Sleep(5 * time.Second)
				unix.Getrusage(unix.RUSAGE_SELF, &after)
				wall := time.Since(t0)
				res := r.Stop()
				cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()) + time.Duration(after.Stime.Nano()-before.Stime.Nano())
				n := len(res.Series.Points)
				span := res.Series.Points[n-1].T - res.Series.Points[0].T
				b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu-process")
				b.ReportMetric(float64(res.CPU.Microseconds())/float64(n), "cpu-µs/sample")
				b.ReportMetric(float64(span.Milliseconds())/float64(n-1), "ms-between-samples")
				check(b, res.PeakTimeWait["a"]+res.PeakTimeWait["b"]+benchTimeWait/2)
				if res.Errors > 0 {
					b.Fatalf("%d sample errors: %v", res.Errors, res.LastError)
				}
			}
		})
	}
}
