package exporter

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/sampler"
)

// Views: whose sockets the destination label names.
const (
	// ViewClient keys sockets by remote ip:port: the destinations this
	// host connects to, each with its own connect() port pool.
	ViewClient = "client"
	// ViewServer keys sockets by local ip:port (--local-port): a server's
	// listening port and the connections it accepted.
	ViewServer = "server"
)

// Other is the destination label of the series that sums the destinations
// beyond the top N.
const Other = "other"

// RateWindow is the window of the per-destination connection rate: the
// TIME_WAIT sockets younger than this (two 5 s buckets of the sampler's
// histogram) divided by it.
const RateWindow = 10 * time.Second

// rateBuckets is how many buckets of a sampler.TWHistogram, counted from the
// young end (most time left), hold the sockets younger than RateWindow.
const rateBuckets = int(RateWindow/sampler.TWBucketWidth) + 1 // + the ">= 60 s left" bucket

// Quantiles are the TIME_WAIT age quantiles exported per destination.
var Quantiles = []float64{0.5, 0.9, 0.99}

// Destination is what one sample says about one destination (or about
// Other, the rest summed).
type Destination struct {
	// Name is the ip:port, or Other.
	Name string
	// States counts its sockets per TCP state.
	States sampler.StateCounts
	// PortsInUse is how many local ports of the range are held toward it
	// (its connect() pool, listeners included); for Other the fullest of
	// the pools summed into it.
	PortsInUse int
	// PortsAvailable is the rest of that pool: the range minus PortsInUse.
	PortsAvailable int
	// TimeWait is the remaining lifetime of its TIME_WAIT sockets.
	TimeWait sampler.TWHistogram
	// AgeQuantiles are the TIME_WAIT ages at Quantiles, in seconds; NaN
	// without TIME_WAIT sockets.
	AgeQuantiles []float64
	// NewConnsPerS is the rate at which connections toward it entered
	// TIME_WAIT over the last RateWindow: the rate at which the client's
	// closes take ports out of its pool. For Other, the sum.
	NewConnsPerS float64
	// HoldS, ExhaustionRate and Headroom are sampler.Project's; for Other
	// the longest hold, the lowest exhaustion rate and the lowest headroom
	// of the destinations summed into it.
	HoldS          float64
	ExhaustionRate float64
	Headroom       float64
}

// State is one sample as the exporter serves it until the next one.
type State struct {
	// Time is when the snapshot was taken.
	Time time.Time
	// Source is sampler.SourceNetlink or sampler.SourceProc.
	Source string
	// View is ViewClient or ViewServer.
	View string
	// Destinations are the top N by ports in use, then Other when more
	// destinations were seen.
	Destinations []Destination
	// Seen is the number of destinations before the top-N cut.
	Seen int
	// PortRange is ip_local_port_range; PortsInRange the pool one
	// destination has (the range's usable ports minus the reserved ones).
	PortRange    sampler.PortRange
	PortsInRange int
	// ReservedPorts is how many ports of the range are reserved.
	ReservedPorts int
	// BindPortsInUse is how many distinct local ports of the range are held
	// by the watched sockets and by listeners together: the one pool that
	// bind() (a listener, bind-before-connect) draws from.
	BindPortsInUse int
	// ListenPorts is how many listening ports lie inside the range.
	ListenPorts int
	// Counters are the namespace's kernel TCP counters.
	Counters sampler.Counters
	// Kernel is the projection's input, read from the namespace's sysctls.
	Kernel capacity.Kernel
}

// build turns a snapshot, the counters and the namespace's kernel settings
// into the State a scrape serves, keeping the top destinations by ports in
// use (ties by socket count, then name) and summing the rest into Other.
func build(snap *sampler.Snapshot, c sampler.Counters, k capacity.Kernel, view string, top int) *State {
	st := &State{
		Time:           snap.Time,
		Source:         snap.Source,
		View:           view,
		Seen:           len(snap.ByDestination),
		PortRange:      snap.PortRange,
		PortsInRange:   k.PortsInRange(),
		ReservedPorts:  k.ReservedPorts,
		BindPortsInUse: snap.PortsInUse,
		ListenPorts:    snap.BoundPorts,
		Counters:       c,
		Kernel:         k,
	}
	// The pool and its hold time depend on the kernel and on whether the
	// destination is on loopback only: project once for each.
	var proj [2]sampler.Projection
	for i, loopback := range []bool{false, true} {
		proj[i] = sampler.Project(k, loopback, 0, 0)
	}
	all := make([]Destination, 0, len(snap.ByDestination))
	for key, counts := range snap.ByDestination {
		d := Destination{Name: key.String(), States: *counts, PortsInUse: snap.PortsInUseByDestination[key]}
		if h := snap.TimeWaitByDestination[key]; h != nil {
			d.TimeWait = *h
		}
		lb := 0
		if key.Addr().IsLoopback() {
			lb = 1
		}
		st.project(&d, &proj[lb])
		all = append(all, d)
	}
	slices.SortFunc(all, func(a, b Destination) int {
		if c := cmp.Compare(b.PortsInUse, a.PortsInUse); c != 0 {
			return c
		}
		if c := cmp.Compare(b.States.Total(), a.States.Total()); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	if top < 0 {
		top = 0
	}
	if len(all) <= top {
		st.Destinations = all
		return st
	}
	st.Destinations = append(all[:top:top], sumOther(all[top:]))
	return st
}

// project fills in d's pool, rate and projection from its counts and the
// projection p of its kind of destination.
func (st *State) project(d *Destination, p *sampler.Projection) {
	d.AgeQuantiles = ageQuantiles(&d.TimeWait, Quantiles)
	young := 0
	for i := sampler.TWBuckets - rateBuckets; i < sampler.TWBuckets; i++ {
		young += d.TimeWait[i]
	}
	d.NewConnsPerS = float64(young) / RateWindow.Seconds()
	d.PortsAvailable = max(st.PortsInRange-d.PortsInUse, 0)
	d.HoldS, d.ExhaustionRate, d.Headroom = p.HoldS, p.ExhaustionRate, math.Inf(1)
	if d.NewConnsPerS > 0 {
		d.Headroom = p.ExhaustionRate / d.NewConnsPerS // as sampler.Project computes it
	}
}

// sumOther sums the destinations beyond the top N: sockets, TIME_WAIT ages
// and connection rates add up; the pools are separate (one per destination
// for connect()), so Other reports the fullest pool and the worst
// projection among them.
func sumOther(rest []Destination) Destination {
	o := Destination{Name: Other, ExhaustionRate: math.Inf(1), Headroom: math.Inf(1)}
	for i := range rest {
		d := &rest[i]
		o.States.Add(&d.States)
		for j := range o.TimeWait {
			o.TimeWait[j] += d.TimeWait[j]
		}
		o.NewConnsPerS += d.NewConnsPerS
		if i == 0 || d.PortsInUse > o.PortsInUse {
			o.PortsInUse, o.PortsAvailable = d.PortsInUse, d.PortsAvailable
		}
		o.HoldS = max(o.HoldS, d.HoldS)
		o.ExhaustionRate = min(o.ExhaustionRate, d.ExhaustionRate)
		o.Headroom = min(o.Headroom, d.Headroom)
	}
	o.AgeQuantiles = ageQuantiles(&o.TimeWait, Quantiles)
	return o
}

// ageQuantiles returns the TIME_WAIT ages (seconds since the socket entered
// TIME_WAIT: 60 s minus the time left) at each quantile q, interpolated
// linearly inside the 5 s buckets, as histogram_quantile does. NaN when h is
// empty.
func ageQuantiles(h *sampler.TWHistogram, qs []float64) []float64 {
	out := make([]float64, len(qs))
	ages := sampler.AgeBuckets(*h) // young to old, 0-5 s first
	total := 0
	for _, a := range ages {
		total += a.N
	}
	for i, q := range qs {
		if total == 0 {
			out[i] = math.NaN()
			continue
		}
		rank := q * float64(total)
		cum := 0
		out[i] = float64(ages[len(ages)-1].ToS)
		for _, a := range ages {
			if a.N > 0 && float64(cum+a.N) >= rank {
				out[i] = float64(a.FromS) + float64(a.ToS-a.FromS)*(rank-float64(cum))/float64(a.N)
				break
			}
			cum += a.N
		}
	}
	return out
}

// quantileLabel formats q for the q label: "0.5", "0.99".
func quantileLabel(q float64) string { return strconv.FormatFloat(q, 'f', -1, 64) }
