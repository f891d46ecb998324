package fleet

import (
	"fmt"
	"math"
	"sort"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/loadcap/loadcap/results"
)

// mergeSysctl keeps the sysctls every host had with the same value; the
// others are noted (each host's full set is in fleet.hosts[].sysctl).
func mergeSysctl(doc *results.Document, hosts []host) {
	keys := map[string]bool{}
	for _, h := range hosts {
		for k := range h.in.Doc.Sysctl {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	doc.Sysctl = map[string]string{}
	for _, k := range sorted {
		v, ok := hosts[0].in.Doc.Sysctl[k]
		same := ok
		for _, h := range hosts[1:] {
			if w, ok := h.in.Doc.Sysctl[k]; !ok || w != v {
				same = false
			}
		}
		if same {
			doc.Sysctl[k] = v
			continue
		}
		var per []string
		for _, h := range hosts {
			w, ok := h.in.Doc.Sysctl[k]
			if !ok {
				w = "(absent)"
			}
			per = append(per, fmt.Sprintf("%s=%q", h.label, w))
		}
		doc.Notes = append(doc.Notes, fmt.Sprintf("sysctl %s differs between hosts: %s", k, strings.Join(per, " ")))
	}
}

func fleetHost(h host) results.FleetHost {
	d := h.in.Doc
	fh := results.FleetHost{
		Host: h.label, Shard: d.Shard, ID: d.ID, File: h.in.Path,
		StartedAt: d.StartedAt, FinishedAt: d.FinishedAt, Kernel: d.Kernel, Interrupted: d.Interrupted,
		AchievedRate: d.AchievedRate, Capacity: d.Capacity, Sysctl: d.Sysctl,
	}
	var lat *hdrhistogram.Histogram
	histOK := true
	for _, t := range d.Targets {
		fh.WritesOK += t.WritesOK
		fh.WritesFailed += t.WritesFailed
		addCounts(&fh.Errors, t.Errors)
		fh.PeakTimeWait = max(fh.PeakTimeWait, t.PeakTimeWait)
		th := results.TargetHistogram(t, false)
		switch {
		case th == nil:
			histOK = false
		case lat == nil:
			lat = th
		default:
			lat.Merge(th)
		}
	}
	if histOK {
		fh.LatencyMS = results.LatencyOf(lat)
	}
	return fh
}

// mergeCapacity derives the fleet's capacity from the hosts'. Port budgets
// are per host and the shards split the rate evenly, so the fleet runs out
// when its weakest host does: the fleet's exhaustion rate is the number of
// hosts times the lowest per-host rate.
func mergeCapacity(doc *results.Document, hosts []host) {
	fl := doc.Fleet
	weakest := -1
	for i, h := range hosts {
		p := h.in.Doc.Capacity.PredictedExhaustionRate
		if p == nil {
			continue
		}
		if weakest < 0 || *p < *hosts[weakest].in.Doc.Capacity.PredictedExhaustionRate {
			weakest = i
		}
	}
	ref := 0
	if weakest >= 0 {
		ref = weakest
	}
	rc := hosts[ref].in.Doc.Capacity
	n := float64(len(hosts))
	c := results.Capacity{
		PortsAvailable: rc.PortsAvailable, PortRange: rc.PortRange, TimeWaitHoldS: rc.TimeWaitHoldS, Limit: rc.Limit,
	}
	var conns, writes int64
	for _, t := range doc.Targets {
		conns += t.NewConnections
		writes += t.WritesOK + t.WritesFailed
	}
	if writes > 0 {
		c.NewConnsPerWrite = math.Round(float64(conns)/float64(writes)*10000) / 10000
	}
	label := hosts[ref].label
	if weakest >= 0 {
		per := *rc.PredictedExhaustionRate
		fl.ExhaustionRatePerHost = &per
		fl.WeakestHost = label
		total := round2(per * n)
		c.PredictedExhaustionRate = &total
		if doc.AchievedRate > 0 {
			h := round2(total / doc.AchievedRate)
			c.Headroom = &h
		}
		c.Explanation = fmt.Sprintf("fleet of %d hosts: %d x %.2f writes/s per target, the lowest host prediction (%s); port budgets are per host and the rate is split evenly, so the fleet runs out when its weakest host does. %s: %s", len(hosts), len(hosts), per, label, label, rc.Explanation)
	} else {
		c.Explanation = fmt.Sprintf("fleet of %d hosts: no host predicts port exhaustion. %s: %s", len(hosts), label, rc.Explanation)
	}
	// A measured limit (--find-limit) counts only when every host measured one.
	var lowM *float64
	for _, h := range hosts {
		m := h.in.Doc.Capacity.MeasuredExhaustionRate
		if m == nil {
			lowM = nil
			break
		}
		if lowM == nil || *m < *lowM {
			v := *m
			lowM = &v
		}
	}
	if lowM != nil {
		v := round2(*lowM * n)
		c.MeasuredExhaustionRate = &v
	}
	doc.Capacity = c
	fl.Derived = append(fl.Derived,
		fmt.Sprintf("capacity.predicted_exhaustion_rate: %d hosts x fleet.exhaustion_rate_per_host (the lowest host prediction; the rate is split evenly and each host has its own port budget); measured_exhaustion_rate likewise when every host measured one; headroom = predicted / achieved_rate", len(hosts)),
		fmt.Sprintf("capacity.ports_available, port_range, time_wait_hold_s, limit: those of host %s; new_conns_per_write: all hosts' new connections / all writes", label),
		"fleet.hosts[]: each host's own figures, capacity and sysctls side by side",
	)
}
