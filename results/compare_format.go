package results

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Formats of CompareReporter.
var Formats = []string{"text", "markdown", "csv", "json"}

// CompareReporter returns the Reporter of c in format (text, markdown, csv
// or json).
func CompareReporter(c *Comparison, format string) (Reporter, error) {
	switch format {
	case "text", "":
		return TextReporter(c), nil
	case "markdown", "md":
		return MarkdownReporter(c), nil
	case "csv":
		return CSVReporter(c), nil
	case "json":
		return JSONReporter(c), nil
	}
	return nil, fmt.Errorf("compare: bad format %q: want %s", format, strings.Join(Formats, ", "))
}

// FilesReporter compares loaded files in format: every matrix summary as
// its client x sysctl table (one per target count), then all run documents side by side. In csv
// and json, several tables are written one after the other (csv: separated
// by an empty line; json: one array).
func FilesReporter(files []*File, format string) (Reporter, error) {
	var tables []*Comparison
	for _, f := range files {
		if f.Matrix != nil {
			tables = append(tables, MatrixComparison(f.Matrix)...)
		}
	}
	docs := Docs(files)
	if len(docs) > 0 {
		c := Compare(docs)
		for i := range c.Columns {
			for _, f := range files {
				if f.Doc == docs[i] {
					c.Columns[i].Path = f.Path
				}
			}
		}
		tables = append(tables, c)
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("compare: no result files")
	}
	if format == "json" {
		return func(w io.Writer) error {
			var out any = jsonTable(tables[0])
			if len(tables) > 1 {
				var all []jsonComparison
				for _, t := range tables {
					all = append(all, jsonTable(t))
				}
				out = all
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}, nil
	}
	var reps []Reporter
	for _, t := range tables {
		r, err := CompareReporter(t, format)
		if err != nil {
			return nil, err
		}
		reps = append(reps, r)
	}
	return func(w io.Writer) error {
		for i, r := range reps {
			if i > 0 {
				if _, err := io.WriteString(w, "\n"); err != nil {
					return err
				}
			}
			if err := r(w); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
