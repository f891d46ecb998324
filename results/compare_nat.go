package results

import "fmt"

// natRows adds the NAT stage of NAT lab runs (--lab-nat-ports) beside the
// client's own figures: the translated ports, how many were held at the
// peak, the conntrack TIME_WAIT entries and the router's drops.
func natRows(c *Comparison, docs []*Document) {
	add := sectionAdder(c, docs, "nat", func(d *Document) *NAT { return d.NAT })
	add("clients behind the NAT", "namespaces", BetterNone, func(n *NAT) Cell { return intCell(int64(n.Clients)) })
	add("translated ports", "per destination", BetterHigher, func(n *NAT) Cell { return intCell(int64(n.Ports)) })
	add("conntrack TIME_WAIT timeout", "s", BetterNone, func(n *NAT) Cell {
		if v, ok := n.RouterSysctls["net.netfilter.nf_conntrack_tcp_timeout_time_wait"]; ok {
			return txt(v)
		}
		return txt("-")
	})
	add("peak translated ports in use", "open or closing flows, busiest destination", BetterLower, func(n *NAT) Cell {
		return num(float64(n.PeakHeld), fmt.Sprintf("%d of %d", n.PeakHeld, n.Ports))
	})
	add("peak conntrack TIME_WAIT", "entries, busiest destination", BetterLower, func(n *NAT) Cell {
		peak := 0
		for _, s := range n.Samples {
			peak = max(peak, s.TimeWait)
		}
		return intCell(int64(peak))
	})
	add("peak conntrack entries", "whole table", BetterLower, func(n *NAT) Cell { return intCell(int64(n.PeakEntries)) })
	add("router drops", "conntrack drop (SYNs the translator dropped)", BetterLower, func(n *NAT) Cell { return intCell(int64(n.Drop)) })
	add("router insert_failed", "", BetterLower, func(n *NAT) Cell { return intCell(int64(n.InsertFailed)) })
	add("router early_drop", "table full", BetterLower, func(n *NAT) Cell { return intCell(int64(n.EarlyDrop)) })
}

// natSummary is the NAT stage of a run's summary in the HTML report
// (nothing without a NAT).
func natSummary(d *Document) []summaryValue {
	n := d.NAT
	if n == nil {
		return nil
	}
	tw := 0
	for _, s := range n.Samples {
		tw = max(tw, s.TimeWait)
	}
	return []summaryValue{
		{"NAT ports in use", fmt.Sprintf("%d of %d (%d clients)", n.PeakHeld, n.Ports, n.Clients)},
		{"NAT conntrack TIME_WAIT", fmt.Sprint(tw)},
		{"NAT drops", fmt.Sprintf("%d (insert_failed %d, early_drop %d)", n.Drop, n.InsertFailed, n.EarlyDrop)},
	}
}

// sectionAdder returns a function that adds a row of section to c: one cell
// per document from the part get picks, "-" where a document has none.
func sectionAdder[T any](c *Comparison, docs []*Document, section string, get func(*Document) *T) func(fig, unit string, better Better, f func(*T) Cell) {
	return func(fig, unit string, better Better, f func(*T) Cell) {
		r := Row{Section: section, Figure: fig, Unit: unit, Better: better}
		for _, d := range docs {
			if x := get(d); x != nil {
				r.Cells = append(r.Cells, f(x))
				continue
			}
			r.Cells = append(r.Cells, txt("-"))
		}
		c.Rows = append(c.Rows, r)
	}
}
