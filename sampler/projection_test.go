package sampler

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/capacity"
)

func TestProject(t *testing.T) {
	k := capacity.DefaultKernel() // 32768-60999, tw_reuse 2, timestamps on
	ports := float64(k.PortsInRange())

	p := Project(k, false, 100, 235.2)
	if p.HoldS != 60 || math.Abs(p.ExhaustionRate-ports/60) > 1e-9 || math.Abs(p.Headroom-ports/60/235.2) > 1e-9 {
		t.Errorf("remote: %+v", p)
	}
	if !strings.Contains(p.Text, "helps loopback only") || !strings.Contains(p.Text, "headroom 2.0x") {
		t.Errorf("remote text: %s", p.Text)
	}

	p = Project(k, true, 100, 1000)
	if p.HoldS != 1 || p.Limit != capacity.LimitTWReuse || math.Abs(p.ExhaustionRate-ports) > 1e-9 {
		t.Errorf("loopback: %+v", p)
	}
	if !strings.Contains(p.Text, "reuse a TIME_WAIT port after 1s") {
		t.Errorf("loopback text: %s", p.Text)
	}

	k.Timestamps = false
	p = Project(k, true, 0, 0)
	if p.HoldS != 60 || !math.IsInf(p.Headroom, 1) || !strings.Contains(p.Text, "needs tcp_timestamps=1") || !strings.Contains(p.Text, "no new connections") {
		t.Errorf("no timestamps: %+v", p)
	}

	k = capacity.DefaultKernel()
	k.TWReuse = 0
	p = Project(k, false, 0, 1000)
	if p.Headroom >= 1 || !strings.Contains(p.Text, "runs out at this rate") {
		t.Errorf("over the limit: %+v", p)
	}

	k.MaxTWBuckets = 1000
	p = Project(k, false, 0, 10)
	if p.Limit != capacity.LimitTWOverflow || !math.IsInf(p.ExhaustionRate, 1) || !strings.Contains(p.Text, "tcp_max_tw_buckets=1000") {
		t.Errorf("overflow: %+v", p)
	}
}

func TestAgeBuckets(t *testing.T) {
	var h TWHistogram
	h.add(59990 * time.Millisecond) // just closed: age 0-5 s
	h.add(70 * time.Second)         // timer beyond 60 s: counted as age 0-5 s
	h.add(2 * time.Second)          // about to expire: age 55-60 s
	h.add(-time.Second)
	a := AgeBuckets(h)
	if len(a) != 12 || a[0] != (AgeBucket{0, 5, 2}) || a[11] != (AgeBucket{55, 60, 2}) {
		t.Errorf("age buckets %v", a)
	}
}

func TestBuildReport(t *testing.T) {
	tl := newTally(Query{Matches: []Match{{Name: "watch", Dst: netip.AddrPortFrom(netip.Addr{}, 8087)}}}, PortRange{32768, 60999}, SourceProc)
	for _, s := range fixtureSockets(t) {
		tl.add(&s)
	}
	k := capacity.DefaultKernel()
	rep := buildReport(tl.finish(), Counters{TimeWait: 5}, k, 10, netip.Addr{})
	if rep.PortsInUse != 2 || rep.PortsInUseAll != 4 || rep.PortsAvailable != 28232 {
		t.Errorf("ports %d (all %d) of %d", rep.PortsInUse, rep.PortsInUseAll, rep.PortsAvailable)
	}
	if rep.TimeWait.Count != 2 || rep.TimeWait.Sockstat != 5 || rep.TimeWait.Age[0].N != 2 {
		t.Errorf("time wait %+v", rep.TimeWait)
	}
	// All destinations are loopback: tcp_tw_reuse=2 applies, 1 s hold.
	if rep.HoldS != 1 || rep.ProjectedExhaustionRate == nil || *rep.ProjectedExhaustionRate != 28232 || rep.Headroom == nil || *rep.Headroom != 2823.2 {
		t.Errorf("projection: hold %v rate %v headroom %v", rep.HoldS, rep.ProjectedExhaustionRate, rep.Headroom)
	}
	if len(rep.ByDestination) != 2 || rep.ByDestination["[::1]:8087"]["TIME_WAIT"] != 2 {
		t.Errorf("by destination %v", rep.ByDestination)
	}
	txt := rep.Text()
	for _, want := range []string{"ESTABLISHED 2  TIME_WAIT 2", "ports in use 2 of 28232 (4 across destinations)", "TIME_WAIT 2 (namespace 5)  age 0-5s:2", "[::1]:8087  TIME_WAIT 2"} {
		if !strings.Contains(txt, want) {
			t.Errorf("text lacks %q:\n%s", want, txt)
		}
	}
	// A non-loopback address given explicitly: 60 s hold.
	rep = buildReport(tl.finish(), Counters{}, k, 0, netip.MustParseAddr("198.18.0.1"))
	if rep.HoldS != 60 || rep.Headroom != nil {
		t.Errorf("remote: hold %v headroom %v", rep.HoldS, rep.Headroom)
	}
}
