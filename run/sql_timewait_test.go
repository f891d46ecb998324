package run_test

import (
	"context"
	"testing"
	"time"

	"github.com/loadcap/loadcap/run"
)

// Through run.Execute against embedded-pg, as `loadcap run --targets
// embedded-pg` does: close-client-linger0 leaves no TIME_WAIT toward the
// sink (peak_time_wait 0: the close is Terminate then a reset), while
// close-client leaves one per write on the client.
func TestSQLLinger0PeakTimeWaitEmbeddedPG(t *testing.T) {
	for _, c := range []struct {
		profile string
		linger0 bool
	}{
		{"close-client-linger0", true},
		{"close-client", false},
	} {
		t.Run(c.profile, func(t *testing.T) {
			cfg := sqlConfig(t, "embedded-pg", 100, 2*time.Second)
			cfg.Client = c.profile
			out, err := run.Execute(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			tr := out.Doc.Targets[0]
			t.Logf("%s: writes %d ok %d new connections %d peak_time_wait %d", c.profile, tr.Writes, tr.WritesOK, tr.NewConnections, tr.PeakTimeWait)
			if tr.WritesFailed != 0 || tr.WritesOK != 200 || tr.NewConnections != 200 {
				t.Fatalf("writes ok %d failed %d (%v), new connections %d: want 200 ok, one connection each", tr.WritesOK, tr.WritesFailed, tr.Errors, tr.NewConnections)
			}
			if out.Doc.Sampler == nil {
				t.Fatalf("no sampler in the result: %v", out.Doc.Notes)
			}
			if c.linger0 && tr.PeakTimeWait != 0 {
				t.Fatalf("peak_time_wait %d with SO_LINGER 0, want 0", tr.PeakTimeWait)
			}
			// The sampler's last sample may precede the last closes.
			if !c.linger0 && tr.PeakTimeWait < 150 {
				t.Fatalf("peak_time_wait %d after 200 writes closed by the client, want about 200", tr.PeakTimeWait)
			}
		})
	}
}
