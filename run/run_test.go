package run_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// The README's first command: `loadcap run` on the embedded default.
func TestEmbeddedDefaultRunSavesDocument(t *testing.T) {
	cfg := baseConfig(t)
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := out.Doc
	if len(d.Targets) != 1 || d.Targets[0].WritesOK != 400 || d.Targets[0].LinesOK != 4000 {
		t.Fatalf("targets %+v", d.Targets)
	}
	if d.Sampler == nil || len(d.Sampler.Series) < 4 {
		t.Fatalf("sampler series missing: %+v", d.Sampler)
	}
	if d.Sysctl["net.ipv4.ip_local_port_range"] == "" {
		t.Fatalf("sysctls in force not recorded: %v", d.Sysctl)
	}
	if d.Capacity.PredictedExhaustionRate != nil {
		t.Fatalf("a keep-alive pool that never churns has no exhaustion rate, got %v", *d.Capacity.PredictedExhaustionRate)
	}
	saved, err := results.Load(out.Path)
	if err != nil {
		t.Fatal(err)
	}
	if saved.ID != d.ID || saved.Targets[0].LinesOK != d.Targets[0].LinesOK {
		t.Fatalf("saved document differs")
	}
	// The file is complete JSON with the stable field names of docs/result-schema.md.
	raw, _ := os.ReadFile(out.Path)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "started_at", "finished_at", "loadcap_version", "kernel", "config", "sysctl", "achieved_rate", "targets", "sampler", "capacity"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result document lacks %q", k)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(cfg.Out, ".loadcap-*")); len(ents) != 0 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

// Dual-write to two real InfluxDB 1.x servers: each holds exactly the lines
// loadcap says it accepted, and the rate held.
func TestDualWriteRealInfluxDB(t *testing.T) {
	urls := testservers.Influx(t)
	db := "dual_" + time.Now().Format("150405")
	var targets []string
	for _, u := range urls {
		testservers.InfluxCreateDB(t, u, db)
		targets = append(targets, u+"/write?db="+db)
	}
	cfg := baseConfig(t)
	cfg.Targets = targets
	cfg.Rate = 400
	cfg.Duration = 5 * time.Second
	cfg.Batch = 20
	cfg.Gen.Series = 500
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, tr := range out.Doc.Targets {
		if tr.WritesFailed != 0 {
			t.Fatalf("%s: %d writes failed: %v %s", tr.Name, tr.WritesFailed, tr.Errors, tr.FirstError)
		}
		got := testservers.InfluxCount(t, urls[i], db, cfg.Gen.Measurement)
		t.Logf("%s: SELECT count(*) = %d, lines_ok = %d, achieved %.2f writes/s (asked %.0f)", tr.Name, got, tr.LinesOK, tr.AchievedRate, cfg.Rate)
		if got != tr.LinesOK {
			t.Errorf("%s: SELECT count(*) = %d, loadcap lines_ok = %d", tr.Name, got, tr.LinesOK)
		}
		if dev := math.Abs(tr.AchievedRate-cfg.Rate) / cfg.Rate; dev > 0.02 {
			t.Errorf("%s: achieved %.1f writes/s, asked %.0f (%.1f %% off)", tr.Name, tr.AchievedRate, cfg.Rate, dev*100)
		}
	}
	if dev := math.Abs(out.Doc.AchievedRate-cfg.Rate) / cfg.Rate; dev > 0.02 {
		t.Errorf("achieved_rate %.1f, asked %.0f", out.Doc.AchievedRate, cfg.Rate)
	}
}

// Bad input is refused before any traffic, as an InputError naming the value.
func TestBadInputIsInputError(t *testing.T) {
	cases := map[string]func(*run.Config){
		"bad target":      func(c *run.Config) { c.Targets = []string{"db1:8086"} },
		"unknown profile": func(c *run.Config) { c.Client = "no-such-profile" },
		"sysctl no lab":   func(c *run.Config) { c.Sysctl = "tw-reuse" },
		"zero batch":      func(c *run.Config) { c.Batch = 0 },
	}
	for name, mod := range cases {
		cfg := baseConfig(t)
		mod(&cfg)
		_, err := run.Execute(context.Background(), cfg)
		if !run.IsInputError(err) {
			t.Errorf("%s: got %v, want an input error", name, err)
		}
	}
}

// An interrupted run still returns and saves its document, marked so.
func TestInterruptedRunIsSaved(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	out, err := run.Execute(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Doc.Interrupted || out.Path == "" {
		t.Fatalf("interrupted=%v path=%q", out.Doc.Interrupted, out.Path)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatalf("interrupt took %s", time.Since(start))
	}
	if out.Doc.Targets[0].WritesOK < 100 {
		t.Fatalf("measurements lost: %+v", out.Doc.Targets[0])
	}
}
