package main

import (
	"encoding/json"
	"os"
	"strings"

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
			&cli.StringFlag{Name: "rate", EnvVars: []string{"LOADCAP_CAPACITY_RATE"}, Usage: "also give each cell's headroom at this write rate, writes/s per target (per client behind --nat-ports), e.g. 50 or 1.5k"},
		}, natFlags()...),
		Action: capacityAction,
	}
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
	var rate float64
	if c.IsSet("rate") {
		if rate, err = capacity.ParseRate(c.String("rate")); err != nil {
			return badInput("--rate: %v", err)
		}
	}
	table := capacity.NewTable(capacity.TableOptions{
		ClientNames: clientNames, Clients: clients, SysctlNames: sysctlNames, Kernels: kernels,
		Targets: targets, Loopback: c.Bool("loopback"), FirewallIdle: idle, NAT: nat, Rate: rate,
	})
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(table)
	}
	return table.WriteText(os.Stdout)
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
