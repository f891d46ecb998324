package run_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/loadcap/loadcap/export"
	"github.com/loadcap/loadcap/loadgen/embedded"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// A dual-write run against embedded sinks failing 5 % of writes, exported
// both ways: vegeta report (built from the vegeta module in go.mod) counts
// the same writes, successes and 500s as the result document, and the HDR
// interval log merged per tag gives the document's latency percentiles.
func TestExportsAgreeWithDocument(t *testing.T) {
	dir := t.TempDir()
	cfg := baseConfig(t)
	cfg.Targets = []string{"embedded", "embedded"}
	cfg.Rate, cfg.Duration = 300, 2*time.Second
	cfg.Sink = embedded.Options{ErrorRate: 0.05, Seed: 7}
	cfg.HDRLog = filepath.Join(dir, "latency.hlog")
	cfg.VegetaResults = filepath.Join(dir, "results.bin")
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := out.Doc
	var writes, ok, fail5xx int64
	for _, tg := range d.Targets {
		writes += tg.WritesOK + tg.WritesFailed
		ok += tg.WritesOK
		fail5xx += tg.Errors["http_5xx"]
	}
	if fail5xx == 0 {
		t.Fatalf("the sink injected no errors: %+v", d.Targets)
	}
	for _, n := range d.Notes {
		t.Log("note:", n)
	}

	// vegeta report -type=json
	vegeta := filepath.Join(dir, "vegeta")
	build := exec.Command("go", "build", "-o", vegeta, "github.com/tsenart/vegeta/v12")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vegeta: %v\n%s", err, b)
	}
	rep, err := exec.Command(vegeta, "report", "-type=json", cfg.VegetaResults).Output()
	if err != nil {
		t.Fatalf("vegeta report: %v", err)
	}
	var m struct {
		Requests    int64            `json:"requests"`
		Success     float64          `json:"success"`
		StatusCodes map[string]int64 `json:"status_codes"`
	}
	if err := json.Unmarshal(rep, &m); err != nil {
		t.Fatalf("vegeta report output: %v\n%s", err, rep)
	}
	succ := int64(m.Success*float64(m.Requests) + 0.5)
	t.Logf("vegeta: requests %d success %d codes %v; loadcap: writes %d ok %d http_5xx %d", m.Requests, succ, m.StatusCodes, writes, ok, fail5xx)
	if m.Requests != writes || succ != ok || m.StatusCodes["500"] != fail5xx || m.StatusCodes["204"] != ok {
		t.Fatalf("vegeta report disagrees with the document")
	}

	// HDR interval log
	f, err := os.Open(cfg.HDRLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := hdrhistogram.NewHistogramLogReader(f)
	merged := map[string]*hdrhistogram.Histogram{}
	intervals := 0
	for {
		h, err := r.NextIntervalHistogram()
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		intervals++
		if merged[h.Tag()] == nil {
			merged[h.Tag()] = h
		} else {
			merged[h.Tag()].Merge(h)
		}
	}
	if intervals < 2*len(d.Targets) {
		t.Fatalf("%d intervals for %d targets over 2 s", intervals, len(d.Targets))
	}
	for _, tg := range d.Targets {
		h := merged[export.HDRTag(tg.Name)]
		if h == nil {
			t.Fatalf("no intervals tagged %s (tags %v)", export.HDRTag(tg.Name), merged)
		}
		if got := results.LatencyOf(h); got != tg.LatencyMS {
			t.Errorf("%s: hdr log gives %+v, document says %+v", tg.Name, got, tg.LatencyMS)
		}
		if h.TotalCount() != tg.WritesOK+tg.WritesFailed {
			t.Errorf("%s: %d values in the log, %d writes", tg.Name, h.TotalCount(), tg.WritesOK+tg.WritesFailed)
		}
	}
}

func TestExportsRefusedWithLab(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Lab, cfg.Sysctl = true, "tw-reuse"
	cfg.HDRLog = filepath.Join(t.TempDir(), "x.hlog")
	_, err := run.Execute(context.Background(), cfg)
	if !run.IsInputError(err) {
		t.Fatalf("err = %v, want an input error", err)
	}
}
