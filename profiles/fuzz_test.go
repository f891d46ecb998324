package profiles

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// within fails the fuzz input if f does not return within d: a parser must
// never hang.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
	}
}

func addBuiltins(f *testing.F, dir string) {
	ents, err := os.ReadDir(filepath.Join("builtin", dir))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("builtin", dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseSysctl: no panic, no hang; an error is one line naming the
// file; a file that parses renders with Text() to a file that parses to
// the same entries (key, value, "-" prefix) and the same Map.
func FuzzParseSysctl(f *testing.F) {
	addBuiltins(f, "sysctl")
	for _, s := range []string{
		"net.ipv4.tcp_tw_reuse = 1\n", "-net.ipv4.tcp_tw_recycle=1\n; comment\n# comment\n",
		"net/ipv4/ip_local_port_range = 1024\t65535\n", "net.ipv4.ip_local_port_range = 60000 1024\n",
		"net.ipv4.conf.eth0/100.rp_filter = 1\n", "net/ipv4/conf/eth0.100/rp_filter = 1\n", "= 1\n", "key\n",
		"net.ipv4.tcp_fin_timeout = -1\n", "net.core.somaxconn=\n", "a.b = c = d\n", "\x00=\x00\n", " - x = 1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s *Sysctl
		var err error
		within(t, 2*time.Second, "ParseSysctl", func() { s, err = ParseSysctl("fuzz.conf", "fuzz", data) })
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "fuzz.conf") {
				t.Fatalf("error %q: want one line naming the file", msg)
			}
			return
		}
		text := s.Text()
		again, err := ParseSysctl("again.conf", "fuzz", []byte(text))
		if err != nil {
			t.Fatalf("Text() of a parsed profile does not parse: %v\n%s", err, text)
		}
		if len(again.Entries) != len(s.Entries) {
			t.Fatalf("round trip: %d entries, then %d\n%s", len(s.Entries), len(again.Entries), text)
		}
		for i, e := range s.Entries {
			a := again.Entries[i]
			if a.Key != e.Key || a.Value != e.Value || a.IgnoreErrors != e.IgnoreErrors {
				t.Fatalf("round trip: entry %d %+v became %+v\n%s", i, e, a, text)
			}
		}
		if !reflect.DeepEqual(s.Map(), again.Map()) {
			t.Fatalf("round trip: map %v became %v", s.Map(), again.Map())
		}
	})
}

// FuzzParseClient: no panic, no hang; an error is one line naming the
// file; an accepted profile validates, and encoded as TOML (what `loadcap
// profiles show` prints) it parses back to the same profile.
func FuzzParseClient(f *testing.F) {
	addBuiltins(f, "client")
	for _, s := range []string{
		"conn = \"pool\"\npool_sise = 4\n", "conn = \"pool\"\npool_size = 2\nidle_size = 8\n",
		"conn = \"per-write\"\ncloser = \"server\"\n", "keepalive_idle = \"5s\"\n", "idle_timeout = \"-1s\"\n",
		"pool_size = \"x\"\n", "[table]\nkey = 1\n", "conn = 'pool'\nheartbeat = \"10s\"\nkeepalive = true\nkeepalive_idle = \"1h\"\n",
		"dial_mode = \"bind-no-port\"\nlinger0 = true\nconn = \"per-write\"\n", "name = \"\"\x00", "a.b.c = 1\n", "= 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c *Client
		var err error
		within(t, 2*time.Second, "ParseClient", func() { c, err = ParseClient("fuzz.toml", "fuzz", data) })
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "fuzz.toml") {
				t.Fatalf("error %q: want one line naming the file", msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted a profile that does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(c); err != nil {
			t.Fatalf("encode an accepted profile: %v", err)
		}
		again, err := ParseClient("again.toml", "fuzz", buf.Bytes())
		if err != nil {
			t.Fatalf("the TOML of an accepted profile does not parse: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip: %+v became %+v\n%s", c, again, buf.String())
		}
	})
}
