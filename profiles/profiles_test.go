package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuiltinClients(t *testing.T) {
	want := []string{"close-client", "close-client-bind", "close-client-bind-no-port", "close-client-linger0",
		"close-server", "keepalive", "pool-heartbeat", "pool-no-keepalive", "pool-os-keepalive", "small-idle-pool"}
	if got := ClientNames(); !slices.Equal(got, want) {
		t.Fatalf("ClientNames() = %v, want %v", got, want)
	}
	for _, n := range want {
		c, err := LoadClient(n)
		if err != nil {
			t.Fatalf("LoadClient(%s): %v", n, err)
		}
		if c.Name != n || c.Description == "" {
			t.Errorf("%s: name %q, description %q", n, c.Name, c.Description)
		}
	}
	// The contract of the built-ins the issue names.
	c, _ := LoadClient("keepalive")
	if c.Conn != ConnPool || c.PoolSize != 64 || c.IdleSize != 64 || c.DialModeOrDefault() != DialConnect {
		t.Errorf("keepalive = %+v", c)
	}
	c, _ = LoadClient("small-idle-pool")
	if c.Conn != ConnPool || c.PoolSize != 0 || c.IdleSize != 2 {
		t.Errorf("small-idle-pool = %+v", c)
	}
	c, _ = LoadClient("close-client")
	if c.Pooled() || c.Closer != CloserClient || c.DialMode != DialConnect {
		t.Errorf("close-client = %+v", c)
	}
	c, _ = LoadClient("close-server")
	if c.Pooled() || c.Closer != CloserServer {
		t.Errorf("close-server = %+v", c)
	}
	c, _ = LoadClient("pool-heartbeat")
	if c.Heartbeat.D().String() != "10s" {
		t.Errorf("pool-heartbeat heartbeat = %v", c.Heartbeat.D())
	}
	c, _ = LoadClient("pool-os-keepalive")
	if !c.KeepAlive || c.KeepAliveIdle == 0 {
		t.Errorf("pool-os-keepalive = %+v", c)
	}
}

func TestBuiltinSysctls(t *testing.T) {
	want := []string{"host", "incident-2020", "keepalive-600", "linux-default", "nat-default", "nat-short-tw", "tw-reuse", "wide-range"}
	if got := SysctlNames(); !slices.Equal(got, want) {
		t.Fatalf("SysctlNames() = %v, want %v", got, want)
	}
	for _, n := range want {
		s, err := LoadSysctl(n)
		if err != nil {
			t.Fatalf("LoadSysctl(%s): %v", n, err)
		}
		if len(s.Entries) == 0 {
			t.Errorf("%s: no entries", n)
		}
	}
	s, _ := LoadSysctl("incident-2020")
	got := s.Map()
	inc := map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.tcp_syncookies": "1", "net.ipv4.tcp_tw_reuse": "1",
		"net.ipv4.tcp_tw_recycle": "1", "net.ipv4.tcp_fin_timeout": "30"}
	if len(got) != len(inc) {
		t.Errorf("incident-2020 = %v, want %v", got, inc)
	}
	for k, v := range inc {
		if got[k] != v {
			t.Errorf("incident-2020 %s = %q, want %q", k, got[k], v)
		}
	}
	s, _ = LoadSysctl("linux-default")
	if m := s.Map(); m["net.ipv4.ip_local_port_range"] != "32768 60999" || m["net.ipv4.tcp_tw_reuse"] != "2" || m["net.ipv4.tcp_timestamps"] != "1" {
		t.Errorf("linux-default = %v", m)
	}
	s, _ = LoadSysctl("wide-range")
	if m := s.Map(); m["net.ipv4.ip_local_port_range"] != "1024 65535" {
		t.Errorf("wide-range = %v", m)
	}
	s, _ = LoadSysctl("host")
	if s.Map()["net.ipv4.ip_local_port_range"] == "" {
		t.Errorf("host profile lacks ip_local_port_range: %v", s.Map())
	}
}

func TestParseSysctlSyntax(t *testing.T) {
	data := "# comment\n; comment too\n\n  net/ipv4/tcp_tw_reuse = 1\n-net.ipv4.tcp_tw_reuse_delay=500\nnet.ipv4.ip_local_port_range =\t1024\t 65535 \nnet/ipv4/conf/eth0.100/forwarding = 0\nnet.ipv4.ip_local_reserved_ports =\n"
	s, err := ParseSysctl("x.conf", "x", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Key: "net.ipv4.tcp_tw_reuse", Value: "1", Line: 4},
		{Key: "net.ipv4.tcp_tw_reuse_delay", Value: "500", Line: 5, IgnoreErrors: true},
		{Key: "net.ipv4.ip_local_port_range", Value: "1024 65535", Line: 6},
		{Key: "net.ipv4.conf.eth0/100.forwarding", Value: "0", Line: 7},
		{Key: "net.ipv4.ip_local_reserved_ports", Value: "", Line: 8},
	}
	if !slices.Equal(s.Entries, want) {
		t.Errorf("entries = %+v\nwant %+v", s.Entries, want)
	}
	if keyPath("net.ipv4.conf.eth0/100.forwarding") != "net/ipv4/conf/eth0.100/forwarding" {
		t.Errorf("keyPath round trip broken")
	}
	// Text renders a file that parses back to the same entries (lines aside).
	back, err := ParseSysctl("y", "y", []byte(s.Text()))
	if err != nil || len(back.Entries) != len(want) {
		t.Fatalf("Text round trip: %v %+v", err, back)
	}
}

// TestBadProfiles: each bad file gives one line naming the file, the line and
// the key.
func TestBadProfiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		what  string
		load  func(string) error
		name  string
		body  string
		wants []string // substrings of the error, besides the file name
	}{
		// unknown TOML key, with its line
		{"unknown key", client, "typo.toml", "conn = \"pool\"\npool_sise = 3\n", []string{":2:", `"pool_sise"`, "unknown key"}},
		// unknown table key
		{"unknown nested key", client, "nested.toml", "conn = \"pool\"\n[extra]\nx = 1\n", []string{":2:", `"extra`, "unknown key"}},
		// wrong TOML type
		{"bad type", client, "type.toml", "conn = \"pool\"\npool_size = \"many\"\n", []string{":2:", `"pool_size"`}},
		// bad duration
		{"bad duration", client, "dur.toml", "conn = \"pool\"\nheartbeat = \"10 parsecs\"\n", []string{":2:", `"heartbeat"`, "bad duration"}},
		// bad enum value, found by Validate
		{"bad value", client, "closer.toml", "conn = \"per-write\"\ndial_mode = \"connect\"\ncloser = \"nobody\"\n", []string{":3:", `"closer"`, "nobody"}},
		// missing required key
		{"missing closer", client, "nocloser.toml", "conn = \"per-write\"\n", []string{`"closer"`, "missing"}},
		// contradictory keys
		{"idle above pool", client, "idle.toml", "conn = \"pool\"\npool_size = 2\nidle_size = 8\n", []string{":3:", `"idle_size"`}},
		// TOML syntax error
		{"syntax", client, "syntax.toml", "conn = \"pool\"\npool_size = = 3\n", []string{":2:"}},
		// missing file
		{"missing client file", client, "", "", []string{"no-such.toml", "no such file"}},
		// sysctl port range low > high
		{"range low > high", sysctl, "range.conf", "# x\nnet.ipv4.ip_local_port_range = 60999 32768\n", []string{":2:", `"net.ipv4.ip_local_port_range"`, "low 60999 is above high 32768"}},
		// sysctl bad value
		{"bad sysctl value", sysctl, "reuse.conf", "net.ipv4.tcp_tw_reuse = yes\n", []string{":1:", `"net.ipv4.tcp_tw_reuse"`, `"yes"`}},
		// sysctl value out of range
		{"sysctl out of range", sysctl, "reuse3.conf", "\nnet.ipv4.tcp_tw_reuse = 3\n", []string{":2:", `"net.ipv4.tcp_tw_reuse"`, "0-2"}},
		// line without '='
		{"no equals", sysctl, "noeq.conf", "net.ipv4.tcp_tw_reuse 1\n", []string{":1:", "key = value"}},
		// missing sysctl file
		{"missing sysctl file", sysctl, "", "", []string{"no-such.conf", "no such file"}},
	}
	for _, c := range cases {
		p := filepath.Join(dir, "no-such"+map[bool]string{true: ".toml", false: ".conf"}[strings.HasPrefix(c.what, "missing client")])
		if c.name != "" {
			p = write(c.name, c.body)
		}
		err := c.load(p)
		if err == nil {
			t.Errorf("%s: no error", c.what)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: error spans lines: %q", c.what, msg)
		}
		for _, w := range append(c.wants, p) {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q lacks %q", c.what, msg, w)
			}
		}
	}
	// An unknown name is neither a built-in nor a file.
	if _, err := LoadClient("no-such-profile"); err == nil || !strings.Contains(err.Error(), "not a built-in") {
		t.Errorf("LoadClient(no-such-profile) = %v", err)
	}
}

func client(p string) error { _, err := LoadClient(p); return err }
func sysctl(p string) error { _, err := LoadSysctl(p); return err }

// TestLintIncident2020 checks the incident's sysctl set against this kernel.
func TestLintIncident2020(t *testing.T) {
	s, err := LoadSysctl("incident-2020")
	if err != nil {
		t.Fatal(err)
	}
	fs := Lint(s, "/proc/sys")
	by := map[string]Finding{}
	for _, f := range fs {
		by[f.Key] = f
	}
	recycle := by["net.ipv4.tcp_tw_recycle"]
	if SysctlExists("/proc/sys", "net.ipv4.tcp_tw_recycle") {
		t.Skip("this kernel still has tcp_tw_recycle (before 4.12)")
	}
	if recycle.Exists || recycle.Verdict != VerdictAbsent || !strings.Contains(recycle.Message, "4.12") {
		t.Errorf("tcp_tw_recycle: %+v; want absent since 4.12", recycle)
	}
	fin := by["net.ipv4.tcp_fin_timeout"]
	if fin.Verdict != VerdictNoEffect || !strings.Contains(fin.Message, "does not shorten TIME_WAIT") || !strings.Contains(fin.Message, "FIN_WAIT_2") {
		t.Errorf("tcp_fin_timeout: %+v; want no effect on TIME_WAIT, FIN_WAIT_2 only", fin)
	}
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv4.tcp_syncookies"} {
		if f := by[k]; f.Verdict != VerdictUnrelated || !f.Exists || f.Scope != "per-namespace" {
			t.Errorf("%s: %+v; want unrelated, existing, per-namespace", k, f)
		}
	}
	m := MostImportant(fs)
	if m == nil || m.Key != "net.ipv4.tcp_tw_reuse" || m.Value != "1" || m.Verdict != VerdictHelps {
		t.Fatalf("most important = %+v; want tcp_tw_reuse=1", m)
	}
	if !strings.Contains(m.Message, "the key that matters") || m.Factor != 60 {
		t.Errorf("tcp_tw_reuse finding: %+v", m)
	}
	for _, f := range fs {
		if f.Matters != (f.Key == "net.ipv4.tcp_tw_reuse") {
			t.Errorf("%s: Matters = %v", f.Key, f.Matters)
		}
	}
}

// TestLintOtherCases: prerequisites, risky values, a fake /proc/sys.
func TestLintOtherCases(t *testing.T) {
	proc := t.TempDir()
	for k, v := range map[string]string{"net/ipv4/tcp_tw_reuse": "2", "net/ipv4/tcp_timestamps": "1", "net/ipv4/tcp_max_tw_buckets": "131072",
		"net/ipv4/ip_local_port_range": "32768\t60999", "net/ipv4/tcp_tw_reuse_delay": "1000"} {
		os.MkdirAll(filepath.Join(proc, filepath.Dir(k)), 0o755)
		os.WriteFile(filepath.Join(proc, k), []byte(v+"\n"), 0o644)
	}
	lint := func(body string) map[string]Finding {
		s, err := ParseSysctl("t.conf", "t", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Finding{}
		for _, f := range Lint(s, proc) {
			out[f.Key] = f
		}
		return out
	}
	// tcp_tw_reuse needs tcp_timestamps.
	f := lint("net.ipv4.tcp_tw_reuse = 1\nnet.ipv4.tcp_timestamps = 0\n")
	if f["net.ipv4.tcp_tw_reuse"].Verdict != VerdictRisky || !strings.Contains(f["net.ipv4.tcp_tw_reuse"].Message, "needs tcp_timestamps") {
		t.Errorf("tw_reuse without timestamps: %+v", f["net.ipv4.tcp_tw_reuse"])
	}
	if f["net.ipv4.tcp_timestamps"].Verdict != VerdictRisky {
		t.Errorf("timestamps=0: %+v", f["net.ipv4.tcp_timestamps"])
	}
	// tcp_max_tw_buckets lowered.
	f = lint("net.ipv4.tcp_max_tw_buckets = 5000\n")
	if g := f["net.ipv4.tcp_max_tw_buckets"]; g.Verdict != VerdictRisky || !strings.Contains(g.Message, "lowered from 131072") {
		t.Errorf("max_tw_buckets lowered: %+v", g)
	}
	// A wide range helps, and is what matters; an odd range loses a port.
	f = lint("net.ipv4.ip_local_port_range = 1024 65535\nnet.ipv4.tcp_fin_timeout = 10\n")
	if g := f["net.ipv4.ip_local_port_range"]; g.Verdict != VerdictHelps || !g.Matters {
		t.Errorf("wide range: %+v", g)
	}
	f = lint("net.ipv4.ip_local_port_range = 32768 61000\n")
	if g := f["net.ipv4.ip_local_port_range"]; !strings.Contains(g.Message, "port 61000 is never used") {
		t.Errorf("odd range: %+v", g)
	}
	// An absent key, ignored with '-'; tcp_tw_reuse_delay absent on an old kernel.
	os.Remove(filepath.Join(proc, "net/ipv4/tcp_tw_reuse_delay"))
	f = lint("-net.ipv4.tcp_tw_reuse_delay = 10\nnet.ipv4.tcp_tw_reuse = 1\n")
	if g := f["net.ipv4.tcp_tw_reuse_delay"]; g.Verdict != VerdictAbsent || g.Exists || !strings.Contains(g.Message, "ignores") {
		t.Errorf("absent delay: %+v", g)
	}
	if g := f["net.ipv4.tcp_tw_reuse"]; g.Factor != 60 {
		t.Errorf("tw_reuse on a kernel without the delay sysctl: factor %v, want 60 (1 s)", g.Factor)
	}
}
