package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/profiles"
)

// profilesCommand is `loadcap profiles list|show|lint`.
func profilesCommand() *cli.Command {
	kind := &cli.StringFlag{Name: "kind", EnvVars: []string{"LOADCAP_PROFILE_KIND"}, Usage: "client or sysctl, when a name or file is ambiguous"}
	jsonFlag := &cli.BoolFlag{Name: "json", EnvVars: []string{"LOADCAP_JSON"}, Usage: "print JSON"}
	return &cli.Command{
		Name:  "profiles",
		Usage: "list, show and lint client and sysctl profiles",
		Subcommands: []*cli.Command{
			{
				Name:   "list",
				Usage:  "list the built-in client and sysctl profiles",
				Flags:  []cli.Flag{jsonFlag},
				Action: profilesList,
			},
			{
				Name:      "show",
				Usage:     "print a profile (client profiles as TOML, sysctl profiles as a sysctl.d file)",
				ArgsUsage: "NAME|FILE",
				Flags:     []cli.Flag{kind, jsonFlag},
				Action:    profilesShow,
			},
			{
				Name:      "lint",
				Usage:     "say what each key of a sysctl profile does for the port budget on the running kernel",
				ArgsUsage: "NAME|FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "proc-sys", Value: "/proc/sys", EnvVars: []string{"LOADCAP_PROC_SYS"}, Usage: "sysctl tree of the kernel to check against"},
					jsonFlag,
				},
				Action: profilesLint,
			},
		},
	}
}

func profilesList(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("profiles list: unexpected argument %q", c.Args().First())
	}
	type item struct {
		Kind, Name, Description string
	}
	var items []item
	for _, n := range profiles.ClientNames() {
		p, err := profiles.LoadClient(n)
		if err != nil {
			return fmt.Errorf("list profiles: %w", err)
		}
		items = append(items, item{"client", n, p.Description})
	}
	for _, n := range profiles.SysctlNames() {
		d := "the live values of this network namespace (/proc/sys)"
		if n != profiles.HostProfile {
			s, err := profiles.LoadSysctl(n)
			if err != nil {
				return fmt.Errorf("list profiles: %w", err)
			}
			var kv []string
			for _, e := range s.Entries {
				kv = append(kv, strings.TrimPrefix(e.Key, "net.ipv4.")+"="+e.Value)
			}
			d = strings.Join(kv, " ")
		}
		items = append(items, item{"sysctl", n, d})
	}
	if c.Bool("json") {
		return writeJSON(items)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tDESCRIPTION")
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.Kind, it.Name, it.Description)
	}
	return tw.Flush()
}

// profileKind decides whether NAME|FILE is a client or a sysctl profile.
func profileKind(c *cli.Context, arg string) (string, error) {
	switch k := c.String("kind"); k {
	case "client", "sysctl":
		return k, nil
	case "":
	default:
		return "", badInput("bad --kind %q: want client or sysctl", k)
	}
	isClient := slices.Contains(profiles.ClientNames(), arg)
	isSysctl := slices.Contains(profiles.SysctlNames(), arg)
	switch {
	case isClient && isSysctl:
		return "", badInput("profile %q is both a client and a sysctl profile: add --kind", arg)
	case isClient || filepath.Ext(arg) == ".toml":
		return "client", nil
	case isSysctl || filepath.Ext(arg) == ".conf":
		return "sysctl", nil
	}
	return "", badInput("unknown profile %q: not a built-in (see loadcap profiles list); files end in .toml (client) or .conf (sysctl), or pass --kind", arg)
}

func oneArg(c *cli.Context, cmd string) (string, error) {
	if c.NArg() != 1 {
		return "", badInput("profiles %s: want one NAME or FILE, got %d arguments", cmd, c.NArg())
	}
	return c.Args().First(), nil
}

func profilesShow(c *cli.Context) error {
	arg, err := oneArg(c, "show")
	if err != nil {
		return err
	}
	kind, err := profileKind(c, arg)
	if err != nil {
		return err
	}
	if kind == "client" {
		p, err := profiles.LoadClient(arg)
		if err != nil {
			return badInput("%v", err)
		}
		if c.Bool("json") {
			return writeJSON(p)
		}
		fmt.Printf("# loadcap client profile %q\n", p.Name)
		return toml.NewEncoder(os.Stdout).Encode(p)
	}
	s, err := profiles.LoadSysctl(arg)
	if err != nil {
		return badInput("%v", err)
	}
	if c.Bool("json") {
		return writeJSON(s)
	}
	fmt.Print(s.Text())
	return nil
}

func profilesLint(c *cli.Context) error {
	arg, err := oneArg(c, "lint")
	if err != nil {
		return err
	}
	s, err := profiles.LoadSysctl(arg)
	if err != nil {
		return badInput("%v", err)
	}
	fs := profiles.Lint(s, c.String("proc-sys"))
	if c.Bool("json") {
		return writeJSON(fs)
	}
	fmt.Printf("lint of sysctl profile %s (%s) against %s\n\n", s.Name, s.Source, c.String("proc-sys"))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tKEY = VALUE\tVERDICT\tSCOPE\tWHAT IT DOES HERE")
	for _, f := range fs {
		line := "-"
		if f.Line > 0 {
			line = fmt.Sprint(f.Line)
		}
		mark := ""
		if f.Matters {
			mark = " *"
		}
		fmt.Fprintf(tw, "%s\t%s = %s\t%s%s\t%s\t%s\n", line, f.Key, f.Value, f.Verdict, mark, f.Scope, f.Message)
	}
	tw.Flush()
	if m := profiles.MostImportant(fs); m != nil {
		fmt.Printf("\nthe key that matters: %s = %s\n", m.Key, m.Value)
	} else {
		fmt.Printf("\nno key here raises the port budget\n")
	}
	return nil
}

func writeJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
