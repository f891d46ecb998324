package run_test

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/results"
)

// colorPixels counts the pixels of a PNG within 24 of each RGB channel of
// the colour "#rrggbb".
func colorPixels(t *testing.T, b []byte, hex string) int {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := [3]int{}
	for i := range want {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		want[i] = int(v)
	}
	n := 0
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if abs8(int(cr>>8)-want[0]) <= 24 && abs8(int(cg>>8)-want[1]) <= 24 && abs8(int(cb>>8)-want[2]) <= 24 {
				n++
			}
		}
	}
	return n
}

func abs8(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// The report of two real runs made now, opened in headless Chromium: a
// close-client run (TIME_WAIT builds up) and a keep-alive run against the
// embedded sink failing 5 % of writes (errors), 2 s each through the
// loadcap binary. Every chart draws data, neither the page's error hooks
// nor Chromium's own log see an error or any console output (a page that
// does log is seen first, so the check is not blind), and the screenshot
// shows both runs' colours and the TIME_WAIT area. The checked-in runs of
// results/report_test.go add a --find-limit run and make docs/report.png.
func TestReportOfTwoRealRunsInChromium(t *testing.T) {
	testservers.RequireChromium(t)
	dir := t.TempDir()
	// The log check sees what it must on this Chromium: a page that logs
	// to its console and throws shows up in consoleLines.
	bad := filepath.Join(dir, "bad.html")
	if err := os.WriteFile(bad, []byte(`<html><body><script>console.error("boom"); setTimeout(function () { noSuchFunction(); }, 0);</script></body></html>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, log := testservers.RunChromium(t, "--dump-dom", "file://"+bad); len(testservers.ConsoleLines(log, "file://"+bad)) < 2 ||
		!strings.Contains(log, "boom") || !strings.Contains(log, "Uncaught ReferenceError") {
		t.Fatalf("Chromium's log does not show a page's console.error and uncaught exception; the check below would be blind:\n%s", log)
	}
	runs := []struct {
		client string
		extra  []string
	}{
		{"close-client", nil},
		{"keepalive", []string{"--sink-error-rate", "0.05"}},
	}
	var files []string
	for i, r := range runs {
		out := filepath.Join(dir, strconv.Itoa(i))
		args := append([]string{"run", "--duration", "2s", "--rate", "200", "--batch", "10", "--client", r.client, "--out", out, "--quiet", "--sample-interval", "100ms"}, r.extra...)
		if code, _, stderr := runCLI(t, nil, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		got, _ := filepath.Glob(filepath.Join(out, "*.json"))
		if len(got) != 1 {
			t.Fatalf("%v: result files %v, want one", args, got)
		}
		files = append(files, got[0])
	}
	// The runs are what the charts need: TIME_WAIT from close-client,
	// failed writes from the failing sink, samples in both.
	loaded, err := results.LoadAll(files)
	if err != nil {
		t.Fatal(err)
	}
	docs := results.Docs(loaded)
	if len(docs) != 2 {
		t.Fatalf("%d documents", len(docs))
	}
	cc, ka := docs[0], docs[1]
	if cc.Targets[0].WritesOK == 0 || cc.Targets[0].NewConnections < cc.Targets[0].WritesOK || cc.Targets[0].PeakTimeWait == 0 {
		t.Errorf("close-client run: %+v", cc.Targets[0])
	}
	if ka.Targets[0].WritesOK == 0 || ka.Targets[0].Errors["http_5xx"] == 0 {
		t.Errorf("keepalive run against a failing sink: %+v", ka.Targets[0])
	}
	for _, d := range docs {
		if d.Sampler == nil || len(d.Sampler.Series) < 2 || len(d.Timeline) == 0 {
			t.Errorf("%s: too few samples or no timeline to plot", d.Config.ClientProfile)
		}
	}

	html := filepath.Join(dir, "report.html")
	if code, _, stderr := runCLI(t, nil, append([]string{"report", "-o", html}, files...)...); code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	url := "file://" + html
	dom, log := testservers.RunChromium(t, "--dump-dom", url)
	charts, drawn, errs, ok := testservers.ChartSummary(dom)
	if !ok {
		t.Fatalf("the page's script did not publish its summary:\n%.2000s", dom)
	}
	// a socket-state panel per run, rate, errors, latency spectrum (no
	// find-limit run, so no steps chart)
	if charts != 5 || drawn != charts || errs != 0 {
		t.Errorf("charts=%d drawn=%d errors=%d, want 5 charts all drawn and no error", charts, drawn, errs)
	}
	if c := testservers.ConsoleLines(log, url); len(c) > 0 {
		t.Errorf("Chromium logged the page's console or errors:\n%s", strings.Join(c, "\n"))
	}
	for _, w := range []string{"close-client / host", "keepalive / host", "http_5xx"} {
		if !strings.Contains(string(dom), w) {
			t.Errorf("rendered page lacks %q", w)
		}
	}

	shot := filepath.Join(dir, "report.png")
	_, log = testservers.RunChromium(t, "--window-size=1320,2300", "--screenshot="+shot, url)
	if c := testservers.ConsoleLines(log, url); len(c) > 0 {
		t.Errorf("Chromium logged the page's console or errors while taking the screenshot:\n%s", strings.Join(c, "\n"))
	}
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 50_000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot of %d bytes is not a page full of charts", len(b))
	}
	// The first run's colour, the second's, and TIME_WAIT's filled area.
	for _, c := range []struct {
		what, hex string
		min       int
	}{
		{"close-client's line colour", results.Palette[0], 300},
		{"keepalive's line colour", results.Palette[1], 300},
		{"the TIME_WAIT area", results.StateColors["TIME_WAIT"], 5000},
	} {
		n := colorPixels(t, b, c.hex)
		t.Logf("%s (%s): %d pixels", c.what, c.hex, n)
		if n < c.min {
			t.Errorf("%s (%s): %d pixels in the screenshot, want at least %d", c.what, c.hex, n, c.min)
		}
	}
}
