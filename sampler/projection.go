package sampler

import (
	"fmt"
	"math"

	"github.com/loadcap/loadcap/capacity"
)

// Projection is what the observed open rate means for one destination's
// port pool.
type Projection struct {
	// OpenRate is the observed rate of new connections per second.
	OpenRate float64
	// HoldS is how long a closed port stays unusable: 60 s of TIME_WAIT,
	// or tcp_tw_reuse_delay when tcp_tw_reuse applies.
	HoldS float64
	// PortsAvailable is the pool of one destination.
	PortsAvailable int
	// PortsInUse is how many of them are held now.
	PortsInUse int
	// ExhaustionRate is the open rate toward one destination at which the
	// pool runs out; +Inf when it never does.
	ExhaustionRate float64
	// Headroom is ExhaustionRate / OpenRate; +Inf when nothing is opened.
	Headroom float64
	// Limit is the capacity model's name for the binding constraint.
	Limit string
	// Text says it in one plain sentence.
	Text string
}

// Project applies the capacity model (capacity.Predict, one new connection
// per open, plain connect(), client closes first) to an observed open rate
// toward one destination. loopback says whether the destination is on
// loopback, where tcp_tw_reuse=2 applies.
func Project(k capacity.Kernel, loopback bool, portsInUse int, openRate float64) Projection {
	pred := capacity.Predict(capacity.Input{
		Kernel:   k,
		Client:   capacity.Client{NewConnsPerWrite: 1},
		Targets:  1,
		Loopback: loopback,
	})
	p := Projection{
		OpenRate:       openRate,
		HoldS:          pred.HoldS,
		PortsAvailable: pred.PortsAvailable,
		PortsInUse:     portsInUse,
		ExhaustionRate: pred.ExhaustionRate,
		Limit:          pred.Limit,
		Headroom:       math.Inf(1),
	}
	if openRate > 0 {
		p.Headroom = p.ExhaustionRate / openRate
	}
	hold := "each closed port is held 60 s in TIME_WAIT"
	switch {
	case pred.Limit == capacity.LimitTWReuse:
		hold = fmt.Sprintf("tcp_tw_reuse=%d lets connect() reuse a TIME_WAIT port after %s", k.TWReuse, k.TWReuseDelay)
	case k.TWReuse == 2 && !loopback && k.Timestamps:
		hold += " (tcp_tw_reuse=2 helps loopback only)"
	case k.TWReuse != 0 && !k.Timestamps:
		hold += " (tcp_tw_reuse needs tcp_timestamps=1)"
	}
	limit := fmt.Sprintf("the %d-port range runs out at %s new connections/s per destination", p.PortsAvailable, capacity.FormatRate(pred.ConnRate))
	if pred.Limit == capacity.LimitTWOverflow {
		limit = fmt.Sprintf("tcp_max_tw_buckets=%d overflows before the %d ports run out (closes then skip TIME_WAIT)", k.MaxTWBuckets, p.PortsAvailable)
	}
	switch {
	case p.PortsAvailable == 0:
		p.Text = "no usable local ports: the range minus reserved ports is empty"
	case openRate <= 0:
		p.Text = fmt.Sprintf("no new connections observed; %s, so %s", hold, limit)
	default:
		need := openRate * pred.HoldS
		p.Text = fmt.Sprintf("at %s new connections/s, %s: a destination needs about %.0f ports in steady state; %s; headroom %s",
			capacity.FormatRate(openRate), hold, need, limit, formatHeadroom(p.Headroom))
	}
	return p
}

func formatHeadroom(h float64) string {
	switch {
	case math.IsInf(h, 1):
		return "unlimited"
	case h < 1:
		return fmt.Sprintf("%.2fx (the range runs out at this rate)", h)
	default:
		return fmt.Sprintf("%.1fx", h)
	}
}
