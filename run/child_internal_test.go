package run

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/loadgen"
)

// A lab step reaches its load generator as a document: every field the
// child needs arrives as the parent had it, the namespace's sysctls are the
// child's "host", and a document with a field this loadcap does not know
// is refused.
func TestChildConfigRoundTrip(t *testing.T) {
	gen := loadgen.DefaultGenConfig()
	gen.Seed, gen.Series, gen.Precision = 7, 12, "ms"
	cfg := Config{
		Batch: 10, Client: "close-client", DialMode: "bind", Linger0: true, ProfilesDir: "/p", Gen: gen,
		Gzip: true, SQLMode: "copy", Workers: 3, MaxWorkers: 9, Timeout: 4 * time.Second,
		SampleInterval: 100 * time.Millisecond, Pattern: "write 1s, idle 1s", Sysctl: "tw-reuse", Lab: true, LabPorts: 200,
	}
	urls := []string{"http://198.18.0.2:8086/write?db=loadcap", "http://198.18.0.3:8086/write?db=loadcap"}
	b, err := childDocument(cfg, urls, step{rate: 12.5, duration: 2 * time.Second, pattern: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadChildConfig(bytes.NewReader(b), "v1")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Targets: urls, Rate: 12.5, Duration: 2 * time.Second, DurationSet: true, Pattern: cfg.Pattern,
		Batch: 10, Client: "close-client", DialMode: "bind", Linger0: true, ProfilesDir: "/p", Sysctl: "host",
		Gen: gen, PrecisionSet: true, Gzip: true, SQLMode: "copy", Workers: 3, MaxWorkers: 9,
		Timeout: 4 * time.Second, SampleInterval: 100 * time.Millisecond, Version: "v1",
	}
	if g, w := strings.Join(got.Targets, ","), strings.Join(want.Targets, ","); g != w {
		t.Errorf("targets %s, want %s", g, w)
	}
	got.Targets, want.Targets = nil, nil
	if got.Gen != want.Gen {
		t.Errorf("gen %+v, want %+v", got.Gen, want.Gen)
	}
	got.Gen, want.Gen = loadgen.GenConfig{}, loadgen.GenConfig{}
	if gs, ws := strings.TrimSpace(strings.ReplaceAll(sprint(got), " ", "")), strings.ReplaceAll(sprint(want), " ", ""); gs != ws {
		t.Errorf("config\n got %s\nwant %s", gs, ws)
	}
	// A step that is not the pattern's carries no pattern.
	b, _ = childDocument(cfg, urls, step{rate: 1, duration: time.Second})
	if got, _ := ReadChildConfig(bytes.NewReader(b), ""); got.Pattern != "" {
		t.Errorf("pattern %q on a plain step", got.Pattern)
	}
	if _, err := ReadChildConfig(strings.NewReader(`{"targets":["embedded"],"rate":1,"surprise":1}`), ""); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown field: %v", err)
	}
}

func sprint(c Config) string { return fmt.Sprintf("%+v", c) }
