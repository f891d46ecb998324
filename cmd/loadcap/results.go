package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/results"
)

func resultsCommand() *cli.Command {
	return &cli.Command{
		Name:  "results",
		Usage: "list and check saved result files",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "one line per result file of DIR (default ./results): id, time, targets, client, sysctl, achieved rate, errors, predicted and measured limit",
				ArgsUsage: "[DIR]",
				Action: func(c *cli.Context) error {
					dir := "./results"
					if c.NArg() > 1 {
						return badInput("results list: want at most one directory, got %d arguments", c.NArg())
					}
					if c.NArg() == 1 {
						dir = c.Args().First()
					}
					entries, err := results.List(dir)
					if err != nil {
						return badInput("%v", err)
					}
					return results.ListReporter(entries)(os.Stdout)
				},
			},
		},
	}
}
