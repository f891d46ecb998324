package results

import (
	"fmt"
	"io"
	"strings"
)

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "*", `\*`, "_", `\_`).Replace(s)
}

// MarkdownReporter writes c as a GitHub-flavoured markdown table with the
// best value of each row in bold.
func MarkdownReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		if c.Title != "" {
			fmt.Fprintf(w, "**%s**\n\n", mdEscape(c.Title))
		}
		fmt.Fprintf(w, "| %s |", mdEscape(c.Corner))
		for _, col := range c.Columns {
			h := "`" + col.ID + "`"
			if col.Label != col.ID {
				h += "<br>" + mdEscape(col.Label)
			}
			fmt.Fprintf(w, " %s |", h)
		}
		fmt.Fprint(w, "\n|---|")
		for range c.Columns {
			fmt.Fprint(w, "--:|")
		}
		fmt.Fprintln(w)
		section := ""
		for _, r := range c.Rows {
			if r.Section != section && c.Corner == "figure" {
				section = r.Section
				fmt.Fprintf(w, "| **%s** |%s\n", mdEscape(section), strings.Repeat(" |", len(c.Columns)))
			}
			name := mdEscape(r.Figure)
			if c.Corner == "figure" {
				name = mdEscape(figureName(r))
			}
			fmt.Fprintf(w, "| %s |", name)
			for _, cell := range r.Cells {
				t := mdEscape(cell.Text)
				if cell.Best {
					t = "**" + t + "**"
				}
				fmt.Fprintf(w, " %s |", t)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Best value of each row in **bold**.")
		for _, n := range c.Notes {
			fmt.Fprintf(w, "\n_%s_\n", mdEscape(n))
		}
		return nil
	}
}
