package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/lab"
)

// labCommand is `loadcap lab`: housekeeping for the network-namespace lab.
func labCommand() *cli.Command {
	return &cli.Command{
		Name:  "lab",
		Usage: "manage the network-namespace lab used by run --lab",
		Subcommands: []*cli.Command{
			{
				Name:      "cleanup",
				Usage:     "remove namespaces and links left by earlier lab runs",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.BoolFlag{
						Name:    "dry-run",
						Usage:   "list the leftovers without removing them",
						EnvVars: []string{"LOADCAP_LAB_DRY_RUN"},
					},
				},
				Action: labCleanup,
			},
		},
	}
}

func labCleanup(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("lab cleanup: unexpected argument %q", c.Args().First())
	}
	w := c.App.Writer
	if c.Bool("dry-run") {
		left, err := lab.Leftovers()
		if err != nil {
			return err
		}
		for _, lo := range left {
			state := "leftover"
			if lo.Live {
				state = fmt.Sprintf("in use by pid %d", lo.OwnerPID)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", lo.Kind, lo.Name, state)
		}
		if len(left) == 0 {
			fmt.Fprintln(w, "no lab leftovers")
		}
		return nil
	}
	removed, err := lab.Cleanup()
	if errors.Is(err, lab.ErrNotPermitted) {
		return cli.Exit(err.Error(), 2)
	}
	for _, name := range removed {
		fmt.Fprintln(w, "removed", name)
	}
	if err != nil {
		return err
	}
	if len(removed) == 0 {
		fmt.Fprintln(w, "no lab leftovers")
	}
	return nil
}
