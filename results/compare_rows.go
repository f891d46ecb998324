package results

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

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

// MatrixComparison renders a lab matrix summary as tables of exhaustion
// rates, one per target count: one row per client profile, one column per
// sysctl profile. A cell is the measured rate when the matrix ran
// --find-limit (the predicted one in parentheses), and each client has two
// more rows, the prediction's difference from the measured rate in % and
// the bracket (the highest rate that held, the lowest that ran out); else
// the predicted rate. The best sysctl profile of each client is marked.
func MatrixComparison(m *Matrix) []*Comparison {
	what := "predicted"
	if m.FindLimit {
		what = "measured (predicted)"
	}
	var out []*Comparison
	for _, n := range m.Counts() {
		c := &Comparison{
			Title:  fmt.Sprintf("matrix %s: exhaustion rate, writes/s per target, %s; %d target(s)", m.ID, what, n),
			Corner: `client \ sysctl`,
		}
		for _, s := range m.Sysctls {
			c.Columns = append(c.Columns, Column{ID: s, Label: s})
		}
		for _, cl := range m.Clients {
			r := Row{Section: "client", Figure: cl, Unit: "writes/s per target", Better: BetterHigher}
			diff := Row{Section: "client", Figure: cl + " diff", Unit: "%"}
			br := Row{Section: "client", Figure: cl + " bracket", Unit: "writes/s per target"}
			for _, s := range m.Sysctls {
				cell, ok := m.CellAt(n, cl, s)
				r.Cells = append(r.Cells, matrixCell(cell, ok, m.FindLimit))
				diff.Cells = append(diff.Cells, txt("-"))
				if d, ok := cell.DiffPct(); ok && (cell.Error == "" || cell.Result != "") {
					diff.Cells[len(diff.Cells)-1] = num(d, fmt.Sprintf("%+.1f %%", d))
				}
				br.Cells = append(br.Cells, txt(nonempty(cell.Bracket(fmtRate), "-")))
			}
			c.Rows = append(c.Rows, r)
			if m.FindLimit {
				c.Rows = append(c.Rows, diff, br)
			}
		}
		c.markBest()
		for _, cell := range m.Cells {
			if cell.Error != "" && m.CellTargets(cell) == n {
				c.Notes = append(c.Notes, fmt.Sprintf("%s x %s: %s", cell.Client, cell.Sysctl, firstLine(cell.Error)))
			}
		}
		out = append(out, c)
	}
	return out
}

func nonempty(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
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
