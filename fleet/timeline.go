package fleet

import (
	"fmt"
	"math"
	"sort"

	"github.com/loadcap/loadcap/results"
)

// mergeTimeline puts the hosts' per-second intervals on the fleet's clock
// (rounded to the interval) and sums them per target.
func mergeTimeline(doc *results.Document, hosts []host) {
	type key struct {
		t      int64
		target string
	}
	const span = 1000
	acc := map[key]*results.Interval{}
	var keys []key
	for _, h := range hosts {
		off := h.off.Milliseconds()
		for _, iv := range h.in.Doc.Timeline {
			t := int64(math.Round(float64(iv.TMS+off)/span)) * span
			k := key{t, iv.Target}
			m, ok := acc[k]
			if !ok {
				m = &results.Interval{TMS: t, Target: iv.Target}
				acc[k] = m
				keys = append(keys, k)
			}
			m.Started += iv.Started
			m.OK += iv.OK
			m.Failed += iv.Failed
			m.NewConns += iv.NewConns
			addCounts(&m.Errors, iv.Errors)
			m.P99MS = max(m.P99MS, iv.P99MS)
		}
	}
	rank := map[string]int{}
	for i, t := range doc.Targets {
		rank[t.Name] = i
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].t != keys[j].t {
			return keys[i].t < keys[j].t
		}
		return rank[keys[i].target] < rank[keys[j].target]
	})
	for _, k := range keys {
		doc.Timeline = append(doc.Timeline, *acc[k])
	}
	if len(keys) > 0 {
		doc.Fleet.Derived = append(doc.Fleet.Derived, "timeline: each host's per-second intervals shifted by its start time and summed per target; p99_ms is the highest host p99 of the interval (an upper bound: per-interval histograms are not in the files)")
	}
}

// mergeSampler aligns the hosts' socket-state series on the fleet's clock:
// a host's sample at t_ms happened at its started_at + t_ms. Samples fall
// into slots of the largest sampling interval; each slot has every host's
// latest sample (a host's last sample is carried over the slots it missed,
// within its own run) in by_host, and the fleet figures derived from them.
func mergeSampler(doc *results.Document, hosts []host) {
	interval := 0
	source := ""
	for _, h := range hosts {
		if s := h.in.Doc.Sampler; s != nil {
			interval = max(interval, s.IntervalMS)
			if source == "" {
				source = s.Source
			}
		}
	}
	if interval <= 0 {
		return
	}
	type slotted struct {
		first, last int64
		at          map[int64]results.Sample
	}
	per := make([]slotted, len(hosts))
	slots := map[int64]bool{}
	for i, h := range hosts {
		s := h.in.Doc.Sampler
		if s == nil || len(s.Series) == 0 {
			continue
		}
		p := slotted{first: math.MaxInt64, last: math.MinInt64, at: map[int64]results.Sample{}}
		off := h.off.Milliseconds()
		for _, smp := range s.Series {
			t := smp.TMS + off
			k := int64(math.Round(float64(t) / float64(interval)))
			if old, ok := p.at[k]; ok && old.TMS > t {
				continue
			}
			smp.TMS = t
			smp.ByHost = nil
			p.at[k] = smp
			p.first, p.last = min(p.first, k), max(p.last, k)
			slots[k] = true
		}
		per[i] = p
	}
	keys := make([]int64, 0, len(slots))
	for k := range slots {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	out := &results.Sampler{IntervalMS: interval, Source: source}
	lastSeen := make([]*results.Sample, len(hosts))
	for _, k := range keys {
		m := results.Sample{TMS: k * int64(interval), States: map[string]int{}, ByHost: map[string]results.Sample{}}
		for i, h := range hosts {
			p := per[i]
			if p.at == nil || k < p.first || k > p.last {
				continue
			}
			smp, ok := p.at[k]
			if ok {
				lastSeen[i] = &smp
			} else if lastSeen[i] != nil {
				smp = *lastSeen[i]
			} else {
				continue
			}
			m.ByHost[h.label] = smp
			for st, n := range smp.States {
				m.States[st] += n
			}
			for tg, states := range smp.ByTarget {
				if m.ByTarget == nil {
					m.ByTarget = map[string]map[string]int{}
				}
				if m.ByTarget[tg] == nil {
					m.ByTarget[tg] = map[string]int{}
				}
				for st, n := range states {
					m.ByTarget[tg][st] += n
				}
			}
			m.PortsInUse = max(m.PortsInUse, smp.PortsInUse)
			if smp.PortsAvailable > 0 && (m.PortsAvailable == 0 || smp.PortsAvailable < m.PortsAvailable) {
				m.PortsAvailable = smp.PortsAvailable
			}
			m.NewConnsPerS += smp.NewConnsPerS
			m.SockstatTW += smp.SockstatTW
			for c, v := range smp.Counters {
				if m.Counters == nil {
					m.Counters = map[string]uint64{}
				}
				m.Counters[c] += v
			}
		}
		m.NewConnsPerS = round2(m.NewConnsPerS)
		out.Series = append(out.Series, m)
	}
	doc.Sampler = out
	doc.Fleet.Derived = append(doc.Fleet.Derived, fmt.Sprintf("sampler.series: each host's samples placed at its started_at + t_ms in %d ms slots; by_host keeps each host's own sample; states, by_target, new_conns_per_s and sockstat_tw are summed, ports_in_use is the highest and ports_available the lowest of any host", interval))
}
