package run_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// `loadcap capacity` behind NAT answers for a Kubernetes node: 30 pods
// behind one address, default conntrack, close-client. On this kernel the
// translator evicts closed flows' conntrack entries (docs/nat.md), so each
// pod's own TIME_WAIT binds first at 470.5 writes/s; on a kernel that does
// not evict, the node's 64,512 ports / 120 s shared by 30 pods bind at
// 17.9 writes/s per pod, below the 50 writes/s each of the example.
func TestCLICapacityNAT(t *testing.T) {
	base := []string{"capacity", "--client", "close-client,close-server,close-client-linger0,keepalive", "--sysctl", "linux-default",
		"--nat-ports", "1024-65535", "--nat-addrs", "1", "--conntrack-tw", "120", "--clients", "30"}
	code, stdout, stderr := runCLI(t, nil, base...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	cells := matrixCells(t, stdout, "behind NAT: 30 clients sharing 1024-65535 x 1 address(es)")
	want := map[string]string{"close-client": "470.5 host", "close-server": "never", "close-client-linger0": "never", "keepalive": "never"}
	for c, w := range want {
		if cells[c]["linux-default"] != w {
			t.Errorf("%s: %q, want %q", c, cells[c]["linux-default"], w)
		}
	}
	if !strings.Contains(stdout, "the clients' own ports run out first, at 470.5 writes/s per client per target") ||
		!strings.Contains(stdout, "a kernel without that eviction would run out at 17.9 writes/s per client") {
		t.Errorf("close-client's NAT explanation missing:\n%s", stdout)
	}

	code, stdout, stderr = runCLI(t, nil, append(base, "--nat-no-evict", "--json")...)
	if code != 0 || stderr != "" {
		t.Fatalf("--nat-no-evict --json: exit %d, stderr %q", code, stderr)
	}
	var doc struct {
		NAT struct {
			Clients int  `json:"clients"`
			Evicts  bool `json:"evicts_time_wait"`
		} `json:"nat"`
		Rows []struct {
			Client string `json:"client"`
			Cells  []struct {
				NAT struct {
					Rate    *float64 `json:"predicted_exhaustion_rate"`
					Binds   string   `json:"binds"`
					Failure string   `json:"failure"`
				} `json:"nat"`
			} `json:"cells"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.NAT.Clients != 30 || doc.NAT.Evicts {
		t.Fatalf("--json: %v, nat %+v", err, doc.NAT)
	}
	for _, r := range doc.Rows {
		n := r.Cells[0].NAT
		switch r.Client {
		case "close-client":
			if n.Rate == nil || math.Abs(*n.Rate-64512.0/120/30) > 1e-9 || n.Binds != "nat" || n.Failure != "connect-timeout" {
				t.Errorf("close-client without eviction: %+v, want %.4g nat connect-timeout", n, 64512.0/120/30)
			}
		case "close-client-linger0":
			if n.Rate == nil || math.Abs(*n.Rate-64512.0/10/30) > 1e-9 || n.Binds != "nat" {
				t.Errorf("linger0 without eviction: %+v, want %.4g nat (10 s CLOSE entries)", n, 64512.0/10/30)
			}
		case "keepalive":
			if n.Rate != nil || n.Binds != "" {
				t.Errorf("keepalive: %+v, want never", n)
			}
		}
	}

	// The example's question, at 50 writes/s per pod: 9.41x headroom on
	// this kernel (each pod's own ports bind), and past the limit on a
	// kernel without eviction (the translator's 17.9 writes/s per pod).
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "9.41x host"},
		{[]string{"--nat-no-evict"}, "runs out (0.36x) nat"},
	} {
		args := append([]string{"capacity", "--client", "close-client", "--sysctl", "linux-default",
			"--nat-ports", "1024-65535", "--clients", "30", "--rate", "50"}, tc.extra...)
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("--rate 50 %v: exit %d, stderr %q", tc.extra, code, stderr)
		}
		cells := matrixCells(t, stdout, "at 50 writes/s per client per target: headroom")
		if got := cells["close-client"]["linux-default"]; got != tc.want {
			t.Errorf("--rate 50 %v: %q, want %q\n%s", tc.extra, got, tc.want, stdout)
		}
	}

	for _, bad := range [][]string{
		{"--rate", "0"},
		{"--rate", "fast"},
		{"--nat-ports", "65535-1024"},
		{"--nat-ports", "1024"},
		{"--nat-ports", "1-2", "--clients", "0"},
		{"--nat-ports", "1-2", "--conntrack-tw", "-3"},
		{"--clients", "4"},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{"capacity", "--client", "close-client", "--sysctl", "linux-default"}, bad...)...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--") {
			t.Errorf("%v: exit %d, stderr %q; want status 2 and one line naming the flag", bad, code, stderr)
		}
	}
}
