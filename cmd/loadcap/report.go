package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/loadcap/loadcap/results"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "one self-contained HTML page with plots of result files (several runs overlay)",
		ArgsUsage: "RESULT... (files, directories or glob patterns)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "report.html", EnvVars: env("REPORT_OUTPUT"), Usage: "HTML file to write (- for stdout)"},
			&cli.StringFlag{Name: "title", EnvVars: env("REPORT_TITLE"), Usage: "page title"},
		},
		Action: func(c *cli.Context) error {
			args, flags, err := trailingFlags(c.Args().Slice(), map[string]string{"-o": "output", "--output": "output", "-output": "output", "--title": "title", "-title": "title"})
			if err != nil {
				return badInput("report: %v", err)
			}
			if len(args) == 0 {
				return badInput("report: no result files given: loadcap report RESULT... -o report.html")
			}
			output, title := c.String("output"), c.String("title")
			if v, ok := flags["output"]; ok {
				output = v
			}
			if v, ok := flags["title"]; ok {
				title = v
			}
			files, err := results.LoadAll(args)
			if err != nil {
				return badInput("%v", err)
			}
			docs := results.Docs(files)
			if len(docs) == 0 {
				return badInput("report: no run results among the files (a matrix summary alone has nothing to plot: pass its cells' result files)")
			}
			rep, err := results.HTMLReporter(docs, results.ReportOptions{Title: title})
			if err != nil {
				return badInput("%v", err)
			}
			out := output
			if out == "-" {
				return rep(os.Stdout)
			}
			if err := results.WriteAtomic("write report", out, rep); err != nil {
				return outputError(err)
			}
			fmt.Fprintf(os.Stderr, "report: %s (%d runs)\n", out, len(docs))
			return nil
		},
	}
}

// trailingFlags pulls flags given after the positional arguments (urfave/cli
// stops at the first argument, but `loadcap report a.json b.json -o x.html`
// is the documented form). names maps each spelling (also as -x=v) to its
// flag name; "--" ends flag parsing.
func trailingFlags(args []string, names map[string]string) ([]string, map[string]string, error) {
	var rest []string
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			if name, known := names[k]; known {
				vals[name] = v
				continue
			}
		}
		name, known := names[a]
		if !known {
			if strings.HasPrefix(a, "-") && len(a) > 1 {
				return nil, nil, fmt.Errorf("unknown flag %s", a)
			}
			rest = append(rest, a)
			continue
		}
		if i+1 >= len(args) {
			return nil, nil, fmt.Errorf("flag %s needs a value", a)
		}
		vals[name] = args[i+1]
		i++
	}
	return rest, vals, nil
}
