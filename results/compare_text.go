package results

import (
	"io"
	"strings"
	"unicode/utf8"
)

func figureName(r Row) string {
	if r.Unit != "" {
		return r.Figure + " (" + r.Unit + ")"
	}
	return r.Figure
}

// TextReporter writes c as an aligned text table, sections as headings and
// the best value of each row followed by "*".
func TextReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		var lines [][]string
		head := []string{c.Corner}
		for _, col := range c.Columns {
			head = append(head, col.ID)
		}
		lines = append(lines, head)
		runs := c.Corner == "figure"
		if runs {
			sub := []string{""}
			for _, col := range c.Columns {
				sub = append(sub, col.Label)
			}
			lines = append(lines, sub)
		}
		section := ""
		for _, r := range c.Rows {
			if r.Section != section && runs {
				section = r.Section
				lines = append(lines, []string{strings.ToUpper(section)})
			}
			name := r.Figure
			if runs {
				name = "  " + figureName(r)
			}
			line := []string{name}
			for _, cell := range r.Cells {
				t := cell.Text
				if cell.Best {
					t += " *"
				}
				line = append(line, t)
			}
			lines = append(lines, line)
		}
		widths := make([]int, len(c.Columns)+1)
		for _, l := range lines {
			if len(l) == 1 {
				continue // a section heading spans the row
			}
			for i, f := range l {
				widths[i] = max(widths[i], utf8.RuneCountInString(f))
			}
		}
		var b strings.Builder
		if c.Title != "" {
			b.WriteString(c.Title + "\n")
		}
		for _, l := range lines {
			var sb strings.Builder
			for i, f := range l {
				sb.WriteString(f)
				if i < len(l)-1 {
					sb.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(f)+2))
				}
			}
			b.WriteString(strings.TrimRight(sb.String(), " ") + "\n")
		}
		b.WriteString("* best of the row\n")
		for _, n := range c.Notes {
			b.WriteString("note: " + n + "\n")
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
}
