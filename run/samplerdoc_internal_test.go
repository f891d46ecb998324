package run

import (
	"testing"
	"time"

	"github.com/loadcap/loadcap/sampler"
)

// The document's sampler section is the sampler's own series with maps
// keyed by state and target name and times in milliseconds.
func TestSamplerDoc(t *testing.T) {
	var a, b, all sampler.StateCounts
	a[sampler.TimeWait], a[sampler.Established] = 10, 3
	b[sampler.TimeWait] = 5
	all[sampler.TimeWait], all[sampler.Established] = 15, 3
	var timers sampler.TimerCounts
	s := sampler.Series{
		Interval: 250 * time.Millisecond, Source: sampler.SourceNetlink, Names: []string{"a", "b"}, PortsAvailable: 200,
		Points: []sampler.Point{
			{T: 1500 * time.Microsecond, States: all, ByTarget: []sampler.StateCounts{a, b}, PortsInUse: 18, SockstatTW: 15, NewConnsPerS: 2.5, Timers: timers},
		},
	}
	d := samplerDoc(s)
	if d.IntervalMS != 250 || d.Source != sampler.SourceNetlink || len(d.Series) != 1 {
		t.Fatalf("%+v", d)
	}
	p := d.Series[0]
	if p.TMS != 1 || p.States["TIME_WAIT"] != 15 || p.States["ESTABLISHED"] != 3 || p.PortsInUse != 18 ||
		p.PortsAvailable != 200 || p.SockstatTW != 15 || p.NewConnsPerS != 2.5 || p.Timers != nil {
		t.Errorf("sample %+v", p)
	}
	if p.ByTarget["a"]["TIME_WAIT"] != 10 || p.ByTarget["a"]["ESTABLISHED"] != 3 || p.ByTarget["b"]["TIME_WAIT"] != 5 || len(p.ByTarget) != 2 {
		t.Errorf("by target %v", p.ByTarget)
	}
}
