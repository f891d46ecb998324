package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/loadcap/loadcap/results"
)

// Input is one result document to merge and the file it came from (used in
// messages and recorded in fleet.hosts[].file).
type Input struct {
	Path string
	Doc  *results.Document
}

// Options control Merge.
type Options struct {
	// Force merges runs whose configs differ or whose shards are
	// incomplete; what differed is recorded in fleet.differences.
	Force bool
}

// MismatchError says the inputs are not the parts of one fleet run. Its
// message is one line naming what differs; the command exits with status 2.
type MismatchError struct {
	// Field is the differing config field (JSON name, e.g. "config.batch"),
	// or "shard", or "" for other refusals.
	Field string
	msg   string
}

func (e *MismatchError) Error() string { return e.msg }

func mismatch(field, format string, args ...any) error {
	return &MismatchError{Field: field, msg: fmt.Sprintf(format, args...)}
}

// Difference is one config field that differs between two runs.
type Difference struct {
	// Field is the JSON name, prefixed with "config.".
	Field string
	A, B  string
}

// ConfigDiff lists the fields of b that differ from a, in field order.
func ConfigDiff(a, b results.Config) []Difference {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	var out []Difference
	for i := 0; i < t.NumField(); i++ {
		fa, fb := va.Field(i).Interface(), vb.Field(i).Interface()
		if reflect.DeepEqual(fa, fb) {
			continue
		}
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		out = append(out, Difference{Field: "config." + name, A: show(fa), B: show(fb)})
	}
	return out
}

func show(v any) string {
	switch x := v.(type) {
	case []string:
		return "[" + strings.Join(x, ",") + "]"
	case string:
		if x == "" {
			return `""`
		}
		return x
	}
	return fmt.Sprint(v)
}

// host is one input with what Merge works out about it.
type host struct {
	in    Input
	label string
	// off is the host's start relative to the fleet's start.
	off time.Duration
}

// Merge merges the result documents of one fleet run (the shards of
// `loadcap run --shard I/N`, or unsharded runs of one config on many hosts)
// into one document; see results.Fleet for what each figure means. It
// refuses, with a *MismatchError, inputs that are not parts of one run:
// different configs (unless opts.Force), shards of different counts,
// missing or repeated shards (unless opts.Force), a mix of sharded and
// unsharded runs, the same run twice, or an already merged document.
func Merge(in []Input, opts Options) (*results.Document, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("merge results: no result files")
	}
	hosts, shards, diffs, err := check(in, opts)
	if err != nil {
		return nil, err
	}
	first := hosts[0].in.Doc
	start, end := first.StartedAt, first.FinishedAt
	for _, h := range hosts {
		if h.in.Doc.StartedAt.Before(start) {
			start = h.in.Doc.StartedAt
		}
		if h.in.Doc.FinishedAt.After(end) {
			end = h.in.Doc.FinishedAt
		}
	}
	var spread time.Duration
	for i := range hosts {
		hosts[i].off = hosts[i].in.Doc.StartedAt.Sub(start)
		spread = max(spread, hosts[i].off)
	}

	doc := &results.Document{
		Schema:         results.SchemaVersion,
		ID:             mergedID(start, hosts),
		StartedAt:      start,
		FinishedAt:     end,
		LoadcapVersion: common(hosts, func(d *results.Document) string { return d.LoadcapVersion }),
		Kernel:         common(hosts, func(d *results.Document) string { return d.Kernel }),
		Host:           fmt.Sprintf("fleet of %d hosts", len(hosts)),
		Config:         first.Config,
	}
	doc.Config.Targets = append([]string(nil), first.Config.Targets...)
	fl := &results.Fleet{Shards: shards, StartSpreadMS: spread.Milliseconds(), Forced: len(diffs) > 0, Differences: diffs}
	doc.Fleet = fl
	// Each host's config.rate is what it paced (a shard: --rate/N), so the
	// fleet's is their sum: the --rate of a sharded run.
	var sum float64
	for _, h := range hosts {
		sum += h.in.Doc.Config.Rate
	}
	doc.Config.Rate = round2(sum)
	fl.Derived = append(fl.Derived, fmt.Sprintf("config.rate: sum of the %d hosts' config.rate (each host's is what it paced: --rate/%d for a shard), the fleet's total per target", len(hosts), max(shards, 1)))
	for _, h := range hosts {
		d := h.in.Doc
		doc.Interrupted = doc.Interrupted || d.Interrupted
		for _, n := range d.Notes {
			doc.Notes = append(doc.Notes, h.label+": "+n)
		}
		if len(d.Steps) > 0 {
			doc.Notes = append(doc.Notes, fmt.Sprintf("%s: %d --find-limit steps not merged (see its own result %s)", h.label, len(d.Steps), d.ID))
		}
	}
	if lim := startSpreadLimit(first); spread > lim {
		doc.Notes = append(doc.Notes, fmt.Sprintf("hosts started up to %d ms apart (more than %s): their windows overlap only in part; use --start-at", spread.Milliseconds(), lim))
	}

	mergeTargets(doc, hosts)
	mergeSysctl(doc, hosts)
	mergeTimeline(doc, hosts)
	mergeSampler(doc, hosts)
	for _, h := range hosts {
		fl.Hosts = append(fl.Hosts, fleetHost(h))
	}
	mergeCapacity(doc, hosts)
	return doc, nil
}

// startSpreadLimit is the start spread beyond which the merged windows are
// noticeably misaligned: 10 % of the duration, at least 1 s.
func startSpreadLimit(d *results.Document) time.Duration {
	return max(time.Second, time.Duration(d.Config.DurationS*0.1*float64(time.Second)))
}

// check validates the inputs as parts of one run and orders them (by
// shard, else by start time). It returns the shard count (0: unsharded)
// and, with Force, the differences it let through.
func check(in []Input, opts Options) ([]host, int, []string, error) {
	seen := map[string]string{}
	sharded := 0
	for _, x := range in {
		if x.Doc == nil {
			return nil, 0, nil, fmt.Errorf("merge results: %s: no document", x.Path)
		}
		if x.Doc.Fleet != nil {
			return nil, 0, nil, mismatch("", "merge results: %s is already a merged fleet document (%d hosts); merge the hosts' own files", x.Path, len(x.Doc.Fleet.Hosts))
		}
		if p, ok := seen[x.Doc.ID]; ok {
			return nil, 0, nil, mismatch("", "merge results: %s and %s are the same run (id %s)", p, x.Path, x.Doc.ID)
		}
		seen[x.Doc.ID] = x.Path
		if x.Doc.Shard != nil {
			sharded++
		}
	}
	if sharded != 0 && sharded != len(in) {
		var plain []string
		for _, x := range in {
			if x.Doc.Shard == nil {
				plain = append(plain, x.Path)
			}
		}
		return nil, 0, nil, mismatch("shard", "merge results: %s not sharded but the other runs are (--shard): not parts of one fleet run", strings.Join(plain, ", "))
	}
	hosts := make([]host, len(in))
	for i, x := range in {
		hosts[i] = host{in: x}
	}
	var diffs []string
	shards := 0
	if sharded > 0 {
		shards = in[0].Doc.Shard.Count
		for _, x := range in[1:] {
			if x.Doc.Shard.Count != shards {
				return nil, 0, nil, mismatch("shard", "merge results: shard counts differ: %d in %s, %d in %s", shards, in[0].Path, x.Doc.Shard.Count, x.Path)
			}
		}
		sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].in.Doc.Shard.Index < hosts[j].in.Doc.Shard.Index })
		have := map[int]string{}
		for _, h := range hosts {
			s := h.in.Doc.Shard
			if s.Index < 0 || s.Index >= shards {
				return nil, 0, nil, mismatch("shard", "merge results: %s: bad shard %d/%d", h.in.Path, s.Index, s.Count)
			}
			if p, ok := have[s.Index]; ok {
				msg := fmt.Sprintf("shard %d/%d twice: %s and %s", s.Index, shards, p, h.in.Path)
				if !opts.Force {
					return nil, 0, nil, mismatch("shard", "merge results: %s (--force merges anyway)", msg)
				}
				diffs = append(diffs, msg)
			}
			have[s.Index] = h.in.Path
		}
		var missing []string
		for i := 0; i < shards && len(missing) < 10; i++ {
			if _, ok := have[i]; !ok {
				missing = append(missing, fmt.Sprintf("%d/%d", i, shards))
			}
		}
		if len(missing) > 0 {
			msg := "missing shards " + strings.Join(missing, ", ")
			if !opts.Force {
				return nil, 0, nil, mismatch("shard", "merge results: %s (--force merges the %d present)", msg, len(in))
			}
			diffs = append(diffs, msg)
		}
	} else {
		sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].in.Doc.StartedAt.Before(hosts[j].in.Doc.StartedAt) })
	}
	ref := hosts[0]
	for _, h := range hosts[1:] {
		for _, d := range ConfigDiff(ref.in.Doc.Config, h.in.Doc.Config) {
			if !opts.Force {
				return nil, 0, nil, mismatch(d.Field, "merge results: %s differs: %s in %s, %s in %s (--force merges anyway)", d.Field, d.A, ref.in.Path, d.B, h.in.Path)
			}
			diffs = append(diffs, fmt.Sprintf("%s: %s in %s, %s in %s", d.Field, d.A, ref.in.Path, d.B, h.in.Path))
		}
	}
	labelHosts(hosts)
	return hosts, shards, diffs, nil
}

// labelHosts names each host: its host name when unique, else the host
// name and its shard (or position).
func labelHosts(hosts []host) {
	count := map[string]int{}
	for _, h := range hosts {
		count[hostName(h.in.Doc)]++
	}
	used := map[string]bool{}
	for i := range hosts {
		d := hosts[i].in.Doc
		l := hostName(d)
		if count[l] > 1 {
			if d.Shard != nil {
				l = fmt.Sprintf("%s#%d", l, d.Shard.Index)
			} else {
				l = fmt.Sprintf("%s#%d", l, i)
			}
		}
		for n := 2; used[l] && n < len(hosts)+2; n++ {
			l = fmt.Sprintf("%s-%d", hostName(d), n)
		}
		used[l] = true
		hosts[i].label = l
	}
}

func hostName(d *results.Document) string {
	if d.Host != "" {
		return d.Host
	}
	return "host"
}

func mergedID(start time.Time, hosts []host) string {
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.in.Doc.ID
	}
	sort.Strings(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return start.UTC().Format("20060102T150405Z") + "-fleet-" + hex.EncodeToString(sum[:3])
}

// common returns the value every host has, or "mixed: a, b".
func common(hosts []host, get func(*results.Document) string) string {
	var vals []string
	seen := map[string]bool{}
	for _, h := range hosts {
		v := get(h.in.Doc)
		if !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	if len(vals) == 1 {
		return vals[0]
	}
	return "mixed: " + strings.Join(vals, ", ")
}

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

func round2(f float64) float64 { return math.Round(f*100) / 100 }

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
