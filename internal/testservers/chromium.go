package testservers

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Chromium is Debian's chromium, which the report tests render pages in
// (scripts/testenv.sh installs it when missing).
const Chromium = "/usr/bin/chromium"

// RequireChromium skips t when Chromium is missing, or fails it when
// servers are required.
func RequireChromium(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Chromium); err != nil {
		if Required() {
			t.Fatalf("%s is missing and %s=1: install Debian's chromium (make test does)", Chromium, EnvRequire)
		}
		t.Skipf("%s is missing: install Debian's chromium package to render the report (make test does; %s=1 makes this a failure)", Chromium, EnvRequire)
	}
}

// RunChromium runs headless Chromium with args after the flags a closed,
// throw-away session needs (its own profile, no background networking) and
// its own log on stderr, and returns its stdout and that log. A failure to
// run fails t.
func RunChromium(t testing.TB, args ...string) (stdout []byte, log string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--hide-scrollbars", "--force-device-scale-factor=1",
		// Chromium's own log on stderr: the page's console messages and
		// uncaught exceptions appear there as "INFO:CONSOLE...".
		"--enable-logging=stderr", "--v=0"}
	cmd := exec.CommandContext(ctx, Chromium, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out, stderr.String()
}

// ConsoleLines returns the lines of a Chromium log that are a page's console
// output or an uncaught exception, and, when page is not empty, errors that
// name it.
func ConsoleLines(log, page string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, ":CONSOLE") || strings.Contains(l, "Uncaught") || (page != "" && strings.Contains(l, page) && strings.Contains(l, "ERROR")) {
			out = append(out, l)
		}
	}
	return out
}

var chartSummary = regexp.MustCompile(`data-charts="(\d+)" data-drawn="(\d+)" data-errors="(\d+)"`)

// ChartSummary reads the summary a report page's script publishes on its
// body once it has run (data-charts, data-drawn, data-errors) from the DOM
// Chromium dumped; ok is false when the page published none.
func ChartSummary(dom []byte) (charts, drawn, errs int, ok bool) {
	m := chartSummary.FindSubmatch(dom)
	if m == nil {
		return 0, 0, 0, false
	}
	charts, _ = strconv.Atoi(string(m[1]))
	drawn, _ = strconv.Atoi(string(m[2]))
	errs, _ = strconv.Atoi(string(m[3]))
	return charts, drawn, errs, true
}
