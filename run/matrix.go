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
	"strconv"
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

// IsMatrix reports whether cfg names several client or sysctl profiles or
// several lab target counts.
func IsMatrix(cfg Config) bool {
	return strings.Contains(cfg.Client, ",") || strings.Contains(cfg.Sysctl, ",") || len(cfg.LabTargetCounts) > 1
}

// MaxLabTargets bounds --lab-targets.
const MaxLabTargets = 16

// ParseLabTargets reads --lab-targets: one count of embedded lab targets
// ("2"), or several ("1,2"), which make the count an axis of the matrix.
// It returns the counts, in the order given, each once.
func ParseLabTargets(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > MaxLabTargets {
			return nil, badInput("bad --lab-targets %q: want counts from 1 to %d, comma-separated", s, MaxLabTargets)
		}
		if seen[n] {
			return nil, badInput("bad --lab-targets %q: %d twice", s, n)
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

// LabTargets returns n embedded targets, each its own lab server address.
func LabTargets(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "embedded"
	}
	return out
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

// ExecuteMatrix runs every client x sysctl combination (for each lab
// target count, when cfg.LabTargetCounts has several), each in its own
// fresh lab (its own namespaces), up to cfg.Parallel cells at once
// (0: DefaultParallel), saving one result file per cell and the matrix
// summary. Cells keep their order (target count, then client, then
// sysctl) whatever order they finish in. A failed cell is recorded and the matrix goes on; an InputError in
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
	counts := cfg.LabTargetCounts
	if len(counts) < 2 {
		counts = []int{0} // the targets cfg names
	}
	for _, n := range counts {
		for _, c := range clients {
			for _, s := range sysctls {
				cc := cellConfig(cfg, MatrixCell{Client: c, Sysctl: s, Targets: n})
				if _, err := validate(cc); err != nil {
					return nil, "", err
				}
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
	if counts[0] > 0 {
		m.Targets, m.TargetCounts = counts[0], counts
	}
	for _, n := range counts {
		for _, c := range clients {
			for _, s := range sysctls {
				m.Cells = append(m.Cells, MatrixCell{Client: c, Sysctl: s, Targets: n})
			}
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

// cellConfig is cfg for one cell: its client, its sysctl profile and, with
// a target-count axis, that many embedded targets.
func cellConfig(cfg Config, cell MatrixCell) Config {
	cc := cfg
	cc.Client, cc.Sysctl = cell.Client, cell.Sysctl
	cc.LabTargetCounts = nil
	if cell.Targets > 0 {
		cc.Targets = LabTargets(cell.Targets)
	}
	return cc
}

// runCell runs one matrix cell in its own lab and fills cell.
func runCell(ctx context.Context, cfg Config, cell *MatrixCell) {
	start := time.Now()
	out, err := Execute(ctx, cellConfig(cfg, *cell))
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
	counts := m.Counts()
	if m.FindLimit {
		fmt.Fprintf(w, "exhaustion rate, writes/s per target; %s target(s); %d cell(s), %d at once: %s (slowest cell %s)\n",
			joinInts(counts), len(m.Cells), m.Parallel, secs(m.WallS), secs(m.SlowestCellS))
		head := "client\tsysctl\tmeasured\tpredicted\tdiff\tbracket\ttime"
		if len(counts) > 1 {
			head = "targets\t" + head
		}
		fmt.Fprintln(tw, head)
		for _, c := range m.Cells {
			if len(counts) > 1 {
				fmt.Fprintf(tw, "%d\t", m.CellTargets(c))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Client, c.Sysctl, cellLine(c))
		}
		return tw.Flush()
	}
	for i, n := range counts {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "exhaustion rate, writes/s per target, predicted; %d target(s)\n", n)
		fmt.Fprintf(tw, "client \\ sysctl")
		for _, s := range m.Sysctls {
			fmt.Fprintf(tw, "\t%s", s)
		}
		fmt.Fprintln(tw)
		for _, c := range m.Clients {
			fmt.Fprint(tw, c)
			for _, s := range m.Sysctls {
				cell, _ := m.CellAt(n, c, s)
				fmt.Fprintf(tw, "\t%s", cellText(cell))
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
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
