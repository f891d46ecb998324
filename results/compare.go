package results

import (
	"fmt"
	"math"
	"strconv"
	"strings"
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

func txt(s string) Cell { return Cell{Text: s} }

func intCell(v int64) Cell { return num(float64(v), strconv.FormatInt(v, 10)) }

func floatCell(v float64) Cell { return num(v, fmtNum(v)) }

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
var PortErrorClasses = []string{ClassEADDRNOTAVAIL, ClassEADDRINUSE}

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

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
