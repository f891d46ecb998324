package exporter

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/sampler"
)

func TestAgeQuantiles(t *testing.T) {
	var young, split, old sampler.TWHistogram
	young[11] = 10               // 55-60 s left: age 0-5 s
	split[11], split[1] = 10, 10 // ages 0-5 s and 50-55 s
	old[0] = 4                   // 0-5 s left: age 55-60 s
	for _, c := range []struct {
		name string
		h    sampler.TWHistogram
		want []float64 // at 0.5, 0.9, 0.99
	}{
		{"empty", sampler.TWHistogram{}, []float64{math.NaN(), math.NaN(), math.NaN()}},
		{"young", young, []float64{2.5, 4.5, 4.95}},
		{"split", split, []float64{5, 54, 54.9}},
		{"old", old, []float64{57.5, 59.5, 59.95}},
	} {
		got := ageQuantiles(&c.h, Quantiles)
		for i := range got {
			if math.IsNaN(c.want[i]) != math.IsNaN(got[i]) || (!math.IsNaN(got[i]) && math.Abs(got[i]-c.want[i]) > 1e-9) {
				t.Errorf("%s: quantile %v = %v, want %v", c.name, Quantiles[i], got[i], c.want[i])
			}
		}
	}
}

// fixture is a snapshot with four destinations: A and B hold the most
// ports; C (loopback) and D go to other with top 2.
func fixture() *sampler.Snapshot {
	a, b := netip.MustParseAddrPort("10.0.0.1:8086"), netip.MustParseAddrPort("10.0.0.2:8086")
	c, d := netip.MustParseAddrPort("127.0.0.1:9000"), netip.MustParseAddrPort("10.0.0.3:8086")
	var ha, hb, hd sampler.TWHistogram
	ha[11], ha[10], ha[5] = 12, 8, 10 // 20 younger than 10 s
	hb[0] = 5
	hd[12] = 1
	return &sampler.Snapshot{
		Time:      time.Unix(1_700_000_000, 0),
		Source:    sampler.SourceNetlink,
		PortRange: sampler.PortRange{Low: 32768, High: 60999},
		ByDestination: map[netip.AddrPort]*sampler.StateCounts{
			a: {sampler.TimeWait: 30, sampler.Established: 2},
			b: {sampler.TimeWait: 5},
			c: {sampler.Established: 3},
			d: {sampler.TimeWait: 1},
		},
		PortsInUseByDestination: map[netip.AddrPort]int{a: 32, b: 5, c: 3, d: 1},
		TimeWaitByDestination:   map[netip.AddrPort]*sampler.TWHistogram{a: &ha, b: &hb, d: &hd},
		PortsInUse:              40,
		BoundPorts:              1,
	}
}

func TestBuildTopAndOther(t *testing.T) {
	k := capacity.DefaultKernel() // tcp_tw_reuse=2: loopback reuses after 1 s
	st := build(fixture(), sampler.Counters{ActiveOpens: 7}, k, ViewClient, 2)
	if st.Seen != 4 || len(st.Destinations) != 3 {
		t.Fatalf("seen %d, %d destinations; want 4 and 3 (top 2 + other)", st.Seen, len(st.Destinations))
	}
	a, b, o := st.Destinations[0], st.Destinations[1], st.Destinations[2]
	if a.Name != "10.0.0.1:8086" || b.Name != "10.0.0.2:8086" || o.Name != Other {
		t.Fatalf("order %s %s %s", a.Name, b.Name, o.Name)
	}
	perDest := 28232.0 / 60 // 60 s TIME_WAIT, not loopback
	if a.PortsInUse != 32 || a.PortsAvailable != 28232-32 || a.NewConnsPerS != 2 ||
		math.Abs(a.ExhaustionRate-perDest) > 1e-9 || math.Abs(a.Headroom-perDest/2) > 1e-9 || a.HoldS != 60 {
		t.Errorf("A: %+v", a)
	}
	if b.NewConnsPerS != 0 || !math.IsInf(b.Headroom, 1) || b.AgeQuantiles[0] != 57.5 {
		t.Errorf("B: rate %v headroom %v ages %v; want 0, +Inf, median 57.5 s", b.NewConnsPerS, b.Headroom, b.AgeQuantiles)
	}
	// Other: C (loopback, 3 ESTABLISHED, tw_reuse applies: 1 s hold) and D
	// (one TIME_WAIT socket with >= 60 s left: 0.1/s).
	if o.States[sampler.Established] != 3 || o.States[sampler.TimeWait] != 1 || o.PortsInUse != 3 || o.PortsAvailable != 28232-3 {
		t.Errorf("other: states %v ports %d available %d", o.States.Map(), o.PortsInUse, o.PortsAvailable)
	}
	if math.Abs(o.NewConnsPerS-0.1) > 1e-12 || math.Abs(o.ExhaustionRate-perDest) > 1e-9 || math.Abs(o.Headroom-perDest/0.1) > 1e-6 || o.HoldS != 60 {
		t.Errorf("other: rate %v exhaustion %v headroom %v hold %v", o.NewConnsPerS, o.ExhaustionRate, o.Headroom, o.HoldS)
	}
	if o.TimeWait.Count() != 1 || o.AgeQuantiles[0] != 2.5 {
		t.Errorf("other: TIME_WAIT %v, ages %v", o.TimeWait, o.AgeQuantiles)
	}

	all := build(fixture(), sampler.Counters{}, k, ViewClient, 20)
	if len(all.Destinations) != 4 {
		t.Fatalf("top 20 of 4: %d destinations", len(all.Destinations))
	}
	for _, d := range all.Destinations {
		if d.Name == "127.0.0.1:9000" && (d.HoldS != 1 || d.ExhaustionRate != 28232) {
			t.Errorf("loopback destination under tcp_tw_reuse=2: hold %v exhaustion %v, want 1 s and 28232/s", d.HoldS, d.ExhaustionRate)
		}
	}
	if none := build(fixture(), sampler.Counters{}, k, ViewClient, -1); len(none.Destinations) != 1 || none.Destinations[0].States.Total() != 41 {
		t.Errorf("top none: %+v", none.Destinations)
	}
}

// stateCollector serves one State.
type stateCollector struct{ st *State }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch) }
func (c stateCollector) Collect(ch chan<- prometheus.Metric) { collectState(ch, c.st) }

func TestCollectLintAndCardinality(t *testing.T) {
	k := capacity.DefaultKernel()
	for _, c := range []struct {
		view       string
		top, dests int
		headrooms  int
	}{
		{ViewClient, 2, 3, 3},
		{ViewClient, 20, 4, 4},
		{ViewServer, 20, 4, 0}, // no projection in a server's view
	} {
		col := stateCollector{build(fixture(), sampler.Counters{}, k, c.view, c.top)}
		problems, err := testutil.CollectAndLint(col)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
		if n := testutil.CollectAndCount(col, "loadcap_sockets"); n != c.dests*len(exportedStates) {
			t.Errorf("%s top %d: %d loadcap_sockets series, want %d", c.view, c.top, n, c.dests*len(exportedStates))
		}
		if n := testutil.CollectAndCount(col, "loadcap_headroom_ratio"); n != c.headrooms {
			t.Errorf("%s top %d: %d headroom series, want %d", c.view, c.top, n, c.headrooms)
		}
	}
	col := stateCollector{build(fixture(), sampler.Counters{TCPTimeWaitOverflow: 3, ActiveOpens: 9}, k, ViewClient, 20)}
	want := `
# HELP loadcap_tcpext_time_wait_overflow_total TcpExt TCPTimeWaitOverflow: closes that skipped TIME_WAIT because tcp_max_tw_buckets was reached.
# TYPE loadcap_tcpext_time_wait_overflow_total counter
loadcap_tcpext_time_wait_overflow_total 3
# HELP loadcap_port_range_ports Ports connect() and bind() can pick from ip_local_port_range, minus reserved ports: the pool of each destination for connect(), and the one pool bind() shares.
# TYPE loadcap_port_range_ports gauge
loadcap_port_range_ports 28232
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want), "loadcap_tcpext_time_wait_overflow_total", "loadcap_port_range_ports"); err != nil {
		t.Error(err)
	}
}
