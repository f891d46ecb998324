package results_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
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
