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
				Usage:     "one line per result file (default ./results): id, time, targets, client, sysctl, achieved rate, errors, predicted and measured limit",
				ArgsUsage: "[RESULT...] (files, directories of *.json, or glob patterns)",
				Action: func(c *cli.Context) error {
					args := c.Args().Slice()
					if len(args) == 0 {
						args = []string{"./results"}
					}
					entries, err := results.List(args...)
					if err != nil {
						return badInput("%v", err)
					}
					return results.ListReporter(entries)(os.Stdout)
				},
			},
		},
	}
}
