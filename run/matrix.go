package run

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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

// DefaultParallel is how many matrix cells run at once when Config.Parallel
// is 0: every cell, up to four per CPU. A find-limit cell spends most of its
// time in TIME_WAIT-bound steps of a few writes/s or waiting for ports to
// come back (4 to 10 % of a CPU on average, Outcome.LabCPU); the phases that
// need the CPU (bursts, steps of more than busyRate writes/s) take one of
// busySlots machine-wide slots, one per two CPUs, so cells side by side do
// not stall each other's load generators.
func DefaultParallel(cells int) int {
	return max(1, min(cells, 4*runtime.NumCPU()))
}

// ExecuteMatrix runs every client x sysctl combination, each in its own
// fresh lab (its own namespaces), up to cfg.Parallel cells at once
// (0: DefaultParallel), saving one result file per cell and the matrix
// summary. Cells keep their client-major order whatever order they finish
// in. A failed cell is recorded and the matrix goes on; an InputError in
// any cell stops it before traffic (all cells are validated first). When
// ctx is cancelled, running cells stop and save what they measured, and
// cells not started are recorded as not run.
func ExecuteMatrix(ctx context.Context, cfg Config) (*Matrix, string, error) {
	clients, sysctls := splitList(cfg.Client), splitList(cfg.Sysctl)
	if len(clients) == 0 || len(sysctls) == 0 {
		return nil, "", badInput("bad --client/--sysctl %q/%q: empty list", cfg.Client, cfg.Sysctl)
	}
	if !cfg.Lab {
		return nil, "", badInput("several --client or --sysctl profiles (%s x %s) need --lab: a matrix applies each sysctl profile in its own namespace", cfg.Client, cfg.Sysctl)
	}
	if cfg.Parallel < 0 {
		return nil, "", badInput("bad --parallel %d: want 0 (from the machine) or more", cfg.Parallel)
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
	if cfg.Out != "" {
		if err := results.CheckWritable(cfg.Out); err != nil {
			return nil, "", &InputError{Err: err}
		}
	}
	started := time.Now()
	m := &Matrix{Kind: results.MatrixKind, ID: newID(started) + "-matrix", StartedAt: started.UTC(), Targets: len(cfg.Targets),
		FindLimit: cfg.FindLimit, Clients: clients, Sysctls: sysctls}
	for _, c := range clients {
		for _, s := range sysctls {
			m.Cells = append(m.Cells, MatrixCell{Client: c, Sysctl: s})
		}
	}
	m.Parallel = cfg.Parallel
	if m.Parallel == 0 {
		m.Parallel = DefaultParallel(len(m.Cells))
	}
	slots := make(chan struct{}, m.Parallel)
	var wg sync.WaitGroup
	for i := range m.Cells {
		cell := &m.Cells[i]
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			cell.Error = "not run: interrupted"
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			runCell(ctx, cfg, cell)
		}()
	}
	wg.Wait()
	m.WallS = math.Round(time.Since(started).Seconds()*10) / 10
	for _, c := range m.Cells {
		m.SlowestCellS = math.Max(m.SlowestCellS, c.DurationS)
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

// runCell runs one matrix cell in its own lab and fills cell.
func runCell(ctx context.Context, cfg Config, cell *MatrixCell) {
	start := time.Now()
	cc := cfg
	cc.Client, cc.Sysctl = cell.Client, cell.Sysctl
	out, err := Execute(ctx, cc)
	cell.DurationS = math.Round(time.Since(start).Seconds()*10) / 10
	if err != nil {
		cell.Error = err.Error()
	}
	if out == nil {
		return
	}
	d := out.Doc
	cell.Result = out.Path
	cell.Predicted = d.Capacity.PredictedExhaustionRate
	cell.Measured = d.Capacity.MeasuredExhaustionRate
	cell.Low, cell.High = d.Capacity.MeasuredLow, d.Capacity.MeasuredHigh
	cell.Achieved = d.AchievedRate
	cell.PortErrs = portErrors(d)
	cell.CPUS = math.Round(out.LabCPU.Seconds()*10) / 10
}

// WriteMatrix prints the matrix. With --find-limit, one line per cell:
// measured and predicted exhaustion rates, the prediction's difference from
// the measured rate in %, the bracket (the highest rate that held, the
// lowest that ran out) and the cell's wall time; else the client x sysctl
// table of predicted rates. Rates are writes/s per target.
func WriteMatrix(w io.Writer, m *Matrix) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if m.FindLimit {
		fmt.Fprintf(w, "exhaustion rate, writes/s per target; %d target(s); %d cell(s), %d at once: %s (slowest cell %s)\n",
			m.Targets, len(m.Cells), m.Parallel, secs(m.WallS), secs(m.SlowestCellS))
		fmt.Fprintln(tw, "client\tsysctl\tmeasured\tpredicted\tdiff\tbracket\ttime")
		for _, c := range m.Cells {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Client, c.Sysctl, cellLine(c))
		}
		return tw.Flush()
	}
	fmt.Fprintf(w, "exhaustion rate, writes/s per target, predicted; %d target(s)\n", m.Targets)
	fmt.Fprintf(tw, "client \\ sysctl")
	for _, s := range m.Sysctls {
		fmt.Fprintf(tw, "\t%s", s)
	}
	fmt.Fprintln(tw)
	for _, c := range m.Clients {
		fmt.Fprint(tw, c)
		for _, s := range m.Sysctls {
			cell, _ := m.Cell(c, s)
			fmt.Fprintf(tw, "\t%s", cellText(cell))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func rateText(p *float64) string {
	if p == nil {
		return "never"
	}
	return capacity.FormatRate(*p)
}

func secs(s float64) string {
	return (time.Duration(s*10) * time.Second / 10).String()
}

// cellLine is a find-limit cell's measured, predicted, diff, bracket and
// time columns.
func cellLine(c MatrixCell) string {
	if c.Error != "" && c.Result == "" {
		return "error\t\t\t\t" + secs(c.DurationS)
	}
	diff := "-"
	if d, ok := c.DiffPct(); ok {
		diff = fmt.Sprintf("%+.1f %%", d)
	}
	br := c.Bracket(capacity.FormatRate)
	if br == "" {
		br = "-"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", rateText(c.Measured), rateText(c.Predicted), diff, br, secs(c.DurationS))
}

func cellText(c MatrixCell) string {
	if c.Error != "" && c.Result == "" {
		return "error"
	}
	return rateText(c.Predicted)
}
