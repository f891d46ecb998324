package results_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
)

var update = flag.Bool("update", false, "rewrite the golden files (and docs/report.png) from the current output")

// The three real runs checked into testdata: a dual-write keep-alive run
// against a sink failing 5 % of writes, a close-client run on the host and
// a --find-limit lab run with tw-reuse.
var runFiles = []string{
	"testdata/keepalive-dual-5xx.json",
	"testdata/close-client-host.json",
	"testdata/close-client-tw-reuse-find-limit.json",
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (refresh with go test ./results -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (refresh with go test ./results -update if intended)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func render(t *testing.T, args []string, format string) []byte {
	t.Helper()
	files, err := results.LoadAll(args)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := results.FilesReporter(files, format)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

var ext = map[string]string{"text": "txt", "markdown": "md", "csv": "csv", "json": "json"}

func TestCompareGolden(t *testing.T) {
	for _, f := range results.Formats {
		t.Run(f, func(t *testing.T) {
			golden(t, "compare."+ext[f], render(t, runFiles, f))
		})
	}
}

func TestCompareMatrixGolden(t *testing.T) {
	for _, f := range results.Formats {
		t.Run(f, func(t *testing.T) {
			golden(t, "matrix."+ext[f], render(t, []string{"testdata/matrix.json"}, f))
		})
	}
}

// A matrix with a target-count axis renders one table per count, each
// with its own cells.
func TestCompareMatrixTargetCounts(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	m := &results.Matrix{Kind: results.MatrixKind, ID: "m", Targets: 2, TargetCounts: []int{2, 1}, FindLimit: true,
		Clients: []string{"close-client-bind"}, Sysctls: []string{"linux-default"},
		Cells: []results.MatrixCell{
			{Client: "close-client-bind", Sysctl: "linux-default", Targets: 2, Result: "a", Measured: f(1.63), Predicted: f(1.67), Low: f(1.5), High: f(1.83)},
			{Client: "close-client-bind", Sysctl: "linux-default", Targets: 1, Result: "b", Measured: f(3.32), Predicted: f(3.33), Low: f(3), High: f(3.67)},
		}}
	cs := results.MatrixComparison(m)
	if len(cs) != 2 {
		t.Fatalf("%d tables, want 2", len(cs))
	}
	for i, want := range []struct{ title, cell, diff, bracket string }{
		{"2 target(s)", "1.63 (1.67)", "+2.5 %", "1.5-1.83"},
		{"1 target(s)", "3.32 (3.33)", "+0.3 %", "3-3.67"},
	} {
		c := cs[i]
		if !strings.HasSuffix(c.Title, want.title) || len(c.Rows) != 3 ||
			c.Rows[0].Cells[0].Text != want.cell || c.Rows[1].Cells[0].Text != want.diff || c.Rows[2].Cells[0].Text != want.bracket {
			t.Errorf("table %d: %q %+v, want %+v", i, c.Title, c.Rows, want)
		}
	}
}

// The figures the issue asks for are rows, with the best value marked
// where a row ranks runs.
func TestCompareRowsAndBest(t *testing.T) {
	files, err := results.LoadAll(runFiles)
	if err != nil {
		t.Fatal(err)
	}
	c := results.Compare(results.Docs(files))
	rows := map[string]results.Row{}
	for _, r := range c.Rows {
		rows[r.Figure] = r
	}
	for _, f := range []string{"targets", "client profile", "sysctl profile", "net.ipv4.tcp_tw_reuse", "net.ipv4.ip_local_port_range",
		"rate asked", "rate achieved", "writes ok", "writes failed", "http_5xx", "p50", "p90", "p99", "p99.9", "max",
		"peak TIME_WAIT", "new connections per write", "predicted exhaustion rate", "measured exhaustion rate", "headroom"} {
		if _, ok := rows[f]; !ok {
			t.Errorf("row %q missing", f)
		}
	}
	if _, ok := rows["net.ipv4.tcp_fin_timeout"]; ok {
		t.Errorf("a sysctl equal in every run is listed as differing")
	}
	best := func(fig string) []int {
		var out []int
		for i, c := range rows[fig].Cells {
			if c.Best {
				out = append(out, i)
			}
		}
		return out
	}
	// The lab run's p99 is the lowest; the keep-alive pool never exhausts.
	if b := best("p99"); len(b) != 1 || b[0] != 2 {
		t.Errorf("best p99 = %v, want [2]", b)
	}
	if b := best("predicted exhaustion rate"); len(b) != 1 || b[0] != 0 {
		t.Errorf("best predicted exhaustion rate = %v, want [0] (never)", b)
	}
	if b := best("writes failed"); len(b) != 2 {
		t.Errorf("best writes failed = %v, want the two runs without failures", b)
	}
	if b := best("client profile"); len(b) != 0 {
		t.Errorf("a descriptive row has a best value: %v", b)
	}
}

// The CSV is rectangular, has a header and plain numbers a spreadsheet
// parses, and a best column naming run ids.
func TestCompareCSVLoadsInASpreadsheet(t *testing.T) {
	out := render(t, runFiles, "csv")
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := recs[0]
	if head[0] != "section" || head[len(head)-1] != "best" || len(head) != 3+len(runFiles)+1 {
		t.Fatalf("header %q", head)
	}
	for _, r := range recs[1:] {
		if r[1] == "p99" {
			for _, v := range r[3 : 3+len(runFiles)] {
				if strings.ContainsAny(v, " msx*") {
					t.Errorf("p99 cell %q is not a plain number", v)
				}
			}
			if !strings.HasPrefix(r[len(r)-1], "20261121T173110Z") {
				t.Errorf("best of p99 = %q, want the lab run's id", r[len(r)-1])
			}
		}
	}
}

func TestCompareJSONIsValid(t *testing.T) {
	var v map[string]any
	if err := json.Unmarshal(render(t, runFiles, "json"), &v); err != nil {
		t.Fatal(err)
	}
	if cols := v["columns"].([]any); len(cols) != len(runFiles) {
		t.Fatalf("%d columns", len(cols))
	}
}

func TestCompareBadFormat(t *testing.T) {
	files, err := results.LoadAll(runFiles[:1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := results.FilesReporter(files, "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("err = %v", err)
	}
}

// Real lab runs behind a stateful firewall (loadcap run --lab
// --lab-firewall-idle 7s --pattern 'write 1s, idle 8s, write 3s' --targets
// embedded,embedded-pg --rate 20 --timeout 2s): a pool without keepalive,
// the built-in pool-heartbeat (10 s: too slow for a 7 s firewall) and the
// built-in pool-os-keepalive (first probe after 5 s: survives).
var idleRunFiles = []string{
	"testdata/golden/runs/idle-pool-no-keepalive.json",
	"testdata/golden/runs/idle-pool-heartbeat.json",
	"testdata/golden/runs/idle-pool-os-keepalive.json",
}

// fleetFile is a real fleet run merged by loadcap merge: three shards of
// close-client at 900 writes/s, each in its own network namespace ("host")
// writing to one sink; host-1 has a 5000-port range, the others the
// default, so host-1 is the weakest.
const fleetFile = "testdata/golden/runs/fleet-merged-3-hosts.json"

func TestCompareHealthGolden(t *testing.T) {
	for _, f := range results.Formats {
		t.Run(f, func(t *testing.T) {
			golden(t, "health."+ext[f], render(t, idleRunFiles, f))
		})
	}
}

func TestCompareFleetGolden(t *testing.T) {
	for _, f := range results.Formats {
		t.Run(f, func(t *testing.T) {
			golden(t, "fleet."+ext[f], render(t, []string{fleetFile}, f))
		})
	}
}

func loadDocs(t *testing.T, paths ...string) []*results.Document {
	t.Helper()
	files, err := results.LoadAll(paths)
	if err != nil {
		t.Fatal(err)
	}
	return results.Docs(files)
}

func rowsByFigure(c *results.Comparison) map[string]results.Row {
	rows := map[string]results.Row{}
	for _, r := range c.Rows {
		rows[r.Figure] = r
	}
	return rows
}

// cellIs checks one cell: its text, and its number when want is one.
func cellIs(t *testing.T, rows map[string]results.Row, fig string, col int, want any) {
	t.Helper()
	r, ok := rows[fig]
	if !ok {
		t.Errorf("row %q missing", fig)
		return
	}
	c := r.Cells[col]
	switch w := want.(type) {
	case string:
		if c.Text != w {
			t.Errorf("%s, column %d: %q, want %q", fig, col, c.Text, w)
		}
	case int64:
		if !c.HasNum || c.Num != float64(w) {
			t.Errorf("%s, column %d: %q (%v), want %d", fig, col, c.Text, c.Num, w)
		}
	case float64:
		if !c.HasNum || c.Num != w {
			t.Errorf("%s, column %d: %q (%v), want %v", fig, col, c.Text, c.Num, w)
		}
	default:
		t.Fatalf("cellIs: want of type %T", want)
	}
}

// Every idle-survival figure is per target: a dual-write run has one row
// per target and figure, each cell that target's own value (not a sum over
// the targets, not the first target that failed), heartbeat failures
// included; the firewall's idle timeout is a run row read from the config.
func TestCompareHealthPerTarget(t *testing.T) {
	docs := loadDocs(t, idleRunFiles...)
	rows := rowsByFigure(results.Compare(docs))
	for j, d := range docs {
		cellIs(t, rows, "lab firewall idle timeout", j, 7.0)
		cellIs(t, rows, "pattern", j, "write 1s, idle 8s, write 3s")
		if len(d.Targets) != 2 {
			t.Fatalf("%s: %d targets, want the dual-write run", d.ID, len(d.Targets))
		}
		for _, tg := range d.Targets {
			n := tg.Name + ": "
			cellIs(t, rows, n+"dead pooled connections", j, tg.DeadConnections)
			cellIs(t, rows, n+"heartbeat failures", j, tg.HeartbeatFailures)
			h := tg.Health
			if h == nil {
				for _, fig := range []string{"first failure", "first failure class", "time to detect", "recovered"} {
					cellIs(t, rows, n+fig, j, "-")
				}
				cellIs(t, rows, n+"unhealthy", j, 0.0)
				continue
			}
			cellIs(t, rows, n+"first failure", j, h.FirstFailureMS)
			cellIs(t, rows, n+"first failure class", j, h.FirstClass)
			cellIs(t, rows, n+"time to detect", j, h.DetectMS)
			if h.RecoveredMS == nil {
				cellIs(t, rows, n+"recovered", j, "never")
			} else {
				cellIs(t, rows, n+"recovered", j, *h.RecoveredMS)
			}
			cellIs(t, rows, n+"unhealthy", j, h.UnhealthyS)
		}
	}
	// The runs behind this test: the two dying pools lost connections on
	// both targets, in different numbers, so a sum would show.
	if a, b := docs[1].Targets[0].DeadConnections, docs[1].Targets[1].DeadConnections; a == 0 || b == 0 || a == b {
		t.Fatalf("testdata: pool-heartbeat dead connections %d and %d, want two different non-zero counts", a, b)
	}
	for _, fig := range []string{"dead pooled connections", "first failure", "unhealthy"} {
		if _, ok := rows[fig]; ok {
			t.Errorf("row %q summed over the targets of a dual-write run", fig)
		}
	}
	// The surviving pool is the best of its row on each target.
	for _, tg := range docs[2].Targets {
		r := rows[tg.Name+": dead pooled connections"]
		if !r.Cells[2].Best || r.Cells[0].Best || r.Cells[1].Best {
			t.Errorf("%s: best %v, want only the os-keepalive run", r.Figure, []bool{r.Cells[0].Best, r.Cells[1].Best, r.Cells[2].Best})
		}
	}
}

// Runs whose targets differ: a row per target position, named "target N"
// where the runs name it differently, "-" for a run without that target;
// single-target runs keep plain figure names.
func TestCompareHealthTargetsDiffer(t *testing.T) {
	dual := loadDocs(t, idleRunFiles[0])[0]
	single := *loadDocs(t, idleRunFiles[1])[0]
	single.ID += "-single"
	single.Targets = []results.Target{single.Targets[1]}
	single.Targets[0].Name = "pg"
	rows := rowsByFigure(results.Compare([]*results.Document{dual, &single}))
	cellIs(t, rows, "target 1: dead pooled connections", 0, dual.Targets[0].DeadConnections)
	cellIs(t, rows, "target 1: dead pooled connections", 1, single.Targets[0].DeadConnections)
	cellIs(t, rows, dual.Targets[1].Name+": dead pooled connections", 0, dual.Targets[1].DeadConnections)
	cellIs(t, rows, dual.Targets[1].Name+": dead pooled connections", 1, "-")
	cellIs(t, rows, dual.Targets[1].Name+": first failure class", 1, "-")

	rows = rowsByFigure(results.Compare([]*results.Document{&single}))
	cellIs(t, rows, "dead pooled connections", 0, single.Targets[0].DeadConnections)
	cellIs(t, rows, "first failure class", 0, single.Targets[0].Health.FirstClass)
}

// The firewall's idle time is a config field: set by the lab (7 s in the
// idle runs), absent from older documents, which still load and compare
// without the row.
func TestConfigLabFirewallIdle(t *testing.T) {
	old := loadDocs(t, runFiles...)
	for _, d := range old {
		if d.Config.LabFirewallIdleS != 0 {
			t.Errorf("%s: lab_firewall_idle_s %v in a document written before the field", d.ID, d.Config.LabFirewallIdleS)
		}
	}
	if _, ok := rowsByFigure(results.Compare(old))["lab firewall idle timeout"]; ok {
		t.Error("firewall row shown for runs without a firewall")
	}
	for _, d := range loadDocs(t, idleRunFiles...) {
		if d.Config.LabFirewallIdleS != 7 {
			t.Errorf("%s: lab_firewall_idle_s %v, want 7", d.ID, d.Config.LabFirewallIdleS)
		}
	}
	for _, c := range []struct {
		v    float64
		want string
	}{{7, `"lab_firewall_idle_s":7`}, {0, ""}} {
		b, err := json.Marshal(results.Config{LabFirewallIdleS: c.v})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "lab_firewall_idle_s"); got != (c.want != "") || !strings.Contains(string(b), c.want) {
			t.Errorf("config with firewall idle %v: %s, want %q", c.v, b, c.want)
		}
	}
}

// A merged fleet document has a fleet section: the number of hosts, the
// start spread, the per-host exhaustion rate the fleet's prediction is
// derived from and the weakest host, then each host's own rate and
// capacity figures; a run that is not merged shows "-". Its counts are the
// merged ones.
func TestCompareFleetRows(t *testing.T) {
	docs := loadDocs(t, fleetFile, runFiles[1])
	m := docs[0]
	fl := m.Fleet
	if fl == nil || len(fl.Hosts) != 3 {
		t.Fatalf("testdata: %s is not a merged document of 3 hosts", fleetFile)
	}
	rows := rowsByFigure(results.Compare(docs))
	cellIs(t, rows, "hosts", 0, "3 (of 3 shards)")
	cellIs(t, rows, "hosts", 1, "-")
	cellIs(t, rows, "start spread", 0, fl.StartSpreadMS)
	cellIs(t, rows, "exhaustion rate per host", 0, *fl.ExhaustionRatePerHost)
	cellIs(t, rows, "weakest host", 0, "host-1")
	cellIs(t, rows, "weakest host", 1, "-")
	var ok int64
	for _, tg := range m.Targets {
		ok += tg.WritesOK
	}
	cellIs(t, rows, "writes ok", 0, ok)
	var sum int64
	low := ""
	for i, h := range fl.Hosts {
		n := h.Host + ": "
		cellIs(t, rows, n+"rate achieved", 0, h.AchievedRate)
		cellIs(t, rows, n+"writes ok", 0, h.WritesOK)
		cellIs(t, rows, n+"writes failed", 0, h.WritesFailed)
		cellIs(t, rows, n+"peak TIME_WAIT", 0, int64(h.PeakTimeWait))
		cellIs(t, rows, n+"ports available", 0, int64(h.Capacity.PortsAvailable))
		cellIs(t, rows, n+"predicted exhaustion rate", 0, *h.Capacity.PredictedExhaustionRate)
		cellIs(t, rows, n+"rate achieved", 1, "-")
		sum += h.WritesOK
		if low == "" || *h.Capacity.PredictedExhaustionRate < *fl.Hosts[i-1].Capacity.PredictedExhaustionRate {
			low = h.Host
		}
	}
	if sum != ok {
		t.Errorf("hosts' writes ok sum to %d, merged %d", sum, ok)
	}
	if low != fl.WeakestHost {
		t.Errorf("lowest per-host prediction on %s, weakest host %s", low, fl.WeakestHost)
	}
}

// A fleet of many hosts: per-host rows for the first maxHostRows (32),
// and a note saying where the rest are.
func TestCompareFleetManyHosts(t *testing.T) {
	d := *loadDocs(t, fleetFile)[0]
	fl := *d.Fleet
	fl.Hosts = nil
	for i := 0; i < 40; i++ {
		h := d.Fleet.Hosts[i%3]
		h.Host = "pod-" + strconv.Itoa(i)
		fl.Hosts = append(fl.Hosts, h)
	}
	d.Fleet = &fl
	c := results.Compare([]*results.Document{&d})
	rows := rowsByFigure(c)
	if _, ok := rows["pod-31: rate achieved"]; !ok {
		t.Error("no row for the 32nd host")
	}
	if _, ok := rows["pod-32: rate achieved"]; ok {
		t.Error("a row for the 33rd host")
	}
	if len(c.Notes) == 0 || !strings.Contains(strings.Join(c.Notes, "\n"), "first 32 of 40 hosts") {
		t.Errorf("notes %q, want one about the hosts left out", c.Notes)
	}
}
