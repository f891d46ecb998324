package results

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Better tells which value of a comparison row is the best one.
type Better int

// Directions of a row.
const (
	// BetterNone: the row describes, it does not rank (profiles, rate asked).
	BetterNone Better = iota
	// BetterLower: the smallest value is best (latency, errors, TIME_WAIT).
	BetterLower
	// BetterHigher: the largest value is best (exhaustion rate, headroom).
	BetterHigher
)

func (b Better) String() string {
	switch b {
	case BetterLower:
		return "lower"
	case BetterHigher:
		return "higher"
	}
	return ""
}

// Cell is one value of a comparison: its text, its number when it has one
// (+Inf for "never"), and whether it is the best of its row.
type Cell struct {
	Text   string
	Num    float64
	HasNum bool
	Best   bool
}

// Row is one figure of a comparison, one cell per column.
type Row struct {
	Section string
	Figure  string
	Unit    string
	Better  Better
	Cells   []Cell
}

// Column is one compared run (or, for a matrix, one sysctl profile).
type Column struct {
	ID    string
	Path  string
	Label string
}

// Comparison is a table of figures: one column per run, one row per figure,
// with the best value of each ranked row marked. Build it with Compare or
// MatrixComparison and write it with a Reporter of the wanted format.
type Comparison struct {
	Title   string
	Corner  string // the header of the figure column
	Columns []Column
	Rows    []Row
	Notes   []string
}

func num(v float64, text string) Cell { return Cell{Text: text, Num: v, HasNum: true} }
func txt(s string) Cell               { return Cell{Text: s} }
func intCell(v int64) Cell            { return num(float64(v), strconv.FormatInt(v, 10)) }
func floatCell(v float64) Cell        { return num(v, fmtNum(v)) }

// rateCell is an exhaustion rate: nil means the model (or the search)
// found no exhaustion, which is the best possible rate.
func rateCell(p *float64, never bool) Cell {
	if p == nil {
		if never {
			return num(math.Inf(1), "never")
		}
		return txt("-")
	}
	return num(*p, fmtRate(*p))
}

// fmtNum formats a figure with about three significant digits, never in
// exponent notation.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsInf(v, 1):
		return "inf"
	case a == math.Trunc(a) && a < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strings.TrimRight(strconv.FormatFloat(v, 'f', 3, 64), "0")
	}
}

// fmtRate formats a rate in writes/s like loadcap's other commands: 1.2k
// above 10000, one decimal above 100.
func fmtRate(r float64) string {
	switch {
	case math.IsInf(r, 1):
		return "never"
	case r >= 10000:
		return fmt.Sprintf("%.1fk", r/1000)
	case r == math.Trunc(r):
		return strconv.FormatFloat(r, 'f', 0, 64)
	case r >= 100:
		return fmt.Sprintf("%.1f", r)
	default:
		return fmt.Sprintf("%.3g", r)
	}
}

func fmtInt(v int64) string { return strconv.FormatInt(v, 10) }

func targetNames(d *Document) string {
	var names []string
	for _, t := range d.Targets {
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return strings.Join(d.Config.Targets, ",")
	}
	return strings.Join(names, ",")
}

func totalFailed(d *Document) int64 {
	var n int64
	for _, t := range d.Targets {
		n += t.WritesFailed
	}
	return n
}

func totalOK(d *Document) int64 {
	var n int64
	for _, t := range d.Targets {
		n += t.WritesOK
	}
	return n
}

func limitText(p *float64, limit string) string {
	if p == nil {
		if limit != "" {
			return "never (" + limit + ")"
		}
		return "never"
	}
	return fmtRate(*p)
}

func measuredText(d *Document) string {
	c := d.Capacity
	switch {
	case c.MeasuredExhaustionRate != nil:
		return fmtRate(*c.MeasuredExhaustionRate)
	case d.Config.FindLimit:
		return "never"
	}
	return "-"
}

// predictedNever reports whether a nil predicted rate means "no exhaustion"
// (the model ran and found none) rather than "unknown".
func predictedNever(d *Document) bool { return capacityNever(d.Capacity) }

// capacityNever reports whether c's nil predicted rate means "no
// exhaustion" rather than "unknown".
func capacityNever(c Capacity) bool {
	return c.PredictedExhaustionRate == nil && c.Limit != "" && c.PortsAvailable > 0
}

// PortErrorClasses are the error classes that mean the client ran out of
// local ports.
var PortErrorClasses = []string{"EADDRNOTAVAIL", "EADDRINUSE"}

// IsPortError reports whether class is a port-exhaustion error class.
func IsPortError(class string) bool {
	for _, c := range PortErrorClasses {
		if c == class {
			return true
		}
	}
	return false
}

// RunLatency is the latency summary of all of a run's writes: the targets'
// histograms merged when every target has one, else the worst target's
// figure for each percentile.
func RunLatency(d *Document) Latency {
	if len(d.Targets) == 1 {
		return d.Targets[0].LatencyMS
	}
	if h := MergedHistogram(d, false); h != nil {
		return LatencyOf(h)
	}
	var l Latency
	for _, t := range d.Targets {
		x := t.LatencyMS
		l.P50, l.P90, l.P99 = math.Max(l.P50, x.P50), math.Max(l.P90, x.P90), math.Max(l.P99, x.P99)
		l.P999, l.Max, l.Mean = math.Max(l.P999, x.P999), math.Max(l.Max, x.Max), math.Max(l.Mean, x.Mean)
	}
	return l
}

// Labels returns a short, distinct label per document for legends and
// column titles: client / sysctl, with the target count when above one,
// and the id's suffix when two runs would otherwise look the same.
func Labels(docs []*Document) []string {
	out := make([]string, len(docs))
	count := map[string]int{}
	for i, d := range docs {
		l := d.Config.ClientProfile + " / " + d.Config.SysctlProfile
		if n := len(d.Targets); n > 1 {
			l += fmt.Sprintf(" x%d", n)
		}
		if d.Config.FindLimit {
			l += " (find-limit)"
		}
		out[i] = l
		count[l]++
	}
	for i, d := range docs {
		if count[out[i]] > 1 {
			id := d.ID
			if j := strings.LastIndexByte(id, '-'); j >= 0 && j < len(id)-1 {
				id = id[j+1:]
			}
			out[i] += " #" + id
		}
	}
	return out
}

// Compare builds the side-by-side comparison of docs: one column per run.
func Compare(docs []*Document) *Comparison {
	c := &Comparison{Corner: "figure"}
	labels := Labels(docs)
	for i, d := range docs {
		c.Columns = append(c.Columns, Column{ID: d.ID, Label: labels[i]})
	}
	add := func(section, figure, unit string, better Better, f func(d *Document) Cell) {
		r := Row{Section: section, Figure: figure, Unit: unit, Better: better}
		for _, d := range docs {
			r.Cells = append(r.Cells, f(d))
		}
		c.Rows = append(c.Rows, r)
	}

	const run, load, errs, lat, sock, capa = "run", "load", "errors", "latency", "sockets", "capacity"
	add(run, "started", "UTC", BetterNone, func(d *Document) Cell { return txt(d.StartedAt.UTC().Format("2006-01-02 15:04:05")) })
	add(run, "targets", "", BetterNone, func(d *Document) Cell { return txt(targetNames(d)) })
	add(run, "client profile", "", BetterNone, func(d *Document) Cell {
		s := d.Config.ClientProfile
		if d.Config.DialMode != "" {
			s += " (" + d.Config.DialMode + ")"
		}
		return txt(s)
	})
	add(run, "sysctl profile", "", BetterNone, func(d *Document) Cell {
		s := d.Config.SysctlProfile
		if d.Config.Lab {
			s += " (lab)"
		}
		return txt(s)
	})
	for _, k := range differingSysctls(docs) {
		add(run, k, "", BetterNone, func(d *Document) Cell {
			v, ok := d.Sysctl[k]
			if !ok {
				return txt("-")
			}
			return txt(v)
		})
	}
	if anyDoc(docs, func(d *Document) bool { return d.Config.LabFirewallIdleS > 0 }) {
		add(run, "lab firewall idle timeout", "s, flows idle longer are dropped", BetterNone, func(d *Document) Cell {
			if d.Config.LabFirewallIdleS <= 0 {
				return txt("-")
			}
			return floatCell(d.Config.LabFirewallIdleS)
		})
	}
	if differ(docs, func(d *Document) string { return d.Kernel }) {
		add(run, "kernel", "", BetterNone, func(d *Document) Cell { return txt(d.Kernel) })
	}
	if differ(docs, func(d *Document) string { return strconv.FormatBool(d.Interrupted) }) || docs[0].Interrupted {
		add(run, "interrupted", "", BetterNone, func(d *Document) Cell { return txt(strconv.FormatBool(d.Interrupted)) })
	}

	add(load, "rate asked", "writes/s per target", BetterNone, func(d *Document) Cell {
		if d.Config.FindLimit {
			return txt("find-limit")
		}
		return num(d.Config.Rate, fmtRate(d.Config.Rate))
	})
	add(load, "rate achieved", "writes/s per target", BetterNone, func(d *Document) Cell { return num(d.AchievedRate, fmtRate(d.AchievedRate)) })
	add(load, "achieved of asked", "%", BetterHigher, func(d *Document) Cell {
		asked := d.Config.Rate
		if d.Config.FindLimit || asked <= 0 {
			return txt("-")
		}
		p := math.Min(d.AchievedRate/asked*100, 100)
		return num(p, strconv.FormatFloat(p, 'f', 1, 64))
	})
	if anyDoc(docs, func(d *Document) bool { return d.Config.Pattern != "" }) {
		add(load, "pattern", "", BetterNone, func(d *Document) Cell {
			if d.Config.Pattern == "" {
				return txt("-")
			}
			return txt(d.Config.Pattern)
		})
	}
	add(load, "duration", "s", BetterNone, func(d *Document) Cell { return floatCell(d.Config.DurationS) })
	add(load, "batch", "lines per write", BetterNone, func(d *Document) Cell { return intCell(int64(d.Config.Batch)) })
	add(load, "writes ok", "all targets", BetterNone, func(d *Document) Cell { return intCell(totalOK(d)) })
	add(load, "writes failed", "all targets", BetterLower, func(d *Document) Cell { return intCell(totalFailed(d)) })
	add(load, "failed", "%", BetterLower, func(d *Document) Cell {
		all := totalOK(d) + totalFailed(d)
		if all == 0 {
			return txt("-")
		}
		p := float64(totalFailed(d)) / float64(all) * 100
		return num(p, strconv.FormatFloat(p, 'f', 2, 64))
	})
	for _, cl := range errorClasses(docs) {
		add(errs, cl, "writes", BetterLower, func(d *Document) Cell {
			var n int64
			for _, t := range d.Targets {
				n += t.Errors[cl]
			}
			return intCell(n)
		})
	}

	for _, p := range []struct {
		name string
		f    func(Latency) float64
	}{
		{"p50", func(l Latency) float64 { return l.P50 }},
		{"p90", func(l Latency) float64 { return l.P90 }},
		{"p99", func(l Latency) float64 { return l.P99 }},
		{"p99.9", func(l Latency) float64 { return l.P999 }},
		{"max", func(l Latency) float64 { return l.Max }},
	} {
		add(lat, p.name, "ms", BetterLower, func(d *Document) Cell {
			if totalOK(d)+totalFailed(d) == 0 {
				return txt("-")
			}
			return floatCell(p.f(RunLatency(d)))
		})
	}

	add(sock, "peak TIME_WAIT", "sockets", BetterLower, func(d *Document) Cell {
		peak := 0
		for _, t := range d.Targets {
			peak = max(peak, t.PeakTimeWait)
		}
		return intCell(int64(peak))
	})
	add(sock, "new connections", "all targets", BetterNone, func(d *Document) Cell {
		var n int64
		for _, t := range d.Targets {
			n += t.NewConnections
		}
		return intCell(n)
	})
	add(sock, "new connections per write", "", BetterLower, func(d *Document) Cell {
		v := d.Capacity.NewConnsPerWrite
		return num(v, strconv.FormatFloat(v, 'f', -1, 64))
	})

	if anyDoc(docs, showHealth) {
		healthRows(c, docs)
	}

	add(capa, "ports available", "per pool", BetterHigher, func(d *Document) Cell { return intCell(int64(d.Capacity.PortsAvailable)) })
	add(capa, "port hold time", "s", BetterLower, func(d *Document) Cell { return floatCell(d.Capacity.TimeWaitHoldS) })
	add(capa, "predicted exhaustion rate", "writes/s per target", BetterHigher, func(d *Document) Cell {
		return rateCell(d.Capacity.PredictedExhaustionRate, predictedNever(d))
	})
	add(capa, "measured exhaustion rate", "writes/s per target", BetterHigher, func(d *Document) Cell {
		return rateCell(d.Capacity.MeasuredExhaustionRate, d.Config.FindLimit)
	})
	add(capa, "headroom", "x achieved rate", BetterHigher, func(d *Document) Cell {
		if h := d.Capacity.Headroom; h != nil {
			return num(*h, strconv.FormatFloat(*h, 'f', 2, 64)+"x")
		}
		if predictedNever(d) {
			return num(math.Inf(1), "inf")
		}
		return txt("-")
	})
	add(capa, "binding limit", "", BetterNone, func(d *Document) Cell {
		if d.Capacity.Limit == "" {
			return txt("-")
		}
		return txt(d.Capacity.Limit)
	})
	if anyDoc(docs, func(d *Document) bool { return d.Fleet != nil }) {
		fleetRows(c, docs)
	}
	if anyDoc(docs, func(d *Document) bool { return d.NAT != nil }) {
		natRows(c, docs)
	}
	c.markBest()
	if len(docs) > 1 {
		c.Notes = append(c.Notes, "latency is measured from each write's intended start (no coordinated omission); rates are per target")
	}
	return c
}

// showHealth reports whether d has figures for the health section: a
// workload with idle phases, a lab firewall, or a target whose pooled
// connections died or whose writes failed.
func showHealth(d *Document) bool {
	if d.Config.Pattern != "" || d.Config.LabFirewallIdleS > 0 {
		return true
	}
	for _, t := range d.Targets {
		if t.DeadConnections > 0 || t.HeartbeatFailures > 0 || t.Health != nil {
			return true
		}
	}
	return false
}

// slotLabels names the positions of per-item rows (the targets of a run,
// the hosts of a fleet): position i is named by the name every document
// with an item i gives it, or "<fallback> i+1" when they differ.
func slotLabels(docs []*Document, names func(*Document) []string, fallback string) []string {
	var out []string
	for i := 0; ; i++ {
		name, seen, same := "", false, true
		for _, d := range docs {
			ns := names(d)
			if i >= len(ns) {
				continue
			}
			if !seen {
				name, seen = ns[i], true
			} else if ns[i] != name {
				same = false
			}
		}
		if !seen {
			return out
		}
		if !same || name == "" {
			name = fmt.Sprintf("%s %d", fallback, i+1)
		}
		out = append(out, name)
	}
}

func targetList(d *Document) []string {
	out := make([]string, len(d.Targets))
	for i, t := range d.Targets {
		out[i] = t.Name
	}
	return out
}

// healthRows adds the health section: per target, the pooled connections
// found dead after an idle phase, the failed heartbeats, the first failed
// write (when it was due, its class, how long it ran before it failed:
// keepalive, TCP_USER_TIMEOUT or the write timeout, so it describes rather
// than ranks) and the recovery ("never" when no write succeeded after the
// failures). With one target per run the rows are the run's; with more,
// each target has its own rows, named "<target>: <figure>" (the target's
// name, or "target N" when the runs name their N-th target differently).
// A run without that target shows "-".
func healthRows(c *Comparison, docs []*Document) {
	const section = "health"
	labels := slotLabels(docs, targetList, "target")
	multi := anyDoc(docs, func(d *Document) bool { return len(d.Targets) > 1 })
	for i, label := range labels {
		name := func(fig string) string {
			if multi {
				return label + ": " + fig
			}
			return fig
		}
		row := func(fig, unit string, better Better, f func(t *Target) Cell) {
			r := Row{Section: section, Figure: name(fig), Unit: unit, Better: better}
			for _, d := range docs {
				if i >= len(d.Targets) {
					r.Cells = append(r.Cells, txt("-"))
					continue
				}
				r.Cells = append(r.Cells, f(&d.Targets[i]))
			}
			c.Rows = append(c.Rows, r)
		}
		health := func(f func(h *Health) Cell) func(t *Target) Cell {
			return func(t *Target) Cell {
				if t.Health == nil {
					return txt("-")
				}
				return f(t.Health)
			}
		}
		row("dead pooled connections", "found on reuse", BetterLower, func(t *Target) Cell { return intCell(t.DeadConnections) })
		row("heartbeat failures", "idle pings that failed", BetterLower, func(t *Target) Cell { return intCell(t.HeartbeatFailures) })
		row("first failure", "ms after start, write due", BetterNone, health(func(h *Health) Cell { return intCell(h.FirstFailureMS) }))
		row("first failure class", "", BetterNone, health(func(h *Health) Cell { return txt(h.FirstClass) }))
		row("time to detect", "ms, first failed write", BetterNone, health(func(h *Health) Cell { return floatCell(h.DetectMS) }))
		row("recovered", "ms after start", BetterNone, health(func(h *Health) Cell {
			if h.RecoveredMS == nil {
				return txt("never")
			}
			return intCell(*h.RecoveredMS)
		}))
		row("unhealthy", "s, first failure to recovery", BetterLower, func(t *Target) Cell {
			if t.Health == nil {
				return floatCell(0)
			}
			return floatCell(t.Health.UnhealthyS)
		})
	}
}

// maxHostRows bounds the hosts given their own rows in the fleet section;
// the weakest host is always named.
const maxHostRows = 32

func hostList(d *Document) []string {
	if d.Fleet == nil {
		return nil
	}
	out := make([]string, len(d.Fleet.Hosts))
	for i, h := range d.Fleet.Hosts {
		out[i] = h.Host
	}
	return out
}

// fleetRows adds the fleet section for merged documents (loadcap merge):
// how many hosts, how far apart they started, the per-host exhaustion rate
// the fleet's prediction derives from and the host it comes from, then
// each host's own figures side by side, named "<host>: <figure>" (the
// host's label, or "host N" when the runs name their N-th host
// differently). A document that is not a merged one shows "-".
func fleetRows(c *Comparison, docs []*Document) {
	const section = "fleet"
	add := sectionAdder(c, docs, section, func(d *Document) *Fleet { return d.Fleet })
	add("hosts", "merged runs", BetterNone, func(fl *Fleet) Cell {
		n := int64(len(fl.Hosts))
		if fl.Shards > 0 {
			return num(float64(n), fmt.Sprintf("%d (of %d shards)", n, fl.Shards))
		}
		return intCell(n)
	})
	add("start spread", "ms", BetterLower, func(fl *Fleet) Cell { return intCell(fl.StartSpreadMS) })
	add("exhaustion rate per host", "writes/s per target, weakest host", BetterHigher, func(fl *Fleet) Cell {
		return rateCell(fl.ExhaustionRatePerHost, true)
	})
	add("weakest host", "", BetterNone, func(fl *Fleet) Cell {
		if fl.WeakestHost == "" {
			return txt("-")
		}
		return txt(fl.WeakestHost)
	})
	if anyDoc(docs, func(d *Document) bool { return d.Fleet != nil && d.Fleet.Forced }) {
		add("forced merge", "differences", BetterNone, func(fl *Fleet) Cell {
			if !fl.Forced {
				return txt("no")
			}
			return txt(strings.Join(fl.Differences, "; "))
		})
	}
	labels := slotLabels(docs, hostList, "host")
	if len(labels) > maxHostRows {
		c.Notes = append(c.Notes, fmt.Sprintf("fleet: per-host rows for the first %d of %d hosts; fleet.hosts in the result file has them all", maxHostRows, len(labels)))
		labels = labels[:maxHostRows]
	}
	for i, label := range labels {
		row := func(fig, unit string, better Better, f func(h *FleetHost) Cell) {
			r := Row{Section: section, Figure: label + ": " + fig, Unit: unit, Better: better}
			for _, d := range docs {
				if d.Fleet == nil || i >= len(d.Fleet.Hosts) {
					r.Cells = append(r.Cells, txt("-"))
					continue
				}
				r.Cells = append(r.Cells, f(&d.Fleet.Hosts[i]))
			}
			c.Rows = append(c.Rows, r)
		}
		row("rate achieved", "writes/s per target", BetterNone, func(h *FleetHost) Cell { return num(h.AchievedRate, fmtRate(h.AchievedRate)) })
		row("writes ok", "all targets", BetterNone, func(h *FleetHost) Cell { return intCell(h.WritesOK) })
		row("writes failed", "all targets", BetterLower, func(h *FleetHost) Cell { return intCell(h.WritesFailed) })
		row("p99", "ms", BetterLower, func(h *FleetHost) Cell {
			if h.WritesOK+h.WritesFailed == 0 {
				return txt("-")
			}
			return floatCell(h.LatencyMS.P99)
		})
		row("peak TIME_WAIT", "sockets", BetterLower, func(h *FleetHost) Cell { return intCell(int64(h.PeakTimeWait)) })
		row("ports available", "per pool", BetterHigher, func(h *FleetHost) Cell { return intCell(int64(h.Capacity.PortsAvailable)) })
		row("predicted exhaustion rate", "writes/s per target from this host", BetterHigher, func(h *FleetHost) Cell {
			return rateCell(h.Capacity.PredictedExhaustionRate, capacityNever(h.Capacity))
		})
	}
}

// anyDoc reports whether f holds for some document.
func anyDoc(docs []*Document, f func(*Document) bool) bool {
	for _, d := range docs {
		if f(d) {
			return true
		}
	}
	return false
}

func differ(docs []*Document, f func(*Document) string) bool {
	for _, d := range docs[min(1, len(docs)):] {
		if f(d) != f(docs[0]) {
			return true
		}
	}
	return false
}

// differingSysctls returns the sysctl keys whose values are not the same in
// every document (a key missing from one counts as different), sorted.
func differingSysctls(docs []*Document) []string {
	if len(docs) < 2 {
		return nil
	}
	keys := map[string]bool{}
	for _, d := range docs {
		for k := range d.Sysctl {
			keys[k] = true
		}
	}
	var out []string
	for k := range keys {
		first, ok0 := docs[0].Sysctl[k]
		for _, d := range docs[1:] {
			v, ok := d.Sysctl[k]
			if ok != ok0 || v != first {
				out = append(out, k)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// errorClasses returns every error class seen in docs, port errors first,
// then by total count.
func errorClasses(docs []*Document) []string {
	tot := map[string]int64{}
	for _, d := range docs {
		for _, t := range d.Targets {
			for k, v := range t.Errors {
				tot[k] += v
			}
		}
	}
	var out []string
	for k := range tot {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		pi, pj := IsPortError(out[i]), IsPortError(out[j])
		if pi != pj {
			return pi
		}
		if tot[out[i]] != tot[out[j]] {
			return tot[out[i]] > tot[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// markBest marks the best numeric cells of every ranked row; a row whose
// numbers are all equal, or that has fewer than two, has no best.
func (c *Comparison) markBest() {
	for i := range c.Rows {
		r := &c.Rows[i]
		if r.Better == BetterNone {
			continue
		}
		n := 0
		best := 0.0
		for _, cell := range r.Cells {
			if !cell.HasNum {
				continue
			}
			if n == 0 || (r.Better == BetterLower && cell.Num < best) || (r.Better == BetterHigher && cell.Num > best) {
				best = cell.Num
			}
			n++
		}
		if n < 2 {
			continue
		}
		all := true
		for _, cell := range r.Cells {
			if cell.HasNum && cell.Num != best {
				all = false
			}
		}
		if all {
			continue
		}
		for j := range r.Cells {
			if r.Cells[j].HasNum && r.Cells[j].Num == best {
				r.Cells[j].Best = true
			}
		}
	}
}

// MatrixComparison renders a lab matrix summary as a table of exhaustion
// rates: one row per client profile, one column per sysctl profile. A cell
// is the measured rate when the matrix ran --find-limit (the predicted one
// in parentheses), else the predicted rate; the best sysctl profile of
// each client is marked.
func MatrixComparison(m *Matrix) *Comparison {
	what := "predicted"
	if m.FindLimit {
		what = "measured (predicted)"
	}
	c := &Comparison{
		Title:  fmt.Sprintf("matrix %s: exhaustion rate, writes/s per target, %s; %d target(s)", m.ID, what, m.Targets),
		Corner: `client \ sysctl`,
	}
	for _, s := range m.Sysctls {
		c.Columns = append(c.Columns, Column{ID: s, Label: s})
	}
	for _, cl := range m.Clients {
		r := Row{Section: "client", Figure: cl, Unit: "writes/s per target", Better: BetterHigher}
		for _, s := range m.Sysctls {
			cell, ok := m.Cell(cl, s)
			r.Cells = append(r.Cells, matrixCell(cell, ok, m.FindLimit))
		}
		c.Rows = append(c.Rows, r)
	}
	c.markBest()
	for _, cell := range m.Cells {
		if cell.Error != "" {
			c.Notes = append(c.Notes, fmt.Sprintf("%s x %s: %s", cell.Client, cell.Sysctl, firstLine(cell.Error)))
		}
	}
	return c
}

func matrixCell(c MatrixCell, ok, find bool) Cell {
	if !ok {
		return txt("-")
	}
	if c.Error != "" && c.Result == "" {
		return txt("error")
	}
	v := func(p *float64) float64 {
		if p == nil {
			return math.Inf(1)
		}
		return *p
	}
	if find {
		return num(v(c.Measured), fmt.Sprintf("%s (%s)", fmtRate(v(c.Measured)), fmtRate(v(c.Predicted))))
	}
	return num(v(c.Predicted), fmtRate(v(c.Predicted)))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Formats of CompareReporter.
var Formats = []string{"text", "markdown", "csv", "json"}

// CompareReporter returns the Reporter of c in format (text, markdown, csv
// or json).
func CompareReporter(c *Comparison, format string) (Reporter, error) {
	switch format {
	case "text", "":
		return TextReporter(c), nil
	case "markdown", "md":
		return MarkdownReporter(c), nil
	case "csv":
		return CSVReporter(c), nil
	case "json":
		return JSONReporter(c), nil
	}
	return nil, fmt.Errorf("compare: bad format %q: want %s", format, strings.Join(Formats, ", "))
}

// FilesReporter compares loaded files in format: every matrix summary as
// its client x sysctl table, then all run documents side by side. In csv
// and json, several tables are written one after the other (csv: separated
// by an empty line; json: one array).
func FilesReporter(files []*File, format string) (Reporter, error) {
	var tables []*Comparison
	for _, f := range files {
		if f.Matrix != nil {
			tables = append(tables, MatrixComparison(f.Matrix))
		}
	}
	docs := Docs(files)
	if len(docs) > 0 {
		c := Compare(docs)
		for i := range c.Columns {
			for _, f := range files {
				if f.Doc == docs[i] {
					c.Columns[i].Path = f.Path
				}
			}
		}
		tables = append(tables, c)
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("compare: no result files")
	}
	if format == "json" {
		return func(w io.Writer) error {
			var out any = jsonTable(tables[0])
			if len(tables) > 1 {
				var all []jsonComparison
				for _, t := range tables {
					all = append(all, jsonTable(t))
				}
				out = all
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}, nil
	}
	var reps []Reporter
	for _, t := range tables {
		r, err := CompareReporter(t, format)
		if err != nil {
			return nil, err
		}
		reps = append(reps, r)
	}
	return func(w io.Writer) error {
		for i, r := range reps {
			if i > 0 {
				if _, err := io.WriteString(w, "\n"); err != nil {
					return err
				}
			}
			if err := r(w); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func figureName(r Row) string {
	if r.Unit != "" {
		return r.Figure + " (" + r.Unit + ")"
	}
	return r.Figure
}

// TextReporter writes c as an aligned text table, sections as headings and
// the best value of each row followed by "*".
func TextReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		var lines [][]string
		head := []string{c.Corner}
		for _, col := range c.Columns {
			head = append(head, col.ID)
		}
		lines = append(lines, head)
		runs := c.Corner == "figure"
		if runs {
			sub := []string{""}
			for _, col := range c.Columns {
				sub = append(sub, col.Label)
			}
			lines = append(lines, sub)
		}
		section := ""
		for _, r := range c.Rows {
			if r.Section != section && runs {
				section = r.Section
				lines = append(lines, []string{strings.ToUpper(section)})
			}
			name := r.Figure
			if runs {
				name = "  " + figureName(r)
			}
			line := []string{name}
			for _, cell := range r.Cells {
				t := cell.Text
				if cell.Best {
					t += " *"
				}
				line = append(line, t)
			}
			lines = append(lines, line)
		}
		widths := make([]int, len(c.Columns)+1)
		for _, l := range lines {
			if len(l) == 1 {
				continue // a section heading spans the row
			}
			for i, f := range l {
				widths[i] = max(widths[i], utf8.RuneCountInString(f))
			}
		}
		var b strings.Builder
		if c.Title != "" {
			b.WriteString(c.Title + "\n")
		}
		for _, l := range lines {
			var sb strings.Builder
			for i, f := range l {
				sb.WriteString(f)
				if i < len(l)-1 {
					sb.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(f)+2))
				}
			}
			b.WriteString(strings.TrimRight(sb.String(), " ") + "\n")
		}
		b.WriteString("* best of the row\n")
		for _, n := range c.Notes {
			b.WriteString("note: " + n + "\n")
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "_", `\_`).Replace(s)
}

// MarkdownReporter writes c as a GitHub-flavoured markdown table with the
// best value of each row in bold.
func MarkdownReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		if c.Title != "" {
			fmt.Fprintf(w, "**%s**\n\n", mdEscape(c.Title))
		}
		fmt.Fprintf(w, "| %s |", mdEscape(c.Corner))
		for _, col := range c.Columns {
			h := "`" + col.ID + "`"
			if col.Label != col.ID {
				h += "<br>" + mdEscape(col.Label)
			}
			fmt.Fprintf(w, " %s |", h)
		}
		fmt.Fprint(w, "\n|---|")
		for range c.Columns {
			fmt.Fprint(w, "--:|")
		}
		fmt.Fprintln(w)
		section := ""
		for _, r := range c.Rows {
			if r.Section != section && c.Corner == "figure" {
				section = r.Section
				fmt.Fprintf(w, "| **%s** |%s\n", mdEscape(section), strings.Repeat(" |", len(c.Columns)))
			}
			name := mdEscape(r.Figure)
			if c.Corner == "figure" {
				name = mdEscape(figureName(r))
			}
			fmt.Fprintf(w, "| %s |", name)
			for _, cell := range r.Cells {
				t := mdEscape(cell.Text)
				if cell.Best {
					t = "**" + t + "**"
				}
				fmt.Fprintf(w, " %s |", t)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Best value of each row in **bold**.")
		for _, n := range c.Notes {
			fmt.Fprintf(w, "\n_%s_\n", mdEscape(n))
		}
		return nil
	}
}

// CSVReporter writes c as CSV for a spreadsheet: a header row (section,
// figure, unit, one column per run id, best), then one row per figure with
// plain numbers (no unit suffixes, "inf" for never) and, in the best
// column, the ids of the best runs separated by spaces.
func CSVReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		cw := csv.NewWriter(w)
		head := []string{"section", "figure", "unit"}
		if c.Corner != "figure" {
			head[1] = c.Corner
		}
		for _, col := range c.Columns {
			head = append(head, col.ID)
		}
		head = append(head, "best")
		if err := cw.Write(head); err != nil {
			return err
		}
		for _, r := range c.Rows {
			rec := []string{r.Section, r.Figure, r.Unit}
			var best []string
			for i, cell := range r.Cells {
				v := cell.Text
				if cell.HasNum && c.Corner == "figure" {
					v = csvNum(cell.Num)
				}
				if v == "-" {
					v = ""
				}
				rec = append(rec, v)
				if cell.Best {
					best = append(best, c.Columns[i].ID)
				}
			}
			rec = append(rec, strings.Join(best, " "))
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	}
}

func csvNum(v float64) string {
	if math.IsInf(v, 1) {
		return "inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

type jsonCell struct {
	Text string   `json:"text"`
	Num  *float64 `json:"value"`
	Inf  bool     `json:"never,omitempty"`
	Best bool     `json:"best,omitempty"`
}

type jsonRow struct {
	Section string     `json:"section"`
	Figure  string     `json:"figure"`
	Unit    string     `json:"unit,omitempty"`
	Better  string     `json:"better,omitempty"`
	Cells   []jsonCell `json:"cells"`
	Best    []string   `json:"best,omitempty"`
}

type jsonComparison struct {
	Title   string    `json:"title,omitempty"`
	Corner  string    `json:"corner"`
	Columns []Column  `json:"columns"`
	Rows    []jsonRow `json:"rows"`
	Notes   []string  `json:"notes,omitempty"`
}

func jsonTable(c *Comparison) jsonComparison {
	out := jsonComparison{Title: c.Title, Corner: c.Corner, Columns: c.Columns, Notes: c.Notes}
	for _, r := range c.Rows {
		jr := jsonRow{Section: r.Section, Figure: r.Figure, Unit: r.Unit, Better: r.Better.String()}
		for i, cell := range r.Cells {
			jc := jsonCell{Text: cell.Text, Best: cell.Best}
			if cell.HasNum {
				if math.IsInf(cell.Num, 1) {
					jc.Inf = true
				} else {
					v := cell.Num
					jc.Num = &v
				}
			}
			if cell.Best {
				jr.Best = append(jr.Best, c.Columns[i].ID)
			}
			jr.Cells = append(jr.Cells, jc)
		}
		out.Rows = append(out.Rows, jr)
	}
	return out
}

// JSONReporter writes c as indented JSON: columns, and rows whose cells
// carry the text, the number (null when none; "never": true for an
// infinite rate) and the best flag.
func JSONReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonTable(c))
	}
}
