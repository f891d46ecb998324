package main

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/results"
)

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "side-by-side table of result files (text, markdown, csv, json); a matrix summary as its client x sysctl table",
		ArgsUsage: "RESULT... (files, directories or glob patterns)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "text", EnvVars: env("FORMAT"), Usage: "output format: " + strings.Join(results.Formats, ", ")},
		},
		Action: func(c *cli.Context) error {
			args, flags, err := trailingFlags(c.Args().Slice(), map[string]string{"-f": "format", "--format": "format", "-format": "format"})
			if err != nil {
				return badInput("compare: %v", err)
			}
			if len(args) == 0 {
				return badInput("compare: no result files given: loadcap compare RESULT... (files, directories or globs)")
			}
			format := c.String("format")
			if v, ok := flags["format"]; ok {
				format = v
			}
			files, err := results.LoadAll(args)
			if err != nil {
				return badInput("%v", err)
			}
			rep, err := results.FilesReporter(files, format)
			if err != nil {
				return badInput("%v", err)
			}
			if err := rep(os.Stdout); err != nil {
				return cli.Exit("compare: "+err.Error(), 1)
			}
			return nil
		},
	}
}
