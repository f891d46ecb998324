package results

import (
	"encoding/json"
	"io"
	"math"
)

type jsonCell struct {
	Text string   `json:"text"`
	Num  *float64 `json:"value"`
	Inf  bool     `json:"never,omitempty"`
	Best bool     `json:"best,omitempty"`
}

type jsonRow struct {
	Section string     `json:"section"`
	Figure  string     `json:"figure"`
	Unit    string     `json:"unit,omitempty"`
	Better  string     `json:"better,omitempty"`
	Cells   []jsonCell `json:"cells"`
	Best    []string   `json:"best,omitempty"`
}

type jsonComparison struct {
	Title   string    `json:"title,omitempty"`
	Corner  string    `json:"corner"`
	Columns []Column  `json:"columns"`
	Rows    []jsonRow `json:"rows"`
	Notes   []string  `json:"notes,omitempty"`
}

func jsonTable(c *Comparison) jsonComparison {
	out := jsonComparison{Title: c.Title, Corner: c.Corner, Columns: c.Columns, Notes: c.Notes}
	for _, r := range c.Rows {
		jr := jsonRow{Section: r.Section, Figure: r.Figure, Unit: r.Unit, Better: r.Better.String()}
		for i, cell := range r.Cells {
			jc := jsonCell{Text: cell.Text, Best: cell.Best}
			if cell.HasNum {
				if math.IsInf(cell.Num, 1) {
					jc.Inf = true
				} else {
					v := cell.Num
					jc.Num = &v
				}
			}
			if cell.Best {
				jr.Best = append(jr.Best, c.Columns[i].ID)
			}
			jr.Cells = append(jr.Cells, jc)
		}
		out.Rows = append(out.Rows, jr)
	}
	return out
}

// JSONReporter writes c as indented JSON: columns, and rows whose cells
// carry the text, the number (null when none; "never": true for an
// infinite rate) and the best flag.
func JSONReporter(c *Comparison) Reporter {
	return func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(jsonTable(c))
	}
}
