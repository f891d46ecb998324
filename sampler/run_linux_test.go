package sampler

import (
	"context"
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestRunInNetNS(t *testing.T) {
	for _, source := range []string{SourceNetlink, SourceProc} {
		t.Run(source, func(t *testing.T) {
			ns := newTestNetNS(t)
			setSysctls(t, ns, map[string]string{"net.ipv4.tcp_tw_reuse": "0"})
			makeSockets(t, ns, []uint16{8086}, 10, 3, 10*time.Second)

			r := startWatchRun(t, ns, source, 20*time.Millisecond)
			if tw, ok := r.Latest(); !ok || tw != 10 {
				t.Fatalf("latest after start: %d, %v; want 10", tw, ok)
			}
			makeSockets(t, ns, []uint16{8087}, 5, 2, 10*time.Second)
			// Wait for a sample that sees the new sockets, at most 2 s.
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if tw, _ := r.Latest(); tw == 15 {
					break
				}
				if time.Now().After(deadline) {
					tw, _ := r.Latest()
					t.Fatalf("latest TIME_WAIT %d after 2 s, want 15", tw)
				}
			}
			res := r.Stop()
			if res.Source != source || res.Series.Source != source || res.Series.Interval != 20*time.Millisecond {
				t.Errorf("source %q/%q interval %s", res.Source, res.Series.Source, res.Series.Interval)
			}
			if len(res.Series.Names) != 2 || res.Series.Names[0] != "a" || res.Series.Names[1] != "b" {
				t.Fatalf("names %v, want the watches a, b", res.Series.Names)
			}
			if res.Errors != 0 {
				t.Errorf("%d sample errors, last %v", res.Errors, res.LastError)
			}
			if res.PeakTimeWait["a"] != 10 || res.PeakTimeWait["b"] != 5 {
				t.Errorf("peak time-wait %v, want a 10 b 5", res.PeakTimeWait)
			}
			if res.ActiveOpens != 7 {
				t.Errorf("active opens over the run %d, want 7", res.ActiveOpens)
			}
			series := res.Series.Points
			if len(series) < 2 {
				t.Fatalf("%d samples", len(series))
			}
			first, last := series[0], series[len(series)-1]
			if first.T > 5*time.Millisecond || last.T < first.T {
				t.Errorf("t first %s last %s", first.T, last.T)
			}
			wantStates := map[string]int{"TIME_WAIT": 15, "ESTABLISHED": 5}
			if !equalCounts(last.States.Map(), wantStates) {
				t.Errorf("last states %v, want %v", last.States, wantStates)
			}
			if !equalCounts(last.ByTarget[0].Map(), map[string]int{"TIME_WAIT": 10, "ESTABLISHED": 3}) ||
				!equalCounts(last.ByTarget[1].Map(), map[string]int{"TIME_WAIT": 5, "ESTABLISHED": 2}) {
				t.Errorf("last by target %v", last.ByTarget)
			}
			if last.Blocked != nil {
				t.Errorf("blocked %v with tcp_tw_reuse=0, want none counted", last.Blocked)
			}
			if last.PortsInUse != 20 || res.Series.PortsAvailable != 28232 || last.SockstatTW != 15 {
				t.Errorf("last ports %d of %d, sockstat tw %d", last.PortsInUse, res.Series.PortsAvailable, last.SockstatTW)
			}
			if c := last.Counters.Map(); c["Tcp.ActiveOpens"] != 20 || c["TcpExt.TWKilled"] != 0 {
				t.Errorf("last counters %v", last.Counters)
			}
			var opened float64
			for i := 1; i < len(series); i++ {
				opened += series[i].NewConnsPerS * (series[i].T - series[i-1].T).Seconds()
			}
			if math.Abs(opened-7) > 0.5 {
				t.Errorf("new_conns_per_s integrates to %.2f, want 7", opened)
			}
			if again := r.Stop(); again.ActiveOpens != res.ActiveOpens {
				t.Errorf("second Stop differs")
			}
		})
	}
}

// TestRunBlocked: with tcp_tw_reuse on, each sample counts the sockets whose
// port connect() cannot take toward each watch: the established ones, and
// the TIME_WAIT ones until they are tcp_tw_reuse_delay old.
func TestRunBlocked(t *testing.T) {
	for _, source := range []string{SourceNetlink, SourceProc} {
		t.Run(source, func(t *testing.T) {
			ns := newTestNetNS(t)
			setSysctls(t, ns, map[string]string{"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.tcp_tw_reuse_delay": "1000"})
			made := time.Now()
			makeSockets(t, ns, []uint16{8086}, 10, 3, 10*time.Second)
			r := startWatchRun(t, ns, source, 50*time.Millisecond)
			since := time.Since(made)
			time.Sleep(1300 * time.Millisecond)
			res := r.Stop()
			pts := res.Series.Points
			first, last := pts[0], pts[len(pts)-1]
			if first.Blocked == nil || last.Blocked == nil {
				t.Fatalf("blocked not counted with tcp_tw_reuse=1")
			}
			if since < 900*time.Millisecond {
				if first.Blocked[0] != 13 {
					t.Errorf("first sample %s after the sockets were made: blocked %d toward a, want 13 (3 established, 10 TIME_WAIT under 1 s)", since, first.Blocked[0])
				}
			} else {
				t.Logf("the sockets took %s to make: the first sample is not checked", since)
			}
			if last.Blocked[0] != 3 || last.Blocked[1] != 0 || last.ByTarget[0][TimeWait] != 10 {
				t.Errorf("after 1.3 s: blocked %v, TIME_WAIT toward a %d; want [3 0] and 10 (TIME_WAIT stays, but connect() may take it)", last.Blocked, last.ByTarget[0][TimeWait])
			}
		})
	}
}

// startWatchRun starts a sampler run in ns watching 127.0.0.1:8086 as "a"
// and 127.0.0.1:8087 as "b", and stops it when the test ends.
func startWatchRun(t *testing.T, ns, source string, interval time.Duration) *Run {
	t.Helper()
	r, err := StartRun(context.Background(), RunConfig{
		Interval: interval, NetNS: ns, Source: source,
		Watches: []Watch{
			{Name: "a", Dst: netip.MustParseAddrPort("127.0.0.1:8086")},
			{Name: "b", Dst: netip.MustParseAddrPort("127.0.0.1:8087")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestWatcherJSON checks what `loadcap sample --port 8086 --count 1 --json
// --netns NS` prints: the command encodes one Watcher.Next report.
func TestWatcherJSON(t *testing.T) {
	ns := newTestNetNS(t)
	setSysctls(t, ns, map[string]string{"net.ipv4.tcp_tw_reuse": "0"})
	makeSockets(t, ns, []uint16{8086, 8087}, 31, 12, 10*time.Second)
	wantDst := ssStates(t, ns, "dport", "=", ":8086")
	if wantDst[TimeWait] != 16 || wantDst[Established] != 6 {
		t.Fatalf("ss dport 8086: %v", wantDst.Map())
	}
	for _, source := range []string{SourceNetlink, SourceProc} {
		t.Run(source, func(t *testing.T) {
			w, err := NewWatcher(WatchConfig{Port: 8086, NetNS: ns, Source: source})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			rep, err := w.Next()
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				T                       time.Time                 `json:"t"`
				States                  map[string]int            `json:"states"`
				ByDestination           map[string]map[string]int `json:"by_destination"`
				PortsInUse              *int                      `json:"ports_in_use"`
				PortsAvailable          *int                      `json:"ports_available"`
				NewConnsPerS            *float64                  `json:"new_conns_per_s"`
				TimeWait                map[string]any            `json:"time_wait"`
				ProjectedExhaustionRate *float64                  `json:"projected_exhaustion_rate"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !equalCounts(got.States, wantDst.Map()) {
				t.Errorf("states %v, ss says %v", got.States, wantDst.Map())
			}
			if len(got.ByDestination) != 1 || !equalCounts(got.ByDestination["127.0.0.1:8086"], wantDst.Map()) {
				t.Errorf("by_destination %v", got.ByDestination)
			}
			if got.PortsInUse == nil || *got.PortsInUse != 22 || got.PortsAvailable == nil || *got.PortsAvailable != 28232 {
				t.Errorf("ports %v of %v, want 22 of 28232", got.PortsInUse, got.PortsAvailable)
			}
			if got.NewConnsPerS == nil || *got.NewConnsPerS != 0 {
				t.Errorf("new_conns_per_s %v, want 0 (nothing opened since the watcher started)", got.NewConnsPerS)
			}
			if got.TimeWait["count"] != float64(16) || got.TimeWait["sockstat_tw"] != float64(31) {
				t.Errorf("time_wait %v", got.TimeWait)
			}
			// tcp_tw_reuse=0: 28232 ports / 60 s.
			if got.ProjectedExhaustionRate == nil || math.Abs(*got.ProjectedExhaustionRate-28232.0/60) > 1e-9 {
				t.Errorf("projected_exhaustion_rate %v, want %v", got.ProjectedExhaustionRate, 28232.0/60)
			}
			if time.Since(got.T) > time.Minute {
				t.Errorf("t %v", got.T)
			}
		})
	}
}
