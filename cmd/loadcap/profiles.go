package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/profiles"
)

// profilesDirFlag is --profiles-dir of the commands that take profiles.
func profilesDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "profiles-dir", EnvVars: env("PROFILES_DIR"),
		Usage: "directory of user profiles, NAME.toml (client) and NAME.conf (sysctl), found by NAME after the built-ins (default: ./" + profiles.DefaultDir + " when it exists)"}
}

// profileLoader returns the Loader of --profiles-dir; warn receives the
// loader's warnings (nil: none).
func profileLoader(c *cli.Context, warn io.Writer) (profiles.Loader, error) {
	l, err := profiles.NewLoader(c.String("profiles-dir"), warn)
	if err != nil {
		return l, badInput("bad --profiles-dir: %v", err)
	}
	return l, nil
}

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
				Usage:  "list the built-in client and sysctl profiles and those of the profiles directory, with their source",
				Flags:  []cli.Flag{profilesDirFlag(), jsonFlag},
				Action: profilesList,
			},
			{
				Name:      "show",
				Usage:     "print a profile (client profiles as TOML, sysctl profiles as a sysctl.d file)",
				ArgsUsage: "NAME|FILE",
				Flags:     []cli.Flag{profilesDirFlag(), kind, jsonFlag},
				Action:    profilesShow,
			},
			{
				Name:      "lint",
				Usage:     "say what each key of a sysctl profile does for the port budget on the running kernel",
				ArgsUsage: "NAME|FILE",
				Flags: []cli.Flag{
					profilesDirFlag(),
					&cli.StringFlag{Name: "proc-sys", Value: "/proc/sys", EnvVars: []string{"LOADCAP_PROC_SYS"}, Usage: "sysctl tree of the kernel to check against"},
					jsonFlag,
				},
				Action: profilesLint,
			},
		},
	}
}

// listItem is one row of `profiles list` (the JSON keys are those of the
// first version: Kind, Name, Description).
type listItem struct {
	Kind, Name, Source, Description string
	Shadowed                        bool   `json:",omitempty"`
	Error                           string `json:",omitempty"`
}

func profilesList(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("profiles list: unexpected argument %q", c.Args().First())
	}
	l, err := profileLoader(c, nil)
	if err != nil {
		return err
	}
	ls, err := l.List()
	if err != nil {
		return badInput("%v", err)
	}
	var items []listItem
	var firstErr error
	for _, p := range ls {
		it := listItem{Kind: p.Kind, Name: p.Name, Source: p.Source, Shadowed: p.Shadowed}
		ref := p.Name
		if p.Source != profiles.SourceBuiltin {
			ref = p.Source
		}
		it.Description, err = describeProfile(l, p.Kind, ref)
		if err != nil {
			it.Error = err.Error()
			if firstErr == nil {
				firstErr = err
			}
		}
		items = append(items, it)
	}
	if c.Bool("json") {
		if err := writeJSON(items); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tNAME\tSOURCE\tDESCRIPTION")
		for _, it := range items {
			src, desc := it.Source, it.Description
			if it.Shadowed {
				src += " (shadowed by the built-in: load it by path)"
			}
			if it.Error != "" {
				desc = "INVALID: " + it.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Kind, it.Name, src, desc)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if firstErr != nil {
		return badInput("%v", firstErr)
	}
	return nil
}

// describeProfile loads a profile and says in one line what it is: a client
// profile's description, a sysctl profile's keys.
func describeProfile(l profiles.Loader, kind, ref string) (string, error) {
	if kind == profiles.KindClient {
		p, err := l.LoadClient(ref)
		if err != nil {
			return "", err
		}
		return p.Description, nil
	}
	if ref == profiles.HostProfile {
		return "the live values of this network namespace (/proc/sys)", nil
	}
	s, err := l.LoadSysctl(ref)
	if err != nil {
		return "", err
	}
	var kv []string
	for _, e := range s.Entries {
		kv = append(kv, strings.TrimPrefix(e.Key, "net.ipv4.")+"="+e.Value)
	}
	return strings.Join(kv, " "), nil
}

// profileKind decides whether NAME|FILE is a client or a sysctl profile.
func profileKind(c *cli.Context, l profiles.Loader, arg string) (string, error) {
	switch k := c.String("kind"); k {
	case profiles.KindClient, profiles.KindSysctl:
		return k, nil
	case "":
	default:
		return "", badInput("bad --kind %q: want client or sysctl", k)
	}
	clients, err := l.Names(profiles.KindClient)
	if err != nil {
		return "", badInput("%v", err)
	}
	sysctls, err := l.Names(profiles.KindSysctl)
	if err != nil {
		return "", badInput("%v", err)
	}
	isClient := slices.Contains(clients, arg)
	isSysctl := slices.Contains(sysctls, arg)
	switch {
	case isClient && isSysctl:
		return "", badInput("profile %q is both a client and a sysctl profile: add --kind", arg)
	case isClient || filepath.Ext(arg) == profiles.ClientExt:
		return profiles.KindClient, nil
	case isSysctl || filepath.Ext(arg) == profiles.SysctlExt:
		return profiles.KindSysctl, nil
	}
	return "", badInput("unknown profile %q: not a built-in nor in the profiles directory (see loadcap profiles list); files end in .toml (client) or .conf (sysctl), or pass --kind", arg)
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
	l, err := profileLoader(c, os.Stderr)
	if err != nil {
		return err
	}
	kind, err := profileKind(c, l, arg)
	if err != nil {
		return err
	}
	if kind == profiles.KindClient {
		p, err := l.LoadClient(arg)
		if err != nil {
			return badInput("%v", err)
		}
		if c.Bool("json") {
			return writeJSON(p)
		}
		fmt.Printf("# loadcap client profile %q\n", p.Name)
		return toml.NewEncoder(os.Stdout).Encode(p)
	}
	s, err := l.LoadSysctl(arg)
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
	// No warnings: lint itself says which keys the kernel lacks.
	l, err := profileLoader(c, nil)
	if err != nil {
		return err
	}
	s, err := l.LoadSysctl(arg)
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
