package run

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/loadcap/loadcap/lab"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/sampler"
)

// (e) When the server closes first, TIME_WAIT lands in the server's
// namespace and the client's ports stay free.
func TestLabServerClosesFirst(t *testing.T) {
	if !lab.Privileged() {
		t.Skip("needs root")
	}
	t.Parallel()
	cfg := Config{Rate: 100, Duration: 3 * time.Second, Batch: 10, Client: "close-server", Sysctl: "linux-default",
		Lab: true, LabPorts: 200, Gen: loadgen.DefaultGenConfig(), Timeout: 5 * time.Second, Exe: os.Getenv("LOADCAP_TEST_EXE"),
		Targets: []string{"embedded"}}
	p, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := startLab(context.Background(), p.cfg, "linux-default", []string{loadgen.KindEmbedded})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	doc, err := e.runClient(context.Background(), p.cfg, step{rate: 100, duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tr := doc.Targets[0]
	if tr.WritesFailed != 0 || tr.NewConnections != 300 {
		t.Fatalf("ok %d failed %d connections %d: want 300 writes through 200 ports without error", tr.WritesOK, tr.WritesFailed, tr.NewConnections)
	}
	if tr.PeakTimeWait != 0 {
		t.Errorf("client namespace peak TIME_WAIT %d, want 0", tr.PeakTimeWait)
	}
	s, err := sampler.Open(sampler.Options{NetNS: e.l.NSPath(e.l.ServerNS)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// Not one per write: a client SYN that reuses a 4-tuple still in
	// TIME_WAIT on the server is accepted and ends that TIME_WAIT early
	// (timestamps make it safe), so the server holds one TIME_WAIT per
	// distinct client port it has seen recently.
	if c.TimeWait < 20 {
		t.Errorf("server namespace TIME_WAIT %d, want the server to hold them", c.TimeWait)
	}
}

// A hold probe that starts after the ports are already free (a short reuse
// delay on a busy machine) measures the hold again with a burst of its own.
func TestLabProbeHoldLateStart(t *testing.T) {
	if !lab.Privileged() {
		t.Skip("needs root")
	}
	t.Parallel()
	cfg := Config{Rate: 100, Duration: time.Second, Batch: 10, Client: "close-client", Sysctl: "tw-reuse",
		Lab: true, LabPorts: 200, Gen: loadgen.DefaultGenConfig(), Timeout: 5 * time.Second, Exe: os.Getenv("LOADCAP_TEST_EXE"),
		Targets: []string{"embedded"}}
	p, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := startLab(context.Background(), p.cfg, "tw-reuse", []string{loadgen.KindEmbedded})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Nothing is held: a probe "since 10 s ago" succeeds at once, which
	// says nothing about the hold; the fallback measures the reuse delay.
	hold, err := e.probeHold(context.Background(), p.client, time.Now().Add(-10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if hold < 900*time.Millisecond || hold > 2500*time.Millisecond {
		t.Fatalf("hold %s, want about tcp_tw_reuse_delay (1 s)", hold)
	}
}
