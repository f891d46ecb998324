package run_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
)

// clientFile writes a client profile file into the test's directory.
func clientFile(t *testing.T, name, body string) string {
	p := filepath.Join(t.TempDir(), name+".toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The second incident: a stateful firewall silently drops pooled
// connections idle longer than its timeout. Without keepalive the pool's
// connections die silently and the first writes after the idle phase fail;
// a heartbeat or TCP keepalive shorter than the timeout keeps them all
// alive; keepalive longer than the timeout does not. For the HTTP and the
// PostgreSQL-wire sinks alike.
func TestLabFirewallIdle(t *testing.T) {
	needLab(t)
	if _, err := os.Stat("/usr/sbin/nft"); err != nil && !testservers.Required() {
		t.Skip("nftables not installed")
	}
	const pool = "conn = \"pool\"\npool_size = 8\nidle_size = 8\n"
	cases := []struct {
		name, client string
		survives     bool
		keepalive    bool // the sampler sees the keepalive timer armed
	}{
		{"no keepalive", "pool-no-keepalive", false, false},
		{"heartbeat 2s", clientFile(t, "heartbeat-2s", pool+"heartbeat = \"2s\"\n"), true, false},
		{"keepalive 2s", clientFile(t, "keepalive-2s", pool+"keepalive = true\nkeepalive_idle = \"2s\"\nkeepalive_interval = \"2s\"\nkeepalive_count = 3\n"), true, true},
		{"keepalive 10s", clientFile(t, "keepalive-10s", pool+"keepalive = true\nkeepalive_idle = \"10s\"\nkeepalive_interval = \"2s\"\nkeepalive_count = 3\n"), false, true},
	}
	for _, target := range []string{"embedded", "embedded-pg"} {
		for _, c := range cases {
			c, target := c, target
			t.Run(target+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				cfg := labConfig(t, c.client, "linux-default", 20, 0)
				cfg.Targets = []string{target}
				cfg.LabPorts = 0
				cfg.LabFirewallIdle = 5 * time.Second
				cfg.Pattern = "write 2s, idle 8s, write 3s"
				cfg.Timeout = 2 * time.Second
				d := execLab(t, cfg)
				tr := d.Targets[0]
				t.Logf("%s: writes %d ok %d errors %v dead %d new connections %d health %+v", c.name, tr.Writes, tr.WritesOK, tr.Errors, tr.DeadConnections, tr.NewConnections, tr.Health)
				if tr.Writes != 100 {
					t.Fatalf("writes %d, want 100 (40 before the idle phase, 60 after)", tr.Writes)
				}
				// The sampler's timer data: which connections were probing
				// (keepalive timer armed while idle) and which retransmitted
				// into the forgotten flow after the idle phase.
				var probing, retransmitting int
				for _, smp := range d.Sampler.Series {
					probing = max(probing, smp.Timers["keepalive"])
					retransmitting = max(retransmitting, smp.Timers["retransmit"])
				}
				t.Logf("%s: most connections with the keepalive timer %d, retransmitting %d", c.name, probing, retransmitting)
				if c.keepalive != (probing > 0) {
					t.Errorf("keepalive timer seen on %d connections, want some: %v", probing, c.keepalive)
				}
				if !c.survives && retransmitting == 0 {
					t.Errorf("no connection seen retransmitting into the dropped flow")
				}
				if c.survives {
					if tr.WritesFailed != 0 || tr.DeadConnections != 0 {
						t.Errorf("want every pooled connection alive after the idle phase: failed %d (%v), dead %d", tr.WritesFailed, tr.Errors, tr.DeadConnections)
					}
					return
				}
				if tr.DeadConnections == 0 || tr.WritesFailed == 0 || tr.Health == nil {
					t.Fatalf("want pooled connections found dead after the idle phase: dead %d failed %d health %+v", tr.DeadConnections, tr.WritesFailed, tr.Health)
				}
				// The first failure is a write due after the idle phase,
				// detected by the write timeout (no RST comes back), and
				// the workload recovers on new connections.
				h := tr.Health
				if h.FirstFailureMS < 10_000 || h.FirstClass != "timeout" || h.DetectMS < 1900 {
					t.Errorf("first failure at %d ms (%s), detected after %.0f ms: want after the idle phase, a timeout of ~2 s", h.FirstFailureMS, h.FirstClass, h.DetectMS)
				}
				if h.RecoveredMS == nil {
					t.Errorf("the workload never recovered: %+v", h)
				}
			})
		}
	}
}
