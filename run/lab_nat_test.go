package run_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// natLabRun runs client at rate writes/s per client for 4 s in a NAT lab:
// 2 clients with 200 ports each behind 200 translated ports.
func natLabRun(t *testing.T, client string) *results.Document {
	t.Helper()
	cfg := labConfig(t, client, "linux-default", 100, 4*time.Second)
	cfg.LabNATPorts, cfg.LabClients = 200, 2
	cfg.LabNATSysctl = "nat-short-tw"
	doc := execLab(t, cfg)
	natGone(t, doc, 2)
	if doc.NAT == nil || doc.Fleet == nil || len(doc.Fleet.Hosts) != 2 || doc.Config.LabNATPorts != 200 || doc.Config.LabClients != 2 {
		t.Fatalf("NAT lab document: nat %+v, fleet %v, config %+v", doc.NAT, doc.Fleet, doc.Config)
	}
	if len(doc.NAT.Samples) < 3 || doc.NAT.RouterSysctls["net.netfilter.nf_conntrack_tcp_timeout_time_wait"] != "30" {
		t.Errorf("NAT record: %d samples, router sysctls %v", len(doc.NAT.Samples), doc.NAT.RouterSysctls)
	}
	if doc.NAT.PeakHeld > 200 {
		t.Errorf("peak %d flows holding a translated port, more than the 200 ports", doc.NAT.PeakHeld)
	}
	return doc
}

// natGone checks that no client namespace of a NAT lab with clients
// clients, nor its router, is left after the run of doc.
func natGone(t *testing.T, doc *results.Document, clients int) {
	t.Helper()
	for _, n := range doc.Notes {
		if m := labIDRe.FindStringSubmatch(n); m != nil {
			for i := range clients {
				ns, _, _ := lab.NATClientNames(m[1], i)
				for _, name := range []string{ns, lab.RouterName(m[1])} {
					if _, err := os.Stat(filepath.Join(lab.NetnsDir, name)); err == nil {
						t.Errorf("namespace %s left behind", name)
					}
				}
			}
		}
	}
}

// --find-limit through a NAT lab: 2 clients with 200 ports each and
// tcp_tw_reuse=1 (a client's port comes back 1 s after its TIME_WAIT
// began) behind 200 translated ports, every step run by both clients at
// once. A client that reuses its own port re-opens the router's TIME_WAIT
// entry of that tuple (fact n9), and other TIME_WAIT entries are evicted
// when the translated ports run out (n1): the translator does not run out,
// each client's own ports do, at 200 ports per 1 s reuse delay. The fleet's
// measured limit per client must be within 5 % of the model's (the lower of
// the host and translator stages), with the host's failure (port errors),
// never connect timeouts.
func TestLabNATFindLimit(t *testing.T) {
	needLab(t)
	t.Parallel()
	cfg := labConfig(t, "close-client", "tw-reuse", 100, time.Second)
	cfg.FindLimit = true
	cfg.LabNATPorts, cfg.LabClients = 200, 2
	doc := execLab(t, cfg)
	natGone(t, doc, 2)
	if doc.NAT == nil || doc.NAT.FindLimit == nil {
		t.Fatalf("no NAT find-limit record: nat %+v; notes %v", doc.NAT, doc.Notes)
	}
	f := doc.NAT.FindLimit
	if f.PredictedStage != capacity.StageHost || f.PredictedFailure != capacity.FailPortError || f.NATRate != nil {
		t.Errorf("model: stage %q failure %q, translator %v; want the host with port errors, the translator never (%s)", f.PredictedStage, f.PredictedFailure, f.NATRate, f.Explanation)
	}
	if f.MeasuredRate == nil || f.PredictedRate == nil {
		t.Fatalf("measured %v, predicted %v; steps %+v; notes %v", f.MeasuredRate, f.PredictedRate, doc.Steps, doc.Notes)
	}
	m, p := *f.MeasuredRate, *f.PredictedRate
	if math.Abs(m-p)/p > 0.05 || f.MeasuredFailure != capacity.FailPortError {
		t.Errorf("measured %.2f writes/s per client (%q) vs predicted %.2f (%q): want within 5 %% and the same failure; steps %+v", m, f.MeasuredFailure, p, f.PredictedFailure, doc.Steps)
	}
	var rows []string
	for _, st := range doc.Steps {
		if st.Fleet == nil || st.Fleet.Clients != 2 {
			t.Fatalf("step %+v: want the fleet of 2 clients", st)
		}
		if st.Fleet.Errors[loadgen.ClassETIMEDOUT] != 0 {
			t.Errorf("step at %.1f writes/s: %d connect timeouts, want none (the translator does not run out)", st.Rate, st.Fleet.Errors[loadgen.ClassETIMEDOUT])
		}
		rows = append(rows, fmt.Sprintf("%s %.1f: %d of 2 failed (%d in the steady state), errors %v, router drop %d", st.Phase, st.Rate, st.Fleet.Failed, st.Fleet.SteadyFailed, st.Fleet.Errors, st.Fleet.RouterDrop))
	}
	if *doc.Capacity.PredictedExhaustionRate != p {
		t.Errorf("document's predicted rate %v, want the NAT model's %v", *doc.Capacity.PredictedExhaustionRate, p)
	}
	t.Logf("NAT find-limit, 2 clients x 200 ports, tw-reuse, 200 translated ports: measured %.2f writes/s per client (%s), predicted %.2f (%s first, %s); router drop %d, insert_failed %d, peak held %d; steps: %s",
		m, f.MeasuredFailure, p, f.PredictedStage, f.PredictedFailure, doc.NAT.Drop, doc.NAT.InsertFailed, doc.NAT.PeakHeld, strings.Join(rows, "; "))
}

// Behind a NAT whose range is no larger than each client's own, the
// clients' own ports bind first for close-client (each client's TIME_WAIT
// holds its port 60 s; the translator evicts its TIME_WAIT entries), as
// capacity.PredictNAT says; with close-server nothing runs out. 800 flows
// went through 200 translated ports in each run.
func TestLabNATStages(t *testing.T) {
	needLab(t)
	t.Parallel()
	k := capacity.DefaultKernel()
	k.PortLow, k.PortHigh = 40000, 40199
	nat := capacity.NAT{PortLow: lab.NATPortStart, PortHigh: lab.NATPortStart + 199, Addrs: 1, ConntrackTimeWait: 30 * time.Second, Clients: 2}
	for _, c := range []struct {
		client string
		closer string
		binds  string
	}{{"close-client", capacity.CloserClient, capacity.StageHost}, {"close-server", capacity.CloserServer, ""}} {
		t.Run(c.client, func(t *testing.T) {
			t.Parallel()
			pred := capacity.PredictNAT(capacity.Input{Kernel: k, Client: capacity.Client{NewConnsPerWrite: 1, Closer: c.closer}, Targets: 1}, nat)
			if pred.Binds != c.binds {
				t.Fatalf("model: %q binds (%s), this test expects %q", pred.Binds, pred.Explanation, c.binds)
			}
			doc := natLabRun(t, c.client)
			var writes, errs int64
			classes := map[string]int64{}
			for _, tg := range doc.Targets {
				writes += tg.WritesOK
				for k, n := range tg.Errors {
					errs += n
					classes[k] += n
				}
			}
			pe := portErrs(doc)
			last := doc.NAT.Samples[len(doc.NAT.Samples)-1]
			peakTW := 0
			for _, s := range doc.NAT.Samples {
				peakTW = max(peakTW, s.TimeWait)
			}
			// Hundreds of flows through 200 ports: the router keeps at most
			// one TIME_WAIT entry per translated port (evicted, not piled up).
			if peakTW < 100 || peakTW > 200 {
				t.Errorf("router TIME_WAIT entries peaked at %d, want 100..200 (one per translated port at most)", peakTW)
			}
			switch c.binds {
			case capacity.StageHost:
				// Each client has 200 ports for 400 writes: about 200 port
				// errors each, the translator none of its own.
				if pe < 300 || writes < 300 || writes > 500 {
					t.Errorf("close-client: %d writes ok, %d port errors; want about 400 and 400 (each client's own 200 ports)", writes, pe)
				}
			default:
				// The clients' ports never run out. On a loaded machine the
				// sinks lag, flows pile up open, and once they hold every
				// translated port the router drops SYNs: such failures must
				// show in its counters. A few write timeouts (at most 1 %)
				// with the router dropping nothing are the loaded machine's
				// lag, not the translator's (a CI run had 1 of 800).
				if pe != 0 || writes+errs < 700 || (errs > 8 && doc.NAT.Drop == 0 && doc.NAT.PeakHeld < 190) {
					t.Errorf("close-server: %d writes ok, %d errors %v (%d port errors), router drop %d, peak held %d; want about 800, no port error, and any failure backed by the router", writes, errs, classes, pe, doc.NAT.Drop, doc.NAT.PeakHeld)
				}
			}
			t.Logf("NAT lab %s, 2 clients x 100 writes/s x 4 s through 200 translated ports: %d writes ok, %d errors %v (%d port errors); router: peak %d entries, peak %d holding a port, peak %d TIME_WAIT, last sample %+v; model: %s",
				c.client, writes, errs, classes, pe, doc.NAT.PeakEntries, doc.NAT.PeakHeld, peakTW, last, pred.Explanation)
		})
	}
}

// A NAT lab run that fails after its namespaces were made (here, sinks that
// never come up) returns the error and leaves no namespace or link of its
// lab: not the router (with its nftables table), not a client, not the
// server.
//
// Not parallel: it counts the labs this process owns, and a parallel test
// beside it owns live labs of its own.
func TestLabNATErrorCleansUp(t *testing.T) {
	needLab(t)
	cfg := labConfig(t, "close-client", "linux-default", 20, time.Second)
	cfg.LabNATPorts, cfg.LabClients = 200, 2
	cfg.Exe = "/bin/true" // the lab's sinks exit at once
	before, err := lab.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Execute(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "did not come up") {
		t.Fatalf("run with sinks that exit: %v, want the sink error", err)
	}
	noNewOwnLabs(t, before)
}

// Bad NAT lab flags exit 2 with one line naming the flag, before anything
// is created.
func TestCLILabNATBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--lab-nat-ports", "200"}, "--lab-nat-ports needs --lab"},
		{[]string{"--lab", "--lab-clients", "2"}, "--lab-clients needs --lab-nat-ports"},
		{[]string{"--lab", "--lab-nat-ports", "70000"}, "bad --lab-nat-ports 70000"},
		{[]string{"--lab", "--lab-nat-ports", "200", "--lab-clients", "17"}, "bad --lab-clients 17"},
		{[]string{"--lab", "--lab-nat-ports", "200", "--lab-nat-tw", "1500ms"}, "bad --lab-nat-tw"},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{"run", "--targets", "embedded", "--duration", "1s", "--out", t.TempDir()}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want status 2 and one line with %q", c.args, code, stderr, c.want)
		}
	}
}

// SIGINT during a NAT lab run: the merged result is saved, marked
// interrupted, with the router's record, and no namespace of the lab (the
// router with its nftables table, every client, the server) is left.
func TestLabNATInterruptCleansUp(t *testing.T) {
	needLab(t)
	t.Parallel()
	out := t.TempDir()
	cmd := exec.Command(os.Getenv("LOADCAP_TEST_EXE"), "run", "--lab", "--lab-ports", "200", "--lab-nat-ports", "50", "--lab-clients", "2",
		"--client", "close-server", "--rate", "20", "--duration", "60s", "--out", out, "--quiet")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var id string
	for deadline := time.Now().Add(20 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		left, _ := lab.Leftovers()
		for _, l := range left {
			if l.OwnerPID == cmd.Process.Pid && strings.HasSuffix(l.Name, "-cli1") {
				id = l.RunID
			}
		}
	}
	if id == "" {
		cmd.Process.Kill()
		t.Fatalf("no NAT lab with a second client appeared; stderr %s", stderr.String())
	}
	time.Sleep(3 * time.Second)
	d := interruptAndLoad(t, cmd, out, &stderr)
	if !d.Interrupted || d.NAT == nil || len(d.NAT.Samples) == 0 || d.Fleet == nil || len(d.Fleet.Hosts) != 2 {
		t.Errorf("interrupted=%v nat=%+v fleet=%v", d.Interrupted, d.NAT, d.Fleet)
	}
	after, _ := lab.Leftovers()
	for _, l := range after {
		if l.RunID == id {
			t.Errorf("left behind after SIGINT: %+v", l)
		}
	}
}

// interruptAndLoad sends SIGINT to a running `loadcap run`, waits (at most
// 30 s) for it to exit and loads the one result it saved in out.
func interruptAndLoad(t *testing.T, cmd *exec.Cmd, out string, stderr *strings.Builder) *results.Document {
	t.Helper()
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("loadcap did not stop within 30 s of SIGINT")
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) != 1 {
		t.Fatalf("result files %v; stderr %s", files, stderr.String())
	}
	d, err := results.Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The grid, by traffic: 200 translated ports x conntrack TIME_WAIT
// {120 s, 30 s} x clients {1, 4} x {close-client, close-server,
// close-client-linger0, keepalive}, every client at 60 writes/s for 5 s
// with 200 ports of its own. The model (capacity.PredictNAT) names the
// stage that runs out first and its failure class; the lab must show that
// class first and no other: close-client runs out of its own ports
// (EADDRNOTAVAIL after its 200) and the translator drops nothing, though
// the fleet opens up to 1,200 flows in 5 s through 200 ports, 9 to 144
// times the rate ports / conntrack TIME_WAIT / clients would allow without
// eviction; the other profiles run out of nothing. The failure classes
// are the stages': EADDRNOTAVAIL (the client's own ports) and ETIMEDOUT
// (connect() timed out: the translator dropped every SYN, fact n5). A
// single dropped SYN only delays a flow by 1 s (fact n2), and write
// timeouts or writes not started are the loaded machine's, not a port
// budget's: they are logged, not counted.
func TestLabNATGrid(t *testing.T) {
	needLab(t)
	t.Parallel()
	const ports, rate, secs = 200, 60.0, 5
	k := capacity.DefaultKernel()
	k.PortLow, k.PortHigh = 40000, 40000+ports-1
	for _, tw := range []int{120, 30} {
		for _, clients := range []int{1, 4} {
			for _, client := range []string{"close-client", "close-server", "close-client-linger0", "keepalive"} {
				t.Run(fmt.Sprintf("tw%d/clients%d/%s", tw, clients, client), func(t *testing.T) {
					t.Parallel()
					p, err := profiles.LoadClient(client)
					if err != nil {
						t.Fatal(err)
					}
					nat := capacity.NAT{PortLow: lab.NATPortStart, PortHigh: lab.NATPortStart + ports - 1, Addrs: 1,
						ConntrackTimeWait: time.Duration(tw) * time.Second, Clients: clients}
					pred := capacity.PredictNAT(capacity.Input{Kernel: k, Client: capacity.ClientFromProfile(p), Targets: 1}, nat)
					noEvict := nat
					noEvict.NoEvict = true
					textbook := capacity.PredictNAT(capacity.Input{Kernel: k, Client: capacity.Client{NewConnsPerWrite: 1}, Targets: 1}, noEvict).NATRate

					cfg := labConfig(t, client, "linux-default", rate, secs*time.Second)
					cfg.LabNATPorts, cfg.LabClients, cfg.LabNATTimeWait = ports, clients, time.Duration(tw)*time.Second
					doc := execLab(t, cfg)
					if doc.NAT == nil {
						t.Fatalf("no NAT record")
					}
					classes := map[string]int64{}
					var ok int64
					for _, tg := range doc.Targets {
						ok += tg.WritesOK
						for c, n := range tg.Errors {
							classes[c] += n
						}
					}
					pe, connTimeouts := portErrs(doc), classes[loadgen.ClassETIMEDOUT]
					switch pred.Failure {
					case capacity.FailPortError:
						// Each client: 300 writes, 200 ports.
						if pe < int64(clients)*60 || connTimeouts != 0 {
							t.Errorf("model: %s first; lab: %d ok, errors %v, router drop %d, peak held %d; want EADDRNOTAVAIL (about %d), no connect timeout", pred.Binds, ok, classes, doc.NAT.Drop, doc.NAT.PeakHeld, clients*100)
						}
					case "":
						if pe != 0 || connTimeouts != 0 {
							t.Errorf("model: nothing runs out; lab: %d ok, errors %v, router drop %d, peak held %d; want no port error, no connect timeout", ok, classes, doc.NAT.Drop, doc.NAT.PeakHeld)
						}
					default:
						t.Errorf("model names %s (%s): this grid expects the host or nothing on this kernel", pred.Binds, pred.Explanation)
					}
					t.Logf("GRID tw=%ds clients=%d %s: model %q first at %s writes/s per client (failure %q); without eviction the translator would run out at %.2f writes/s per client, run at %.0f (%.0fx); lab: %d ok, errors %v, router: peak held %d, peak entries %d, drop %d, insert_failed %d",
						tw, clients, client, pred.Binds, capacity.FormatRate(pred.ExhaustionRate), pred.Failure, textbook, rate, rate/textbook, ok, classes, doc.NAT.PeakHeld, doc.NAT.PeakEntries, doc.NAT.Drop, doc.NAT.InsertFailed)
				})
			}
		}
	}
}
