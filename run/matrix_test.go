package run_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// ownLabsGone fails t if a lab this process owns is still there: namespace
// or host link. Cells of a matrix each make their own lab.
func ownLabsGone(t *testing.T, ids []string) {
	t.Helper()
	left, err := lab.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		for _, id := range ids {
			if l.RunID == id {
				t.Errorf("left behind: %+v", l)
			}
		}
	}
}

// cellLabIDs reads the lab id of every cell's result file.
func cellLabIDs(t *testing.T, m *run.Matrix) []string {
	t.Helper()
	var ids []string
	for _, c := range m.Cells {
		if c.Result == "" {
			continue
		}
		d, err := results.Load(c.Result)
		if err != nil {
			t.Fatal(err)
		}
		if id := labIDRe.FindStringSubmatch(strings.Join(d.Notes, "\n")); id != nil {
			ids = append(ids, id[1])
		}
	}
	return ids
}

// Four cells at once, each in its own lab, give the results of the same
// matrix run one cell at a time (the model's prediction for each cell, from
// the sysctls its lab applied), in the same order (target count, client,
// sysctl), and leave no namespace or link behind. The number of lab targets
// is an axis of the matrix here (--lab-targets 2,1).
func TestLabMatrixParallelMatchesSequential(t *testing.T) {
	needLab(t)
	cfg := labConfig(t, "close-client,close-client-bind", "tw-reuse", 20, time.Second)
	cfg.LabTargetCounts = []int{2, 1}
	cfg.Targets = run.LabTargets(2)
	var ms [2]*run.Matrix
	for i, par := range []int{4, 1} {
		cfg.Parallel, cfg.Out = par, t.TempDir()
		m, path, err := run.ExecuteMatrix(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if m.Parallel != par || len(m.Cells) != 4 || path == "" {
			t.Fatalf("parallel %d: %d cells, parallel %d, path %q", par, len(m.Cells), m.Parallel, path)
		}
		ids := cellLabIDs(t, m)
		if len(ids) != 4 {
			t.Errorf("parallel %d: lab ids %v, want 4", par, ids)
		}
		ownLabsGone(t, ids)
		if m.SlowestCellS <= 0 || m.WallS < m.SlowestCellS {
			t.Errorf("wall %.1f s, slowest cell %.1f s", m.WallS, m.SlowestCellS)
		}
		ms[i] = m
	}
	want := []string{"2/close-client/tw-reuse", "2/close-client-bind/tw-reuse", "1/close-client/tw-reuse", "1/close-client-bind/tw-reuse"}
	name := func(c run.MatrixCell) string { return fmt.Sprintf("%d/%s/%s", c.Targets, c.Client, c.Sysctl) }
	for i, c := range ms[0].Cells {
		s := ms[1].Cells[i]
		if name(c) != want[i] || name(s) != want[i] {
			t.Errorf("cell %d: %s and %s, want %s", i, name(c), name(s), want[i])
		}
		if c.Error != "" || s.Error != "" || c.Predicted == nil || s.Predicted == nil || *c.Predicted != *s.Predicted {
			t.Errorf("%s: parallel %+v, sequential %+v", want[i], c, s)
		}
		if c.Result != "" {
			if d, err := results.Load(c.Result); err != nil || len(d.Targets) != c.Targets {
				t.Errorf("%s: %v, result has %d targets", want[i], err, len(d.Targets))
			}
		}
	}
	// The model's own figures: 200 ports / 1 s reuse delay per target with
	// connect; with bind 200 ports / 60 s, shared by the targets (tw-reuse
	// does not help bind).
	for i, r := range []float64{200, 1.67, 200, 3.33} {
		if p := ms[0].Cells[i].Predicted; p == nil || *p != r {
			t.Errorf("%s: predicted %v, want %g", want[i], p, r)
		}
	}
	if got := ms[0].Counts(); len(got) != 2 || got[0] != 2 || got[1] != 1 || ms[0].Targets != 2 {
		t.Errorf("target counts %v, targets %d", got, ms[0].Targets)
	}
}

// A cell that fails after its lab was made (here, sinks that never come up)
// is recorded with its error, the other cells run, and no lab is left.
//
// Not parallel: it counts the labs this process owns, and a parallel test
// beside it owns live labs of its own (a CI run saw another test's lab).
func TestLabMatrixCellErrorCleansUp(t *testing.T) {
	needLab(t)
	cfg := labConfig(t, "close-client", "linux-default,tw-reuse", 20, time.Second)
	cfg.Exe = "/bin/true" // the lab's sinks exit at once
	before, _ := lab.Leftovers()
	m, _, err := run.ExecuteMatrix(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range m.Cells {
		if !strings.Contains(c.Error, "did not come up") || c.Result != "" {
			t.Errorf("cell %+v: want the sink error and no result", c)
		}
	}
	noNewOwnLabs(t, before)
}

// noNewOwnLabs fails t for every namespace or link of a lab this process
// owns that was not among before.
func noNewOwnLabs(t *testing.T, before []lab.Leftover) {
	t.Helper()
	after, err := lab.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, l := range before {
		old[l.Name] = true
	}
	for _, l := range after {
		if !old[l.Name] && l.OwnerPID == os.Getpid() {
			t.Errorf("left behind: %+v", l)
		}
	}
}

// SIGINT during a parallel matrix: the running cells stop and save what
// they measured, the summary is saved with every cell, the process exits,
// and no namespace or link of its labs is left.
func TestLabMatrixInterruptCleansUp(t *testing.T) {
	needLab(t)
	t.Parallel()
	out := t.TempDir()
	p := startBinary(t, "run", "--lab", "--lab-ports", "200", "--client", "close-client,close-client-bind", "--sysctl", "linux-default,tw-reuse",
		"--rate", "20", "--batch", "10", "--duration", "60s", "--parallel", "4", "--out", out, "--quiet")
	pid := p.cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	var ids map[string]bool
	for {
		ids = map[string]bool{}
		left, _ := lab.Leftovers()
		for _, l := range left {
			cli, srv := lab.Names(l.RunID)
			if l.OwnerPID == pid && len(netnsPids(t, cli)) > 0 && len(netnsPids(t, srv)) > 0 {
				ids[l.RunID] = true
			}
		}
		if len(ids) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d labs with their processes 60 s after the start, want 4 at once; stderr %q", len(ids), p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // writes going
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("still running 60 s after SIGINT; stderr %q", p.stderr.String())
	}
	var list []string
	for id := range ids {
		list = append(list, id)
	}
	ownLabsGone(t, list)
	files, _ := filepath.Glob(filepath.Join(out, "*-matrix.json"))
	if len(files) != 1 {
		t.Fatalf("matrix summaries %v; stderr %q", files, p.stderr.String())
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var m results.Matrix
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Cells) != 4 {
		t.Fatalf("%d cells in the summary, want 4", len(m.Cells))
	}
	for _, c := range m.Cells {
		if c.Result == "" {
			t.Errorf("cell %s x %s: no result saved (%s)", c.Client, c.Sysctl, c.Error)
			continue
		}
		d, err := results.Load(c.Result)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Interrupted || d.Targets[0].WritesOK == 0 {
			t.Errorf("cell %s x %s: interrupted=%v writes_ok=%d", c.Client, c.Sysctl, d.Interrupted, d.Targets[0].WritesOK)
		}
	}
}

// The find-limit matrix prints, per cell, measured, predicted, the
// prediction's difference in % of the measured rate, the bracket and the
// cell's time; a failed cell says error.
func TestWriteMatrixFindLimit(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	m := &run.Matrix{Targets: 2, FindLimit: true, Parallel: 2, WallS: 400, SlowestCellS: 390,
		Clients: []string{"close-client", "small-idle-pool"}, Sysctls: []string{"linux-default"},
		Cells: []run.MatrixCell{
			{Client: "close-client", Sysctl: "linux-default", Result: "a.json", Measured: f(3.33), Predicted: f(3.33), Low: f(3), High: f(3.67), DurationS: 210.4},
			{Client: "small-idle-pool", Sysctl: "linux-default", Result: "b.json", Measured: f(616.4), Predicted: f(655.5), Low: f(600.2), High: f(633), DurationS: 390},
		}}
	var b strings.Builder
	if err := run.WriteMatrix(&b, m); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"2 target(s); 2 cell(s), 2 at once: 6m40s (slowest cell 6m30s)",
		"client           sysctl         measured  predicted  diff    bracket      time",
		"close-client     linux-default  3.33      3.33       +0.0 %  3-3.67       3m30.4s",
		"small-idle-pool  linux-default  616.4     655.5      +6.3 %  600.2-633.0  6m30s",
	}
	for _, w := range want {
		if !strings.Contains(b.String(), w) {
			t.Errorf("missing %q in\n%s", w, b.String())
		}
	}
	// With a target-count axis, a targets column.
	m2 := *m
	m2.TargetCounts = []int{2, 1}
	m2.Cells = []run.MatrixCell{m.Cells[0], m.Cells[0]}
	m2.Cells[0].Targets, m2.Cells[1].Targets = 2, 1
	b.Reset()
	run.WriteMatrix(&b, &m2)
	for _, w := range []string{
		"2,1 target(s); 2 cell(s)",
		"targets  client        sysctl         measured",
		"2        close-client  linux-default  3.33",
		"1        close-client  linux-default  3.33",
	} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("missing %q in\n%s", w, b.String())
		}
	}
	m.Cells[1] = run.MatrixCell{Client: "small-idle-pool", Sysctl: "linux-default", Error: "create lab: boom", DurationS: 1}
	b.Reset()
	run.WriteMatrix(&b, m)
	if !strings.Contains(b.String(), "small-idle-pool  linux-default  error") {
		t.Errorf("failed cell:\n%s", b.String())
	}
}
