package profiles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `profiles lint` explains the conntrack keys of the NAT profiles: they act
// on a translator, per namespace, except the global table size.
func TestLintConntrackKeys(t *testing.T) {
	proc := t.TempDir()
	for _, k := range []string{"nf_conntrack_tcp_timeout_time_wait", "nf_conntrack_tcp_timeout_close", "nf_conntrack_tcp_timeout_established",
		"nf_conntrack_tcp_loose", "nf_conntrack_tcp_be_liberal", "nf_conntrack_max"} {
		p := filepath.Join(proc, "net/netfilter", k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"nat-default", "nat-short-tw"} {
		s, err := LoadSysctl(name)
		if err != nil {
			t.Fatal(err)
		}
		tw := s.Map()["net.netfilter.nf_conntrack_tcp_timeout_time_wait"]
		if want := map[string]string{"nat-default": "120", "nat-short-tw": "30"}[name]; tw != want {
			t.Errorf("%s: conntrack TIME_WAIT %q, want %s", name, tw, want)
		}
		for _, f := range Lint(s, proc) {
			if f.Verdict != VerdictNAT || f.Scope != "per-namespace" || !strings.Contains(f.Message, "translator") {
				t.Errorf("%s %s: %+v; want a per-namespace NAT key", name, f.Key, f)
			}
			if f.Key == "net.netfilter.nf_conntrack_tcp_timeout_time_wait" && !strings.Contains(f.Message, "stays "+tw+" s") {
				t.Errorf("%s: %q", f.Key, f.Message)
			}
		}
	}
	s, err := ParseSysctl("t.conf", "t", []byte("net.netfilter.nf_conntrack_max = 1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := Lint(s, proc)[0]
	if f.Verdict != VerdictNAT || f.Scope != "global" || !strings.Contains(f.Message, "read-only inside a network namespace") {
		t.Errorf("nf_conntrack_max: %+v; want a global NAT key", f)
	}
}
