package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/fleet"
	"github.com/loadcap/loadcap/results"
)

// mergeCommand is `loadcap merge RESULT... -o merged.json`: the result files
// of one fleet run merged into one document (see package fleet).
func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "merge the result files of one fleet run (the shards of --shard I/N, one per host) into one document",
		ArgsUsage: "RESULT... (files, directories of *.json, or glob patterns)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "o", Aliases: []string{"output"}, EnvVars: env("MERGE_OUTPUT"), Usage: "file to write the merged document to (- for stdout)"},
			&cli.BoolFlag{Name: "force", EnvVars: env("MERGE_FORCE"), Usage: "merge runs whose configs differ or whose shards are incomplete (the differences are recorded in fleet.differences)"},
		},
		Action: mergeAction,
	}
}

func mergeAction(c *cli.Context) error {
	force := c.Bool("force")
	var rest []string
	for _, a := range c.Args().Slice() {
		switch a {
		case "--force", "-force", "--force=true", "-force=true":
			force = true
		default:
			rest = append(rest, a)
		}
	}
	args, flags, err := trailingFlags(rest, map[string]string{"-o": "o", "--o": "o", "--output": "o", "-output": "o"})
	if err != nil {
		return badInput("merge: %v", err)
	}
	out := c.String("o")
	if v, ok := flags["o"]; ok {
		out = v
	}
	if out == "" {
		return badInput("merge: no output given: loadcap merge RESULT... -o merged.json (- for stdout)")
	}
	if len(args) == 0 {
		return badInput("merge: no result files given: loadcap merge RESULT... -o merged.json")
	}
	files, err := results.LoadAll(args)
	if err != nil {
		return badInput("%v", err)
	}
	var in []fleet.Input
	for _, f := range files {
		if f.Doc == nil {
			return badInput("merge results: %s is a matrix summary, not a run", f.Path)
		}
		in = append(in, fleet.Input{Path: f.Path, Doc: f.Doc})
	}
	doc, err := fleet.Merge(in, fleet.Options{Force: force})
	if err != nil {
		var me *fleet.MismatchError
		if errors.As(err, &me) {
			return badInput("%v", err)
		}
		return cli.Exit(err.Error(), 1)
	}
	if out == "-" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return cli.Exit(fmt.Sprintf("write merged result: %v", err), 1)
		}
		return nil
	}
	if err := results.WriteFile(out, doc); err != nil {
		return outputError(err)
	}
	var ok, failed int64
	for _, t := range doc.Targets {
		ok += t.WritesOK
		failed += t.WritesFailed
	}
	fmt.Fprintf(c.App.Writer, "merged %d runs (%d hosts, start spread %d ms): %d writes ok, %d failed, %.2f writes/s per target -> %s\n",
		len(in), len(doc.Fleet.Hosts), doc.Fleet.StartSpreadMS, ok, failed, doc.AchievedRate, out)
	return nil
}
