package fleet

import (
	"fmt"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/loadcap/loadcap/results"
)

func addCounts(dst *map[string]int64, src map[string]int64) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = map[string]int64{}
	}
	for k, v := range src {
		(*dst)[k] += v
	}
}

// mergeTargets sums the counts of each target (matched by name) over the
// hosts and merges its histograms exactly.
func mergeTargets(doc *results.Document, hosts []host) {
	type acc struct {
		t        results.Target
		lat, svc *hdrhistogram.Histogram
		histOK   bool
		errHost  map[string]string // error class -> an example message
		health   []shifted
	}
	var order []string
	accs := map[string]*acc{}
	for _, h := range hosts {
		for _, t := range h.in.Doc.Targets {
			a, ok := accs[t.Name]
			if !ok {
				a = &acc{t: results.Target{Name: t.Name, URL: t.URL, Kind: t.Kind, Errors: map[string]int64{}}, histOK: true, errHost: map[string]string{}}
				accs[t.Name] = a
				order = append(order, t.Name)
			}
			m := &a.t
			m.Writes += t.Writes
			m.WritesOK += t.WritesOK
			m.WritesFailed += t.WritesFailed
			m.LinesOK += t.LinesOK
			m.LateStarts += t.LateStarts
			m.AchievedRate += t.AchievedRate
			m.NewConnections += t.NewConnections
			m.DeadConnections += t.DeadConnections
			m.HeartbeatFailures += t.HeartbeatFailures
			m.PeakTimeWait = max(m.PeakTimeWait, t.PeakTimeWait)
			addCounts(&m.Errors, t.Errors)
			addCounts(&m.StatusCodes, t.StatusCodes)
			addCounts(&m.RetryAfter, t.RetryAfter)
			if t.FirstError != "" {
				if cls := topClass(t.Errors); cls != "" {
					if _, ok := a.errHost[cls]; !ok {
						a.errHost[cls] = h.label + ": " + t.FirstError
					}
				}
			}
			if t.Health != nil {
				a.health = append(a.health, shifted{h: *t.Health, off: h.off})
			}
			lat, svc := results.TargetHistogram(t, false), results.TargetHistogram(t, true)
			if lat == nil || svc == nil {
				if a.histOK {
					doc.Notes = append(doc.Notes, fmt.Sprintf("target %s: %s has no histograms; the merged latency is left empty rather than estimated", t.Name, h.label))
				}
				a.histOK = false
				continue
			}
			if a.lat == nil {
				a.lat, a.svc = lat, svc
			} else {
				a.lat.Merge(lat)
				a.svc.Merge(svc)
			}
		}
	}
	var sum float64
	for _, name := range order {
		a := accs[name]
		m := a.t
		if h := a.health; len(h) > 0 {
			m.Health = mergeHealth(h)
		}
		if cls := topClass(m.Errors); cls != "" {
			m.FirstError = a.errHost[cls]
		}
		m.AchievedRate = round2(m.AchievedRate)
		if a.histOK && a.lat != nil {
			m.LatencyMS, m.ServiceTimeMS = results.LatencyOf(a.lat), results.LatencyOf(a.svc)
			m.Histograms = &results.Histograms{Latency: results.EncodeHistogram(a.lat), ServiceTime: results.EncodeHistogram(a.svc)}
		}
		sum += m.AchievedRate
		doc.Targets = append(doc.Targets, m)
	}
	if len(order) > 0 {
		doc.AchievedRate = round2(sum / float64(len(order)))
	}
	doc.Fleet.Derived = append(doc.Fleet.Derived,
		"achieved_rate, targets[].achieved_rate: sums of the hosts' rates (writes/s per target, fleet total)",
		"targets[] counts, errors, status codes, new_connections: sums over the hosts",
		"targets[].latency_ms, service_time_ms: from the hosts' HdrHistograms merged exactly (histograms holds the merge)",
		"targets[].peak_time_wait: the highest of any host (each host has its own port budget)",
	)
}

type shifted struct {
	h   results.Health
	off time.Duration
}

// mergeHealth puts the hosts' failure episodes of one target on the
// fleet's clock: the first failure of any host, the last failure of any
// host, recovery when the last host recovered (null if one did not).
func mergeHealth(hs []shifted) *results.Health {
	ms := func(s shifted, v int64) int64 { return v + s.off.Milliseconds() }
	out := hs[0].h
	out.FirstFailureMS, out.LastFailureMS = ms(hs[0], hs[0].h.FirstFailureMS), ms(hs[0], hs[0].h.LastFailureMS)
	var rec *int64
	allRec := true
	for _, s := range hs {
		if f := ms(s, s.h.FirstFailureMS); f < out.FirstFailureMS {
			out.FirstFailureMS, out.FirstClass, out.DetectMS = f, s.h.FirstClass, s.h.DetectMS
		}
		out.LastFailureMS = max(out.LastFailureMS, ms(s, s.h.LastFailureMS))
		out.UnhealthyS = max(out.UnhealthyS, s.h.UnhealthyS)
		if s.h.RecoveredMS == nil {
			allRec = false
			continue
		}
		r := ms(s, *s.h.RecoveredMS)
		if rec == nil || r > *rec {
			rec = &r
		}
	}
	out.RecoveredMS = nil
	if allRec {
		out.RecoveredMS = rec
	}
	return &out
}

func topClass(m map[string]int64) string {
	best, n := "", int64(0)
	for k, v := range m {
		if v > n || (v == n && v > 0 && k < best) {
			best, n = k, v
		}
	}
	return best
}
