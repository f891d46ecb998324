package fleet_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/results"
)

// loadcapBin is the loadcap binary built by TestMain ("" when the fleet
// simulation cannot run: -short, not root, or no ip; skipSim says why).
var loadcapBin, skipSim string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		switch {
		case testing.Short():
			skipSim = "fleet simulation skipped with -short"
		case os.Geteuid() != 0:
			skipSim = "fleet simulation needs root (network namespaces)"
		}
		if _, err := exec.LookPath("ip"); err != nil && skipSim == "" {
			skipSim = "fleet simulation needs ip (iproute2): " + err.Error()
		}
		if skipSim != "" {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "loadcap-fleet-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet test: make temp dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "loadcap")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/loadcap/loadcap/cmd/loadcap")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "fleet test: build loadcap: %v\n%s", err, out)
			return 1
		}
		loadcapBin = bin
		return m.Run()
	}()
	os.Exit(code)
}

// simNet is the fleet's network: one server namespace with a bridge and one
// namespace per client host, each joined to the bridge by a veth pair.
// Addresses come from 198.18.200.0/24 and exist only inside these
// namespaces.
type simNet struct {
	server string
	hosts  []string
}

const (
	simServerIP = "198.18.200.1"
	simPort     = "8086"
)

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newSimNet creates the namespaces; t.Cleanup deletes them by name (which
// deletes the veths and the bridge), also when the test fails half-way.
func newSimNet(t *testing.T, n int) *simNet {
	prefix := fmt.Sprintf("loadcap-test-%d-fleet", os.Getpid())
	s := &simNet{server: prefix + "-srv"}
	for i := 0; i < n; i++ {
		s.hosts = append(s.hosts, fmt.Sprintf("%s-h%d", prefix, i))
	}
	for _, ns := range append([]string{s.server}, s.hosts...) {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(ctx, "ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", s.server, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", s.server, "addr", "add", simServerIP+"/24", "dev", "br0")
	ipCmd(t, "-n", s.server, "link", "set", "br0", "up")
	for i, h := range s.hosts {
		peer := fmt.Sprintf("vh%d", i)
		// Both ends are created inside their namespaces: no interface ever
		// exists in the host's namespace.
		ipCmd(t, "link", "add", "eth0", "netns", h, "type", "veth", "peer", "name", peer, "netns", s.server)
		ipCmd(t, "-n", s.server, "link", "set", peer, "master", "br0")
		ipCmd(t, "-n", s.server, "link", "set", peer, "up")
		ipCmd(t, "-n", h, "addr", "add", fmt.Sprintf("198.18.200.%d/24", 10+i), "dev", "eth0")
		ipCmd(t, "-n", h, "link", "set", "eth0", "up")
	}
	return s
}

// command runs loadcap in namespace ns.
func (s *simNet) command(ctx context.Context, ns string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, loadcapBin}, args...)...)
}

var sinkStopped = regexp.MustCompile(`loadcap sink: stopped \| writes=(\d+) lines=(\d+) `)

// startSink starts `loadcap sink` in the server namespace and waits for its
// listening line. stop sends SIGTERM and returns the sink's final counts.
func (s *simNet) startSink(t *testing.T, ctx context.Context) (stop func() (writes, lines int64)) {
	cmd := s.command(ctx, s.server, "sink", "--listen", simServerIP+":"+simPort, "--stats-interval", "0")
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sink: %v", err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	done := false
	t.Cleanup(func() {
		if !done {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.After(10 * time.Second)
	for up := false; !up; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("sink exited before listening")
			}
			up = strings.Contains(l, "listening on")
		case <-deadline:
			t.Fatal("sink did not start listening within 10 s")
		}
	}
	return func() (int64, int64) {
		cmd.Process.Signal(syscall.SIGTERM)
		werr := cmd.Wait()
		done = true
		pw.Close()
		var all []string
		for l := range lines {
			all = append(all, l)
			if m := sinkStopped.FindStringSubmatch(l); m != nil {
				w, _ := strconv.ParseInt(m[1], 10, 64)
				n, _ := strconv.ParseInt(m[2], 10, 64)
				return w, n
			}
		}
		t.Fatalf("sink: no stats line at exit (%v): %q", werr, all)
		return 0, 0
	}
}

// rawLatencies reads a --vegeta-results file: one record per write with
// its latency from the intended start to the end, the same quantity (and
// the same µs clamping) as the document's latency histogram.
func rawLatencies(t *testing.T, path string, into *hdrhistogram.Histogram) (n int64) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := vegeta.NewDecoder(bufio.NewReader(f))
	for i := 0; i < 10_000_000; i++ {
		var r vegeta.Result
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return n
			}
			t.Fatalf("decode %s record %d: %v", path, i, err)
		}
		us := r.Latency.Microseconds()
		us = min(max(us, 1), 60_000_000)
		if err := into.RecordValue(us); err != nil {
			t.Fatal(err)
		}
		n++
	}
	t.Fatalf("%s: too many records", path)
	return n
}

// TestFleetSimulation shards one run across three "hosts" (network
// namespaces) writing to one sink, merges the three result files with
// `loadcap merge`, and checks the merge against the sink's own count and
// against a histogram of every write's raw latency.
func TestFleetSimulation(t *testing.T) {
	if loadcapBin == "" {
		// -short is asked for; anything else missing is a failure under
		// make test (LOADCAP_REQUIRE_SERVERS=1).
		if testservers.Required() && !testing.Short() {
			t.Fatalf("%s, and %s=1 forbids skipping", skipSim, testservers.EnvRequire)
		}
		t.Skip(skipSim)
	}
	const (
		hosts     = 3
		fleetRate = 900 // writes/s per target, the whole fleet
		duration  = 4 * time.Second
		batch     = 10
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	net := newSimNet(t, hosts)
	stopSink := net.startSink(t, ctx)
	dir := t.TempDir()
	out := filepath.Join(dir, "results")

	startAt := time.Now().Add(1500 * time.Millisecond).UTC()
	type proc struct {
		cmd    *exec.Cmd
		stderr bytes.Buffer
	}
	var procs []*proc
	for i, ns := range net.hosts {
		p := &proc{}
		p.cmd = net.command(ctx, ns, "run",
			"--targets", "http://"+simServerIP+":"+simPort+"/write?db=loadcap",
			"--rate", strconv.Itoa(fleetRate), "--duration", duration.String(), "--batch", strconv.Itoa(batch),
			"--client", "close-client", "--shard", fmt.Sprintf("%d/%d", i, hosts),
			"--start-at", startAt.Format(time.RFC3339Nano), "--host", fmt.Sprintf("host-%d", i),
			"--out", out, "--vegeta-results", filepath.Join(dir, fmt.Sprintf("vegeta-%d.gob", i)), "--quiet")
		p.cmd.Stderr = &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start shard %d: %v", i, err)
		}
		procs = append(procs, p)
	}
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("shard %d: %v: %s", i, err, p.stderr.String())
		}
	}
	sinkWrites, sinkLines := stopSink()

	// The shards: each paced a third of the rate and waited for --start-at.
	files, err := results.LoadAll([]string{out})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != hosts {
		t.Fatalf("%d result files, want %d", len(files), hosts)
	}
	for _, f := range files {
		d := f.Doc
		if d.Shard == nil || d.Shard.Count != hosts || d.Config.Rate != fleetRate/hosts || d.Shard.FleetRate != fleetRate {
			t.Errorf("%s: shard %+v config.rate %v, want %d/%d of %d", f.Path, d.Shard, d.Config.Rate, fleetRate/hosts, hosts, fleetRate)
		}
		if late := d.StartedAt.Sub(startAt); late < 0 || late > 100*time.Millisecond {
			t.Errorf("%s (shard %d) started %s after --start-at", f.Path, d.Shard.Index, late)
		}
	}

	merged := filepath.Join(dir, "merged.json")
	mout, err := exec.CommandContext(ctx, loadcapBin, "merge", out, "-o", merged).CombinedOutput()
	if err != nil {
		t.Fatalf("loadcap merge: %v: %s", err, mout)
	}
	t.Logf("%s", bytes.TrimSpace(mout))
	mf, err := results.LoadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	doc := mf.Doc
	tg := doc.Targets[0]

	// 1. Counts against the server's own.
	if tg.WritesOK != sinkWrites || tg.LinesOK != sinkLines {
		t.Errorf("merged writes_ok %d lines_ok %d, sink counted writes %d lines %d", tg.WritesOK, tg.LinesOK, sinkWrites, sinkLines)
	}
	if tg.WritesFailed != 0 {
		t.Errorf("%d writes failed: %v", tg.WritesFailed, tg.Errors)
	}
	want := int64(fleetRate * duration.Seconds())
	if tg.Writes < want*97/100 || tg.Writes > want*103/100 {
		t.Errorf("merged writes %d, want about %d (%d writes/s for %s)", tg.Writes, want, fleetRate, duration)
	}
	if doc.Config.Rate != fleetRate || doc.AchievedRate < fleetRate*0.97 {
		t.Errorf("merged config.rate %v achieved %v, want %d", doc.Config.Rate, doc.AchievedRate, fleetRate)
	}

	// 2. The merged histogram against one built from every write's raw
	// latency (--vegeta-results of each shard).
	raw := hdrhistogram.New(1, 60_000_000, 3)
	var rawN int64
	for i := 0; i < hosts; i++ {
		rawN += rawLatencies(t, filepath.Join(dir, fmt.Sprintf("vegeta-%d.gob", i)), raw)
	}
	mh, err := results.DecodeHistogram(tg.Histograms.Latency)
	if err != nil {
		t.Fatal(err)
	}
	if rawN != tg.Writes || !mh.Equals(raw) {
		t.Errorf("merged histogram (%d values, p99 %d µs) differs from the raw latencies (%d values, p99 %d µs)", mh.TotalCount(), mh.ValueAtQuantile(99), rawN, raw.ValueAtQuantile(99))
	}
	if l := results.LatencyOf(raw); l != tg.LatencyMS {
		t.Errorf("merged latency_ms %+v, raw %+v", tg.LatencyMS, l)
	}

	// 3. Fleet figures: three hosts side by side, aligned start, sampler
	// series with every host in it, the fleet's exhaustion rate derived.
	fl := doc.Fleet
	if fl == nil || len(fl.Hosts) != hosts || fl.Shards != hosts {
		t.Fatalf("fleet %+v", fl)
	}
	if fl.StartSpreadMS > 100 {
		t.Errorf("start spread %d ms", fl.StartSpreadMS)
	}
	full := 0
	for _, s := range doc.Sampler.Series {
		if len(s.ByHost) == hosts {
			full++
		}
	}
	if full < 10 {
		t.Errorf("only %d of %d merged samples have all %d hosts", full, len(doc.Sampler.Series), hosts)
	}
	var peak int
	for _, h := range fl.Hosts {
		peak = max(peak, h.PeakTimeWait)
		if h.PeakTimeWait < 500 {
			t.Errorf("%s: peak TIME_WAIT %d: close-client should leave about a TIME_WAIT per write in each host's own namespace", h.Host, h.PeakTimeWait)
		}
	}
	if fl.ExhaustionRatePerHost == nil || doc.Capacity.PredictedExhaustionRate == nil ||
		*doc.Capacity.PredictedExhaustionRate != float64(int64(*fl.ExhaustionRatePerHost*hosts*100+0.5))/100 {
		t.Errorf("fleet exhaustion %v, per host %v", doc.Capacity.PredictedExhaustionRate, fl.ExhaustionRatePerHost)
	}
	t.Logf("sink %d writes %d lines = merged; %d raw latencies = merged histogram, p50 %.3f p99 %.3f max %.3f ms; per-host peak TIME_WAIT %d; exhaustion %.1f/host, fleet %.1f writes/s vs achieved %.1f (headroom %v)",
		sinkWrites, sinkLines, rawN, tg.LatencyMS.P50, tg.LatencyMS.P99, tg.LatencyMS.Max, peak,
		*fl.ExhaustionRatePerHost, *doc.Capacity.PredictedExhaustionRate, doc.AchievedRate, *doc.Capacity.Headroom)

	// 4. compare and report render the merged document: its merged counts,
	// its fleet section and its merged sampler series.
	checkCompare(t, ctx, merged, doc)
	checkReport(t, ctx, merged, doc)

	// 5. A shard of another config is refused: exit 2, one line naming the
	// field and both values (in the order of the files' start times, which
	// the copied shard shares with files[1]).
	other := filepath.Join(dir, "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	d := *files[1].Doc
	d.ID += "-x"
	d.Config.Batch = 20
	if err := results.WriteFile(filepath.Join(other, "x.json"), &d); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, loadcapBin, "merge", files[0].Path, filepath.Join(other, "x.json"), files[2].Path, "-o", filepath.Join(dir, "bad.json"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	msg := strings.TrimSpace(stderr.String())
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "config.batch differs: ") ||
		!strings.Contains(msg, "10 in ") || !strings.Contains(msg, "20 in ") {
		t.Errorf("merge of different configs: %v, stderr %q; want exit 2 and one line naming config.batch", err, msg)
	}
	if b, err := exec.CommandContext(ctx, loadcapBin, "merge", files[0].Path, filepath.Join(other, "x.json"), files[2].Path, "--force", "-o", filepath.Join(dir, "forced.json")).CombinedOutput(); err != nil {
		t.Errorf("merge --force: %v: %s", err, b)
	} else {
		var fd results.Document
		b, _ := os.ReadFile(filepath.Join(dir, "forced.json"))
		if err := json.Unmarshal(b, &fd); err != nil || fd.Fleet == nil || !fd.Fleet.Forced {
			t.Errorf("forced merge not marked: %v", err)
		}
	}
}

// checkCompare runs loadcap compare on the merged document and checks that
// the table shows the merged counts (summed over the hosts) and the fleet
// section: the number of hosts, the weakest host and each host's own rows.
func checkCompare(t *testing.T, ctx context.Context, merged string, doc *results.Document) {
	t.Helper()
	b, err := exec.CommandContext(ctx, loadcapBin, "compare", merged).CombinedOutput()
	if err != nil {
		t.Errorf("loadcap compare: %v: %s", err, b)
		return
	}
	out := string(b)
	fl := doc.Fleet
	var ok, failed, conns int64
	for _, tg := range doc.Targets {
		ok += tg.WritesOK
		failed += tg.WritesFailed
		conns += tg.NewConnections
	}
	want := []string{
		fmt.Sprintf(`writes ok \(all targets\) +%d`, ok),
		fmt.Sprintf(`writes failed \(all targets\) +%d`, failed),
		fmt.Sprintf(`new connections \(all targets\) +%d`, conns),
		fmt.Sprintf(`hosts \(merged runs\) +%d \(of %d shards\)`, len(fl.Hosts), fl.Shards),
		fmt.Sprintf(`weakest host +%s`, regexp.QuoteMeta(fl.WeakestHost)),
		`exhaustion rate per host \(writes/s per target, weakest host\) +[0-9.]+`,
	}
	for _, h := range fl.Hosts {
		n := regexp.QuoteMeta(h.Host)
		want = append(want,
			fmt.Sprintf(`%s: rate achieved \(writes/s per target\) +[0-9.]+`, n),
			fmt.Sprintf(`%s: writes ok \(all targets\) +%d`, n, h.WritesOK),
			fmt.Sprintf(`%s: peak TIME_WAIT \(sockets\) +%d`, n, h.PeakTimeWait),
			fmt.Sprintf(`%s: ports available \(per pool\) +%d`, n, h.Capacity.PortsAvailable),
			fmt.Sprintf(`%s: predicted exhaustion rate \(writes/s per target from this host\) +[0-9.k]+`, n))
	}
	for _, w := range want {
		if !regexp.MustCompile(`(?m)^ +` + w + ` *$`).MatchString(out) {
			t.Errorf("loadcap compare of the merged document lacks a line %q:\n%s", w, out)
		}
	}
}

// checkReport runs loadcap report on the merged document and checks the
// page's embedded chart data: the socket states over time are the merged
// sampler series (each point the sum over the hosts), and the totals and
// the comparison table are the merged ones.
func checkReport(t *testing.T, ctx context.Context, merged string, doc *results.Document) {
	t.Helper()
	html := filepath.Join(t.TempDir(), "report.html")
	if b, err := exec.CommandContext(ctx, loadcapBin, "report", merged, "-o", html).CombinedOutput(); err != nil {
		t.Errorf("loadcap report: %v: %s", err, b)
		return
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^var DATA = (.*);$`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("report %s: no chart data (var DATA = ...;)", html)
	}
	var data struct {
		Runs []struct {
			ID     string `json:"id"`
			States *struct {
				T      []float64        `json:"t"`
				States map[string][]int `json:"states"`
				InUse  []int            `json:"in_use"`
			} `json:"states"`
			Summary []struct{ Name, Value string } `json:"summary"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(m[1], &data); err != nil {
		t.Fatalf("report chart data: %v", err)
	}
	if len(data.Runs) != 1 || data.Runs[0].ID != doc.ID || data.Runs[0].States == nil {
		t.Fatalf("report runs: want the merged document %s with socket states", doc.ID)
	}
	st := data.Runs[0].States
	series := doc.Sampler.Series
	if len(st.T) != len(series) {
		t.Fatalf("report: %d points of socket states, the merged series has %d", len(st.T), len(series))
	}
	var peak, hostPeak int
	for i, s := range series {
		if st.T[i] != float64(s.TMS)/1000 {
			t.Errorf("report point %d at %v s, merged sample at %d ms", i, st.T[i], s.TMS)
		}
		var sum int
		for _, h := range s.ByHost {
			sum += h.States["TIME_WAIT"]
			hostPeak = max(hostPeak, h.States["TIME_WAIT"])
		}
		if got := st.States["TIME_WAIT"][i]; got != s.States["TIME_WAIT"] || got != sum {
			t.Errorf("report TIME_WAIT at %d ms: %d; merged sample %d, sum of its %d hosts %d", s.TMS, got, s.States["TIME_WAIT"], len(s.ByHost), sum)
		}
		if st.InUse[i] != s.PortsInUse {
			t.Errorf("report ports in use at %d ms: %d, merged sample %d", s.TMS, st.InUse[i], s.PortsInUse)
		}
		peak = max(peak, s.States["TIME_WAIT"])
	}
	if peak <= hostPeak {
		t.Errorf("report TIME_WAIT peaks at %d, no more than one host's %d: not the fleet's sum", peak, hostPeak)
	}
	var ok int64
	for _, tg := range doc.Targets {
		ok += tg.WritesOK
	}
	okFailed := ""
	for _, v := range data.Runs[0].Summary {
		if v.Name == "ok / failed" {
			okFailed = v.Value
		}
	}
	if want := fmt.Sprintf("%d / 0", ok); okFailed != want {
		t.Errorf("report summary ok / failed %q, want %q", okFailed, want)
	}
	for _, w := range []string{"weakest host", doc.Fleet.WeakestHost + ": predicted exhaustion rate"} {
		if !bytes.Contains(page, []byte(w)) {
			t.Errorf("report table lacks %q", w)
		}
	}
}
