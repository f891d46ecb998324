package run

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/results"
)

// Matrix and MatrixCell are the results package's types: the summary file
// is part of the result store.
type (
	Matrix     = results.Matrix
	MatrixCell = results.MatrixCell
)

// IsMatrix reports whether cfg names several client or sysctl profiles.
func IsMatrix(cfg Config) bool {
	return strings.Contains(cfg.Client, ",") || strings.Contains(cfg.Sysctl, ",")
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// ExecuteMatrix runs every client x sysctl combination one after another,
// each in its own fresh lab, saving one result file per cell and the
// matrix summary. A failed cell is recorded and the matrix goes on; an
// InputError in any cell stops it before traffic (all cells are validated
// first).
func ExecuteMatrix(ctx context.Context, cfg Config) (*Matrix, string, error) {
	clients, sysctls := splitList(cfg.Client), splitList(cfg.Sysctl)
	if len(clients) == 0 || len(sysctls) == 0 {
		return nil, "", badInput("bad --client/--sysctl %q/%q: empty list", cfg.Client, cfg.Sysctl)
	}
	if !cfg.Lab {
		return nil, "", badInput("several --client or --sysctl profiles (%s x %s) need --lab: a matrix applies each sysctl profile in its own namespace", cfg.Client, cfg.Sysctl)
	}
	for _, c := range clients {
		for _, s := range sysctls {
			cc := cfg
			cc.Client, cc.Sysctl = c, s
			if _, err := validate(cc); err != nil {
				return nil, "", err
			}
		}
	}
	started := time.Now()
	m := &Matrix{Kind: results.MatrixKind, ID: newID(started) + "-matrix", StartedAt: started.UTC(), Targets: len(cfg.Targets),
		FindLimit: cfg.FindLimit, Clients: clients, Sysctls: sysctls}
	for _, c := range clients {
		for _, s := range sysctls {
			cell := MatrixCell{Client: c, Sysctl: s}
			cc := cfg
			cc.Client, cc.Sysctl = c, s
			out, err := Execute(ctx, cc)
			if err != nil {
				cell.Error = err.Error()
			}
			if out != nil {
				d := out.Doc
				cell.Result = out.Path
				cell.Predicted = d.Capacity.PredictedExhaustionRate
				cell.Measured = d.Capacity.MeasuredExhaustionRate
				cell.Achieved = d.AchievedRate
				cell.PortErrs = portErrors(d)
			}
			m.Cells = append(m.Cells, cell)
			if ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	path := ""
	if cfg.Out != "" {
		path = filepath.Join(cfg.Out, m.ID+".json")
		b, _ := json.MarshalIndent(m, "", "  ")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
			return m, "", fmt.Errorf("save matrix: %w", err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return m, "", fmt.Errorf("save matrix: %w", err)
		}
	}
	return m, path, ctx.Err()
}

// WriteMatrix prints the client x sysctl table of exhaustion rates
// (measured when --find-limit ran, else predicted), in writes/s per target.
func WriteMatrix(w io.Writer, m *Matrix) error {
	what := "predicted"
	if m.FindLimit {
		what = "measured (predicted)"
	}
	fmt.Fprintf(w, "exhaustion rate, writes/s per target, %s; %d target(s)\n", what, m.Targets)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "client \\ sysctl")
	for _, s := range m.Sysctls {
		fmt.Fprintf(tw, "\t%s", s)
	}
	fmt.Fprintln(tw)
	i := 0
	for _, c := range m.Clients {
		fmt.Fprint(tw, c)
		for range m.Sysctls {
			var cell MatrixCell
			if i < len(m.Cells) {
				cell = m.Cells[i]
			}
			i++
			fmt.Fprintf(tw, "\t%s", cellText(cell, m.FindLimit))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func cellText(c MatrixCell, find bool) string {
	if c.Error != "" && c.Result == "" {
		return "error"
	}
	rate := func(p *float64) string {
		if p == nil {
			return "never"
		}
		return capacity.FormatRate(*p)
	}
	if find {
		if c.Measured == nil && c.Predicted == nil {
			return "never (never)"
		}
		return fmt.Sprintf("%s (%s)", rate(c.Measured), rate(c.Predicted))
	}
	return rate(c.Predicted)
}
