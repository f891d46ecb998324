package run_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// needLab skips a lab test when not privileged, or fails it when
// LOADCAP_REQUIRE_SERVERS=1 (make test) forbids skipping.
func needLab(t *testing.T) {
	t.Helper()
	if !lab.Privileged() {
		testservers.Unavailable(t, "lab tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
	}
}

// labConfig is a lab run with a 200-port client range, so exhaustion comes
// in seconds.
func labConfig(t *testing.T, client, sysctl string, rate float64, d time.Duration) run.Config {
	cfg := baseConfig(t)
	cfg.Lab, cfg.LabPorts = true, 200
	cfg.Client, cfg.Sysctl = client, sysctl
	cfg.Rate, cfg.Duration = rate, d
	cfg.Exe = os.Getenv("LOADCAP_TEST_EXE")
	return cfg
}

// sysctlFile writes a sysctl.d file into the test's directory.
func sysctlFile(t *testing.T, lines ...string) string {
	p := filepath.Join(t.TempDir(), "profile.conf")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var labIDRe = regexp.MustCompile(`lab ([a-z0-9]+):`)

// execLab runs cfg and checks that the lab left nothing behind.
func execLab(t *testing.T, cfg run.Config) *results.Document {
	t.Helper()
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range out.Doc.Notes {
		if m := labIDRe.FindStringSubmatch(n); m != nil {
			cli, srv := lab.Names(m[1])
			for _, ns := range []string{cli, srv} {
				if _, err := os.Stat(filepath.Join(lab.NetnsDir, ns)); err == nil {
					t.Errorf("namespace %s left behind", ns)
				}
			}
		}
	}
	return out.Doc
}

func portErrs(d *results.Document) int64 {
	var n int64
	for _, t := range d.Targets {
		n += t.Errors[loadgen.ClassEADDRNOTAVAIL] + t.Errors[loadgen.ClassEADDRINUSE]
	}
	return n
}

// (b) tcp_tw_reuse=1 lets connect() reuse TIME_WAIT ports after the reuse
// delay, only with timestamps: 100 new connections/s through 200 ports for
// 4 s needs reuse.
func TestLabTWReuseNeedsTimestamps(t *testing.T) {
	needLab(t)
	t.Parallel()
	before, _ := profiles.ReadSysctls("/proc/sys", profiles.RelevantKeys)
	with := execLab(t, labConfig(t, "close-client", "tw-reuse", 100, 4*time.Second))
	without := execLab(t, labConfig(t, "close-client", sysctlFile(t, "net.ipv4.tcp_tw_reuse = 1", "net.ipv4.tcp_timestamps = 0"), 100, 4*time.Second))
	if n := portErrs(with); n != 0 {
		t.Errorf("tw_reuse=1 with timestamps: %d port errors, want 0 (reuse after %s)", n, with.Sysctl["net.ipv4.tcp_tw_reuse_delay"])
	}
	if n := without.Targets[0].Errors[loadgen.ClassEADDRNOTAVAIL]; n < 150 {
		t.Errorf("tw_reuse=1 without timestamps: %d EADDRNOTAVAIL, want ~200: reuse must not happen", n)
	}
	after, _ := profiles.ReadSysctls("/proc/sys", profiles.RelevantKeys)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("host sysctl %s changed from %q to %q by a lab run", k, v, after[k])
		}
	}
}

// (c) tcp_fin_timeout does not shorten TIME_WAIT: the same load fails the
// same way with it at 5 s as with the default.
func TestLabFinTimeoutChangesNothing(t *testing.T) {
	needLab(t)
	t.Parallel()
	def := execLab(t, labConfig(t, "close-client", "linux-default", 100, 4*time.Second))
	fin := execLab(t, labConfig(t, "close-client", sysctlFile(t, "net.ipv4.tcp_tw_reuse = 2", "net.ipv4.tcp_fin_timeout = 5"), 100, 4*time.Second))
	a, b := def.Targets[0], fin.Targets[0]
	if a.NewConnections != 200 || b.NewConnections != 200 {
		t.Errorf("connections opened: default %d, fin_timeout=5 %d; want the 200-port budget for both", a.NewConnections, b.NewConnections)
	}
	if ea, eb := a.Errors[loadgen.ClassEADDRNOTAVAIL], b.Errors[loadgen.ClassEADDRNOTAVAIL]; ea < 150 || math.Abs(float64(ea-eb)) > 5 {
		t.Errorf("EADDRNOTAVAIL: default %d, fin_timeout=5 %d: want the same (~200)", ea, eb)
	}
}

// (d) Two targets: plain connect() has a pool per destination; bind before
// connect shares one and fails with EADDRINUSE: the incident's "two
// databases break it".
func TestLabTwoTargetsConnectVersusBind(t *testing.T) {
	needLab(t)
	t.Parallel()
	cfg := labConfig(t, "close-client", "linux-default", 60, 3*time.Second)
	cfg.Targets = []string{"embedded", "embedded"}
	conn := execLab(t, cfg) // 180 connections per target: fits in a pool of 200 each
	if n := portErrs(conn); n != 0 {
		t.Errorf("connect, two targets: %d port errors, want 0", n)
	}
	cfg.DialMode = profiles.DialBind
	bind := execLab(t, cfg) // 360 connections from one shared pool of 200
	var inuse, opened int64
	for _, tr := range bind.Targets {
		inuse += tr.Errors[loadgen.ClassEADDRINUSE]
		opened += tr.NewConnections
		if tr.Errors[loadgen.ClassEADDRNOTAVAIL] != 0 {
			t.Errorf("bind: %s got EADDRNOTAVAIL, want EADDRINUSE", tr.Name)
		}
	}
	if inuse < 100 || opened > 200 {
		t.Errorf("bind, two targets: %d EADDRINUSE, %d connections; want ~160 and at most the shared 200", inuse, opened)
	}
}

// (f) tcp_max_tw_buckets below the TIME_WAIT count: the kernel skips
// TIME_WAIT (TCPTimeWaitOverflow rises) and the ports never run out.
func TestLabTWBucketsOverflow(t *testing.T) {
	needLab(t)
	t.Parallel()
	d := execLab(t, labConfig(t, "close-client", sysctlFile(t, "net.ipv4.tcp_tw_reuse = 2", "net.ipv4.tcp_max_tw_buckets = 50"), 100, 4*time.Second))
	if n := portErrs(d); n != 0 {
		t.Errorf("%d port errors with tcp_max_tw_buckets=50, want 0", n)
	}
	if d.Targets[0].PeakTimeWait > 50 {
		t.Errorf("peak TIME_WAIT %d above tcp_max_tw_buckets=50", d.Targets[0].PeakTimeWait)
	}
	series := d.Sampler.Series
	if len(series) == 0 || series[len(series)-1].Counters["TcpExt.TCPTimeWaitOverflow"] < 100 {
		t.Errorf("TCPTimeWaitOverflow did not rise: %v", series[len(series)-1].Counters)
	}
}

// --find-limit with tcp_tw_reuse=1: the limit is the budget per reuse delay.
func TestLabFindLimitTWReuse(t *testing.T) {
	needLab(t)
	t.Parallel()
	cfg := labConfig(t, "close-client", "tw-reuse", 100, time.Second)
	cfg.FindLimit = true
	d := execLab(t, cfg)
	checkFindLimit(t, d, 0.5, 2)
}

// (a) close-client with linux-default: fails at the budget, recovers after
// the 60 s TIME_WAIT; the measured limit is budget / 60 s.
func TestLabFindLimitLinuxDefault(t *testing.T) {
	needLab(t)
	if testing.Short() {
		t.Skip("takes about 3.5 minutes (a 60 s hold probe, two 75 s steps)")
	}
	t.Parallel()
	cfg := labConfig(t, "close-client", "linux-default", 100, time.Second)
	cfg.FindLimit = true
	d := execLab(t, cfg)
	checkFindLimit(t, d, 55, 66)
	if d.Steps[0].Errors[loadgen.ClassEADDRNOTAVAIL] == 0 {
		t.Errorf("burst: no EADDRNOTAVAIL: %+v", d.Steps[0])
	}
}

func checkFindLimit(t *testing.T, d *results.Document, holdLow, holdHigh float64) {
	t.Helper()
	// The search chose its rates and lengths: the document records no
	// asked rate and the steps' total time, not --rate and --duration.
	var total float64
	for _, st := range d.Steps {
		total += st.DurationS
	}
	if d.Config.Rate != 0 || math.Abs(d.Config.DurationS-total) > 1e-6 || total == 0 {
		t.Errorf("config rate %v, duration_s %v: want 0 and the steps' total %v", d.Config.Rate, d.Config.DurationS, total)
	}
	c := d.Capacity
	if c.MeasuredExhaustionRate == nil || c.PredictedExhaustionRate == nil {
		t.Fatalf("measured %v predicted %v; notes %v steps %+v", c.MeasuredExhaustionRate, c.PredictedExhaustionRate, d.Notes, d.Steps)
	}
	m, p := *c.MeasuredExhaustionRate, *c.PredictedExhaustionRate
	if math.Abs(m-p)/p > 0.10 {
		t.Errorf("measured %.2f vs predicted %.2f writes/s: more than 10 %% apart; steps %+v", m, p, d.Steps)
	}
	var hold float64
	for _, n := range d.Notes {
		if i := strings.Index(n, "hold "); i >= 0 && strings.HasPrefix(n, "find-limit") {
			var h float64
			if _, err := fmt.Sscan(n[i+5:], &h); err == nil {
				hold = h
			}
		}
	}
	if hold < holdLow || hold > holdHigh {
		t.Errorf("measured hold %.2f s, want %g..%g s", hold, holdLow, holdHigh)
	}
	var low, high *results.Step
	for i := range d.Steps {
		switch d.Steps[i].Phase {
		case "confirm-low":
			low = &d.Steps[i]
		case "confirm-high":
			high = &d.Steps[i]
		}
	}
	if low == nil || high == nil {
		t.Fatalf("confirmation steps missing: %+v", d.Steps)
	}
	// Steps run back to back: for one hold time a step still finds the
	// ports the step before it held (a 1.1x step before the 0.9x one, say),
	// so a step is judged on its port errors from then on.
	if low.SteadyPortErrors != 0 || high.SteadyPortErrors == 0 || high.Errors[loadgen.ClassEADDRNOTAVAIL] == 0 {
		t.Errorf("confirmation: 0.9x had %d port errors in its steady state (want 0; %d in all), 1.1x had %d (want some; %d in all)",
			low.SteadyPortErrors, low.Errors[loadgen.ClassEADDRNOTAVAIL], high.SteadyPortErrors, high.Errors[loadgen.ClassEADDRNOTAVAIL])
	}
}

// SIGINT during a lab run: the result is saved, marked interrupted, and no
// namespace or process is left behind.
func TestLabInterruptCleansUp(t *testing.T) {
	needLab(t)
	t.Parallel()
	out := t.TempDir()
	cmd := exec.Command(os.Getenv("LOADCAP_TEST_EXE"), "run", "--lab", "--lab-ports", "200", "--rate", "50", "--duration", "60s", "--out", out, "--quiet")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	before, _ := lab.Leftovers()
	d := interruptAndLoad(t, cmd, out, &stderr)
	if !d.Interrupted || d.Targets[0].WritesOK < 50 {
		t.Errorf("interrupted=%v writes_ok=%d", d.Interrupted, d.Targets[0].WritesOK)
	}
	m := labIDRe.FindStringSubmatch(strings.Join(d.Notes, "\n"))
	if m == nil {
		t.Fatalf("no lab id in notes %v", d.Notes)
	}
	found := false
	for _, l := range before {
		if strings.Contains(l.Name, m[1]) {
			found = true
		}
	}
	if !found {
		t.Errorf("lab %s was not running before the signal: %v", m[1], before)
	}
	after, _ := lab.Leftovers()
	for _, l := range after {
		if strings.Contains(l.Name, m[1]) {
			t.Errorf("left behind after SIGINT: %+v", l)
		}
	}
}

// A second signal during a --lab run quits at once, with status 130 and
// without draining or saving, but still removes the lab: its namespaces,
// any host link, its owner file, and the processes in it (the load
// generator and the sinks), by their own ids.
func TestLabSecondSignalCleansUp(t *testing.T) {
	needLab(t)
	t.Parallel()
	// Writes hang in the lab's sinks, so the first signal's drain and the
	// lab's closing take seconds: the second signal comes during them.
	p := startBinary(t, "run", "--lab", "--lab-ports", "200", "--rate", "20", "--batch", "10", "--duration", "60s",
		"--sink-latency", "30s", "--timeout", "60s", "--out", t.TempDir(), "--quiet")
	id := waitOwnLab(t, p)
	var pids []int
	for _, ns := range labNamespaces(id) {
		pids = append(pids, netnsPids(t, ns)...)
	}
	if len(pids) < 2 {
		t.Fatalf("processes in lab %s: %v, want the load generator and a sink", id, pids)
	}
	time.Sleep(time.Second) // writes in flight, hanging in the sink
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "interrupted") {
		if time.Now().After(deadline) {
			t.Fatalf("no interruption message 10 s after SIGINT: %q", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-p.exited:
		t.Fatalf("exited before the second signal (%v): the drain should wait for the hanging writes", p.err)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after a second signal; stderr %q", p.stderr.String())
	}
	if code := exitCode(t, p.err); code != 130 {
		t.Errorf("exit %d after a second signal, want 130; stderr %q", code, p.stderr.String())
	}
	left, err := lab.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.RunID == id {
			t.Errorf("left behind after a second signal: %+v", l)
		}
	}
	if _, err := os.Stat(filepath.Join(lab.OwnerDir, id)); !os.IsNotExist(err) {
		t.Errorf("owner file of lab %s: %v, want it removed", id, err)
	}
	// SIGKILL is delivered at once, but a process takes a moment to die.
	deadline = time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d of lab %s still runs", pid, id)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitOwnLab waits until the loadcap process p has made its lab (client
// and server namespaces, each with a process in it) and returns its id.
func waitOwnLab(t *testing.T, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, _ := lab.Leftovers()
		for _, l := range left {
			if l.OwnerPID != p.cmd.Process.Pid || l.Kind != "netns" {
				continue
			}
			cli, srv := lab.Names(l.RunID)
			if len(netnsPids(t, cli)) > 0 && len(netnsPids(t, srv)) > 0 {
				return l.RunID
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("exited (%v) before its lab ran; stderr %q", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lab with its processes 30 s after the start; stderr %q", p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// labNamespaces are the namespaces a lab of run id may have.
func labNamespaces(id string) []string {
	cli, srv := lab.Names(id)
	return []string{cli, srv, lab.RouterName(id)}
}

// netnsPids lists the processes in namespace ns (none if it is gone).
func netnsPids(t *testing.T, ns string) []int {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ip netns pids %s: %q", ns, out)
		}
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether process pid exists and is not a zombie (an
// orphan waiting for init to reap it has already stopped).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// Profiles from a profiles directory work in the lab too: the sysctl
// profile is applied to the client namespace and the client profile reaches
// the load generator the lab starts there (it gets the directory). A
// close-client copy named my-close through a 200-port range at 100 new
// connections/s for 4 s runs out, as close-client does.
func TestLabProfilesDirectory(t *testing.T) {
	needLab(t)
	t.Parallel()
	dir := t.TempDir()
	client := "conn = \"per-write\"\ncloser = \"client\"\ndial_mode = \"connect\"\n"
	if err := os.WriteFile(filepath.Join(dir, "my-close.toml"), []byte(client), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "my-sysctl.conf"), []byte("net.ipv4.tcp_tw_reuse = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := labConfig(t, "my-close", "my-sysctl", 100, 4*time.Second)
	cfg.ProfilesDir = dir
	d := execLab(t, cfg)
	if d.Config.ClientProfile != "my-close" || d.Config.SysctlProfile != "my-sysctl" {
		t.Errorf("profiles %q / %q, want my-close / my-sysctl", d.Config.ClientProfile, d.Config.SysctlProfile)
	}
	if got := d.Sysctl["net.ipv4.tcp_tw_reuse"]; got != "0" {
		t.Errorf("tcp_tw_reuse in force %q, want 0 from my-sysctl.conf", got)
	}
	if tr := d.Targets[0]; tr.NewConnections != 200 || tr.Errors[loadgen.ClassEADDRNOTAVAIL] < 150 {
		t.Errorf("my-close: %d new connections, %d EADDRNOTAVAIL; want the 200-port budget used up (one connection per write)", tr.NewConnections, tr.Errors[loadgen.ClassEADDRNOTAVAIL])
	}
}
