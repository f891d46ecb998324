package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/profiles"
)

// capacityCommand is `loadcap capacity`: the modelled exhaustion rate for
// client profiles x sysctl profiles at a target count; no traffic is sent.
func capacityCommand() *cli.Command {
	return &cli.Command{
		Name:  "capacity",
		Usage: "print the predicted port-exhaustion rate per client x sysctl profile (no traffic sent)",
		Description: "Rows are client profiles, columns sysctl profiles; cells are writes/s per target at which\n" +
			"the client runs out of local ports, and the binding constraint. File sysctl profiles are\n" +
			"applied on top of the Linux defaults (as in a fresh --lab namespace); host reads /proc/sys.\n" +
			"A key of a sysctl profile file that this kernel lacks (a typo such as ip_local_port_rang) is\n" +
			"ignored, as the lab ignores it, with a warning on stderr naming its file, line and key.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "client", EnvVars: []string{"LOADCAP_CLIENT"}, Usage: "comma-separated client profile names or files (default: every built-in and profiles-dir client profile)"},
			&cli.StringFlag{Name: "sysctl", EnvVars: []string{"LOADCAP_SYSCTL"}, Usage: "comma-separated sysctl profile names or files (default: every built-in and profiles-dir sysctl profile)"},
			profilesDirFlag(),
			&cli.IntFlag{Name: "targets", Value: 1, EnvVars: []string{"LOADCAP_TARGETS_COUNT"}, Usage: "number of destinations every write goes to"},
			&cli.BoolFlag{Name: "loopback", EnvVars: []string{"LOADCAP_LOOPBACK"}, Usage: "targets are on loopback (tcp_tw_reuse=2 applies)"},
			&cli.DurationFlag{Name: "firewall-idle", EnvVars: []string{"LOADCAP_FIREWALL_IDLE"}, Usage: "also say whether each client's pooled connections survive a stateful firewall that drops flows idle this long"},
			&cli.BoolFlag{Name: "json", EnvVars: []string{"LOADCAP_JSON"}, Usage: "print JSON instead of the table"},
		}, natFlags()...),
		Action: capacityAction,
	}
}

// capacityCell is one prediction in the --json output.
type capacityCell struct {
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
	// NAT is the stage behind a translator (with --nat-ports).
	NAT *natCell `json:"nat,omitempty"`
}

type capacityRow struct {
	Client string         `json:"client"`
	Cells  []capacityCell `json:"cells"`
}

type capacityDoc struct {
	FirewallIdleS float64       `json:"firewall_idle_s,omitempty"`
	NAT           *natDoc       `json:"nat,omitempty"`
	Targets       int           `json:"targets"`
	Loopback      bool          `json:"loopback"`
	Clients       []string      `json:"clients"`
	Sysctls       []string      `json:"sysctls"`
	Rows          []capacityRow `json:"rows"`
}

func capacityAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("capacity: unexpected argument %q", c.Args().First())
	}
	targets := c.Int("targets")
	if targets < 1 {
		return badInput("bad --targets %d: want 1 or more", targets)
	}
	l, err := profileLoader(c, c.App.ErrWriter)
	if err != nil {
		return err
	}
	clientNames, err := profileList(c, l, profiles.KindClient)
	if err != nil {
		return err
	}
	sysctlNames, err := profileList(c, l, profiles.KindSysctl)
	if err != nil {
		return err
	}
	var clients []*profiles.Client
	for _, n := range clientNames {
		p, err := l.LoadClient(n)
		if err != nil {
			return badInput("bad --client: %v", err)
		}
		clients = append(clients, p)
	}
	var kernels []capacity.Kernel
	for _, n := range sysctlNames {
		s, err := l.LoadSysctl(n)
		if err != nil {
			return badInput("bad --sysctl: %v", err)
		}
		k, err := capacity.KernelFromSysctl(s.Map())
		if err != nil {
			return badInput("bad --sysctl %s: %v", n, err)
		}
		kernels = append(kernels, k)
	}
	idle := c.Duration("firewall-idle")
	if idle < 0 {
		return badInput("bad --firewall-idle %s: must not be negative", idle)
	}
	nat, err := natFromFlags(c)
	if err != nil {
		return err
	}
	doc := capacityDoc{Targets: targets, Loopback: c.Bool("loopback"), Clients: clientNames, Sysctls: sysctlNames, FirewallIdleS: idle.Seconds()}
	if nat != nil {
		doc.NAT = newNATDoc(nat)
	}
	for i, p := range clients {
		row := capacityRow{Client: clientNames[i]}
		cl := capacity.ClientFromProfile(p)
		for j, k := range kernels {
			in := capacity.Input{Kernel: k, Client: cl, Targets: targets, Loopback: doc.Loopback}
			pr := capacity.Predict(in)
			cell := capacityCell{
				Sysctl: sysctlNames[j], PortsAvailable: pr.PortsAvailable, SharedPool: pr.SharedPool,
				HoldS: finite(pr.HoldS), NewConnsPerW: cl.NewConnsPerWrite, ExhaustionRate: finite(pr.ExhaustionRate),
				Limit: pr.Limit, Explanation: pr.Explanation,
			}
			if nat != nil {
				cell.NAT = natCellOf(capacity.PredictNAT(in, *nat))
			}
			if idle > 0 {
				ok, why := capacity.SurvivesIdle(p, k, idle)
				cell.SurvivesIdle, cell.IdleWhy = &ok, why
			}
			row.Cells = append(row.Cells, cell)
		}
		doc.Rows = append(doc.Rows, row)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	printCapacity(os.Stdout, doc)
	return nil
}

func finite(v float64) *float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return nil
	}
	return &v
}

func printCapacity(w io.Writer, doc capacityDoc) {
	where := "remote"
	if doc.Loopback {
		where = "loopback"
	}
	fmt.Fprintf(w, "predicted port exhaustion, writes/s per target (%d %s target(s); never = ports do not run out; churn = depends on the pool's measured churn)\n\n", doc.Targets, where)
	printMatrix(w, doc, func(cell capacityCell) string {
		rate := "never"
		if cell.Limit == capacity.LimitPoolChurn && cell.ExhaustionRate == nil {
			rate = "churn"
		}
		if cell.ExhaustionRate != nil {
			rate = capacity.FormatRate(*cell.ExhaustionRate)
		}
		return rate + " " + cell.Limit
	})
	if doc.NAT != nil {
		printNAT(w, doc)
	}
	if doc.FirewallIdleS > 0 {
		fmt.Fprintf(w, "pooled connections behind a firewall that drops flows idle for %gs:\n\n", doc.FirewallIdleS)
		printMatrix(w, doc, func(cell capacityCell) string {
			if *cell.SurvivesIdle {
				return "survives"
			}
			return "dies"
		})
		for _, r := range doc.Rows {
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
	for _, r := range doc.Rows {
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

// printMatrix prints one client x sysctl table, a cell per prediction,
// followed by a blank line.
func printMatrix(w io.Writer, doc capacityDoc, cell func(capacityCell) string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "client \\ sysctl")
	for _, s := range doc.Sysctls {
		fmt.Fprintf(tw, "\t%s", s)
	}
	fmt.Fprintln(tw)
	for _, r := range doc.Rows {
		fmt.Fprint(tw, r.Client)
		for _, c := range r.Cells {
			fmt.Fprintf(tw, "\t%s", cell(c))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// profileList returns the names of --client or --sysctl (flag = kind), or
// every profile of that kind the loader reaches when the flag is not set.
func profileList(c *cli.Context, l profiles.Loader, kind string) ([]string, error) {
	if v := c.String(kind); v != "" {
		return splitList(kind, v)
	}
	names, err := l.Names(kind)
	if err != nil {
		return nil, badInput("%v", err)
	}
	return names, nil
}

// splitList splits a comma-separated flag value, rejecting empty items.
func splitList(flag, v string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, badInput("bad --%s %q: empty name in the list", flag, v)
		}
		out = append(out, s)
	}
	return out, nil
}
