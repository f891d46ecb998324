package capacity

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loadcap/loadcap/profiles"
)

// Table is the client x sysctl prediction matrix of `loadcap capacity`:
// one row per client profile, one cell per sysctl profile. Its JSON is the
// command's --json output; WriteText prints the table.
type Table struct {
	// FirewallIdleS is --firewall-idle in seconds (0: not asked).
	FirewallIdleS float64 `json:"firewall_idle_s,omitempty"`
	// NAT is the translator in front of the clients (nil: none).
	NAT *TableNAT `json:"nat,omitempty"`
	// Rate is the write rate asked about (--rate), writes/s per target (per
	// client behind a NAT); 0: not asked.
	Rate     float64    `json:"rate,omitempty"`
	Targets  int        `json:"targets"`
	Loopback bool       `json:"loopback"`
	Clients  []string   `json:"clients"`
	Sysctls  []string   `json:"sysctls"`
	Rows     []TableRow `json:"rows"`
}

// TableRow is one client profile's predictions, a cell per sysctl profile.
type TableRow struct {
	Client string      `json:"client"`
	Cells  []TableCell `json:"cells"`
}

// TableCell is one prediction: a client profile on a sysctl profile.
type TableCell struct {
	Sysctl         string   `json:"sysctl"`
	PortsAvailable int      `json:"ports_available"`
	SharedPool     bool     `json:"shared_pool"`
	HoldS          *float64 `json:"time_wait_hold_s"`
	NewConnsPerW   float64  `json:"new_conns_per_write"`
	ExhaustionRate *float64 `json:"predicted_exhaustion_rate"` // null: never
	Limit          string   `json:"limit"`
	Explanation    string   `json:"explanation"`
	// SurvivesIdle answers --firewall-idle (absent without it).
	SurvivesIdle *bool  `json:"survives_firewall_idle,omitempty"`
	IdleWhy      string `json:"firewall_idle_explanation,omitempty"`
	// NAT is the stage behind a translator (with TableOptions.NAT).
	NAT *TableNATCell `json:"nat,omitempty"`
	// Headroom is the exhaustion rate (the NAT stage's, behind a NAT) over
	// the asked Rate: below 1 the ports run out at that rate; absent when
	// no rate was asked or the ports never run out.
	Headroom *float64 `json:"headroom,omitempty"`
}

// limit is the rate at which the cell runs out: behind a NAT the lower
// stage's, else the client's own (nil: never).
func (c TableCell) limit() *float64 {
	if c.NAT != nil {
		return c.NAT.ExhaustionRate
	}
	return c.ExhaustionRate
}

// TableOptions are what a Table is built from: the profiles by name (each
// list in the order of its names) and the question asked of them.
type TableOptions struct {
	ClientNames []string
	// Clients are the loaded client profiles, one per ClientNames entry.
	Clients     []*profiles.Client
	SysctlNames []string
	// Kernels are the sysctl profiles' kernels, one per SysctlNames entry.
	Kernels []Kernel
	// Targets is the number of destinations every write goes to (>= 1).
	Targets  int
	Loopback bool
	// FirewallIdle, when above 0, adds whether each client's pooled
	// connections survive a firewall dropping flows idle this long.
	FirewallIdle time.Duration
	// NAT, when set, adds the stage behind that translator.
	NAT *NAT
	// Rate, when above 0, is a write rate per target (per client behind a
	// NAT) to judge: each cell's headroom at it.
	Rate float64
}

// NewTable predicts every client x sysctl cell of o.
func NewTable(o TableOptions) *Table {
	t := &Table{Targets: o.Targets, Loopback: o.Loopback, Clients: o.ClientNames, Sysctls: o.SysctlNames, FirewallIdleS: o.FirewallIdle.Seconds(), Rate: o.Rate}
	if o.NAT != nil {
		t.NAT = newTableNAT(o.NAT)
	}
	for i, p := range o.Clients {
		row := TableRow{Client: o.ClientNames[i]}
		cl := ClientFromProfile(p)
		for j, k := range o.Kernels {
			in := Input{Kernel: k, Client: cl, Targets: o.Targets, Loopback: o.Loopback}
			pr := Predict(in)
			cell := TableCell{
				Sysctl: o.SysctlNames[j], PortsAvailable: pr.PortsAvailable, SharedPool: pr.SharedPool,
				HoldS: finite(pr.HoldS), NewConnsPerW: cl.NewConnsPerWrite, ExhaustionRate: finite(pr.ExhaustionRate),
				Limit: pr.Limit, Explanation: pr.Explanation,
			}
			if o.NAT != nil {
				cell.NAT = natCellOf(PredictNAT(in, *o.NAT))
			}
			if o.FirewallIdle > 0 {
				ok, why := SurvivesIdle(p, k, o.FirewallIdle)
				cell.SurvivesIdle, cell.IdleWhy = &ok, why
			}
			if l := cell.limit(); o.Rate > 0 && l != nil {
				h := math.Round(*l/o.Rate*100) / 100
				cell.Headroom = &h
			}
			row.Cells = append(row.Cells, cell)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// finite is v, or nil (JSON null: never) when v is infinite or NaN.
func finite(v float64) *float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return nil
	}
	return &v
}

// WriteText prints the table: the exhaustion matrix, the NAT matrix and
// the firewall-idle matrix when asked, then each client's explanations.
// It returns the first write error.
func (t *Table) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	t.writeText(ew)
	return ew.err
}

func (t *Table) writeText(w io.Writer) {
	where := "remote"
	if t.Loopback {
		where = "loopback"
	}
	fmt.Fprintf(w, "predicted port exhaustion, writes/s per target (%d %s target(s); never = ports do not run out; churn = depends on the pool's measured churn)\n\n", t.Targets, where)
	t.writeMatrix(w, func(cell TableCell) string {
		rate := "never"
		if cell.Limit == LimitPoolChurn && cell.ExhaustionRate == nil {
			rate = "churn"
		}
		if cell.ExhaustionRate != nil {
			rate = FormatRate(*cell.ExhaustionRate)
		}
		return rate + " " + cell.Limit
	})
	if t.NAT != nil {
		t.writeNAT(w)
	}
	if t.Rate > 0 {
		t.writeRate(w)
	}
	if t.FirewallIdleS > 0 {
		fmt.Fprintf(w, "pooled connections behind a firewall that drops flows idle for %gs:\n\n", t.FirewallIdleS)
		t.writeMatrix(w, func(cell TableCell) string {
			if *cell.SurvivesIdle {
				return "survives"
			}
			return "dies"
		})
		for _, r := range t.Rows {
			seen := map[string]bool{}
			for _, cell := range r.Cells {
				if !seen[cell.IdleWhy] {
					seen[cell.IdleWhy] = true
					fmt.Fprintf(w, "  %s [%s]: %s\n", r.Client, cell.Sysctl, cell.IdleWhy)
				}
			}
		}
		fmt.Fprintln(w)
	}
	for _, r := range t.Rows {
		fmt.Fprintf(w, "%s:\n", r.Client)
		// Cells with the same explanation share one line.
		var order []string
		cols := map[string][]string{}
		for _, cell := range r.Cells {
			if _, ok := cols[cell.Explanation]; !ok {
				order = append(order, cell.Explanation)
			}
			cols[cell.Explanation] = append(cols[cell.Explanation], cell.Sysctl)
		}
		for _, e := range order {
			fmt.Fprintf(w, "  [%s] %s\n", strings.Join(cols[e], ", "), e)
		}
	}
}

// writeRate prints, for the asked rate, each cell's headroom (the
// exhaustion rate over the rate) and, behind a NAT, the stage that runs
// out first; "runs out" where the rate is past the limit.
func (t *Table) writeRate(w io.Writer) {
	per := "writes/s per target"
	if t.NAT != nil {
		per = "writes/s per client per target"
	}
	fmt.Fprintf(w, "at %s %s: headroom (exhaustion rate / rate; below 1x the ports run out)\n\n", FormatRate(t.Rate), per)
	t.writeMatrix(w, func(cell TableCell) string {
		if cell.Headroom == nil {
			return "never"
		}
		v := fmt.Sprintf("%.3gx", *cell.Headroom)
		if *cell.Headroom < 1 {
			v = "runs out (" + v + ")"
		}
		if cell.NAT != nil {
			v += " " + cell.NAT.Binds
		}
		return v
	})
}

// writeMatrix prints one client x sysctl table, a cell per prediction,
// followed by a blank line.
func (t *Table) writeMatrix(w io.Writer, cell func(TableCell) string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "client \\ sysctl")
	for _, s := range t.Sysctls {
		fmt.Fprintf(tw, "\t%s", s)
	}
	fmt.Fprintln(tw)
	for _, r := range t.Rows {
		fmt.Fprint(tw, r.Client)
		for _, c := range r.Cells {
			fmt.Fprintf(tw, "\t%s", cell(c))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// errWriter keeps the first error of w and writes nothing after it.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
