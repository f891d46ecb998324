package results_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/results"
)

// reportPage renders the report of the real runs of testdata: a
// close-client run on the host (TIME_WAIT builds up), a --find-limit lab
// run (steps and limits) and a dual-write keep-alive run against a sink
// failing 5 % of writes (errors), so that every chart has data.
func reportPage(t *testing.T, paths ...string) []byte {
	t.Helper()
	if len(paths) == 0 {
		paths = []string{"testdata/close-client-host.json", "testdata/close-client-tw-reuse-find-limit.json", "testdata/keepalive-dual-5xx.json"}
	}
	files, err := results.LoadAll(paths)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := results.HTMLReporter(results.Docs(files), results.ReportOptions{Now: time.Date(2026, 11, 21, 18, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The page is self-contained: no URL it would fetch, no external font,
// script or stylesheet, and a CSP that forbids any fetch.
func TestReportSelfContained(t *testing.T) {
	page := string(reportPage(t))
	for _, re := range []string{`(?i)<script[^>]+src=`, `(?i)<link[^>]+href=`, `(?i)@import`, `(?i)url\(\s*['"]?https?:`, `(?i)(src|href)=["']?(https?:)?//`, `(?i)fetch\(`, `(?i)XMLHttpRequest`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("page would fetch: %q", m)
		}
	}
	if !strings.Contains(page, `default-src 'none'`) {
		t.Error("no Content-Security-Policy forbidding fetches")
	}
	for _, w := range []string{"Socket states over time", "Achieved vs asked rate", "Errors per second by class", "Latency by percentile", "Finding the limit", "close-client / tw-reuse (find-limit)"} {
		if !strings.Contains(page, w) {
			t.Errorf("page lacks %q", w)
		}
	}
}

// runChromium runs headless Chromium and fails the test when its log shows
// the page writing to its console or throwing: the report writes nothing
// there unless something failed.
func runChromium(t *testing.T, args ...string) []byte {
	t.Helper()
	out, log := testservers.RunChromium(t, args...)
	for _, l := range testservers.ConsoleLines(log, "") {
		t.Errorf("chromium %v: the page logged: %s", args, l)
	}
	return out
}

// The report of three checked-in real runs (one of them --find-limit, which
// a short test cannot make), opened in headless Chromium: every chart drew
// data, the page's hooks counted no error and Chromium's log shows no
// console output; a screenshot is taken (and kept as docs/report.png with
// -update). run/report_chromium_test.go renders two runs made during the
// test.
func TestReportRendersInChromium(t *testing.T) {
	testservers.RequireChromium(t)
	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	if err := os.WriteFile(html, reportPage(t), 0o644); err != nil {
		t.Fatal(err)
	}
	url := "file://" + html
	dom := string(runChromium(t, "--dump-dom", url))
	charts, drawn, errs, ok := testservers.ChartSummary([]byte(dom))
	if !ok {
		t.Fatalf("the page's script did not publish its summary:\n%.2000s", dom)
	}
	// three socket-state panels, rate, errors, spectrum, find-limit steps
	if charts != 7 || drawn != charts || errs != 0 {
		t.Fatalf("charts=%d drawn=%d errors=%d, want 7 charts all drawn and no error", charts, drawn, errs)
	}
	if !strings.Contains(dom, "[charts=7 drawn=7 errors=0]") {
		t.Errorf("title does not carry the summary")
	}
	png := filepath.Join(dir, "report.png")
	runChromium(t, "--window-size=1320,2300", "--screenshot="+png, url)
	b, err := os.ReadFile(png)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 50_000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("screenshot of %d bytes is not a page full of charts", len(b))
	}
	if *update {
		if err := os.WriteFile(filepath.Join("..", "docs", "report.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A NAT lab run's report draws the translator's chart from the router's
// samples: a real run (testdata/nat-close-client-drops.json: 2 clients at
// 60 writes/s each, close-client, 400 ms sink latency, 50 translated ports)
// whose router held 48 of 50 ports and dropped 320 SYNs. Runs without a
// translator hide the chart (TestReportRendersInChromium counts 7).
func TestReportNATChartInChromium(t *testing.T) {
	testservers.RequireChromium(t)
	page := reportPage(t, "testdata/nat-close-client-drops.json")
	for _, w := range []string{`"nat":{"ports":50,`, `"drop":[`} {
		if !bytes.Contains(page, []byte(w)) {
			t.Fatalf("the page's data lacks %s", w)
		}
	}
	html := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(html, page, 0o644); err != nil {
		t.Fatal(err)
	}
	dom := string(runChromium(t, "--dump-dom", "file://"+html))
	charts, drawn, errs, ok := testservers.ChartSummary([]byte(dom))
	// one socket-state panel, rate, errors, spectrum, the translator
	if !ok || charts != 5 || drawn != charts || errs != 0 {
		t.Fatalf("charts=%d drawn=%d errors=%d (published %v), want 5 charts all drawn and no error", charts, drawn, errs, ok)
	}
	if !strings.Contains(dom, "SYNs dropped (right)") {
		t.Errorf("the translator's legend is missing")
	}
}
