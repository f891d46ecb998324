package results

import (
	"encoding/csv"
	"io"
	"math"
	"strconv"
	"strings"
)

// CSVReporter writes c as CSV for a spreadsheet: a header row (section,
// figure, unit, one column per run id, best), then one row per figure with
// plain numbers (no unit suffixes, "inf" for never) and, in the best
// column, the ids of the best runs separated by spaces.
func CSVReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		cw := csv.NewWriter(w)
		head := []string{"section", "figure", "unit"}
		if c.Corner != "figure" {
			head[1] = c.Corner
		}
		for _, col := range c.Columns {
			head = append(head, col.ID)
		}
		head = append(head, "best")
		if err := cw.Write(head); err != nil {
			return err
		}
		for _, r := range c.Rows {
			rec := []string{r.Section, r.Figure, r.Unit}
			var best []string
			for i, cell := range r.Cells {
				v := cell.Text
				if cell.HasNum && c.Corner == "figure" {
					v = csvNum(cell.Num)
				}
				if v == "-" {
					v = ""
				}
				rec = append(rec, v)
				if cell.Best {
					best = append(best, c.Columns[i].ID)
				}
			}
			rec = append(rec, strings.Join(best, " "))
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	}
}

func csvNum(v float64) string {
	if math.IsInf(v, 1) {
		return "inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
