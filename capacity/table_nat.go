package capacity

import (
	"fmt"
	"io"
)

// TableNATCell is the NAT stage of one Table cell.
type TableNATCell struct {
	Ports          int      `json:"translated_ports"`
	HoldS          float64  `json:"translated_port_hold_s"`
	NATRate        *float64 `json:"nat_exhaustion_rate"`       // null: never
	ConntrackRate  *float64 `json:"conntrack_exhaustion_rate"` // null: never
	ExhaustionRate *float64 `json:"predicted_exhaustion_rate"` // null: never
	Binds          string   `json:"binds,omitempty"`
	Failure        string   `json:"failure,omitempty"`
	Explanation    string   `json:"explanation"`
}

// TableNAT is the translator of a Table.
type TableNAT struct {
	PortLow       int     `json:"port_low"`
	PortHigh      int     `json:"port_high"`
	Addrs         int     `json:"addrs"`
	ConntrackTWS  float64 `json:"conntrack_time_wait_s"`
	ConntrackMax  int     `json:"conntrack_max"`
	Clients       int     `json:"clients"`
	EvictTimeWait bool    `json:"evicts_time_wait"`
}

func newTableNAT(n *NAT) *TableNAT {
	return &TableNAT{PortLow: n.PortLow, PortHigh: n.PortHigh, Addrs: n.Addrs, ConntrackTWS: n.ConntrackTimeWait.Seconds(),
		ConntrackMax: n.ConntrackMax, Clients: n.Clients, EvictTimeWait: !n.NoEvict}
}

func natCellOf(p NATPrediction) *TableNATCell {
	return &TableNATCell{Ports: p.NATPorts, HoldS: p.NATHoldS, NATRate: finite(p.NATRate), ConntrackRate: finite(p.ConntrackRate),
		ExhaustionRate: finite(p.ExhaustionRate), Binds: p.Binds, Failure: p.Failure, Explanation: p.Explanation}
}

// writeNAT prints the behind-NAT matrix ("rate stage" per cell) and one
// line per distinct explanation.
func (t *Table) writeNAT(w io.Writer) {
	n := t.NAT
	evict := "evicts conntrack TIME_WAIT entries when ports run out (this kernel)"
	if !n.EvictTimeWait {
		evict = "does not evict conntrack TIME_WAIT entries"
	}
	fmt.Fprintf(w, "behind NAT: %d clients sharing %d-%d x %d address(es), conntrack TIME_WAIT %gs, nf_conntrack_max %d, %s; writes/s per client per target and the stage that runs out first\n\n",
		n.Clients, n.PortLow, n.PortHigh, n.Addrs, n.ConntrackTWS, n.ConntrackMax, evict)
	t.writeMatrix(w, func(cell TableCell) string {
		if cell.NAT.ExhaustionRate == nil {
			return "never"
		}
		return FormatRate(*cell.NAT.ExhaustionRate) + " " + cell.NAT.Binds
	})
	for _, r := range t.Rows {
		seen := map[string]bool{}
		for _, cell := range r.Cells {
			if e := cell.NAT.Explanation; !seen[e] {
				seen[e] = true
				fmt.Fprintf(w, "  %s [%s]: %s\n", r.Client, cell.Sysctl, e)
			}
		}
	}
	fmt.Fprintln(w)
}
