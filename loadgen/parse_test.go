package loadgen

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestParseTargets(t *testing.T) {
	t.Setenv("INFLUX_TOKEN", "tok-secret")
	cases := []struct {
		in, kind, name, uri string
	}{
		{"embedded", KindEmbedded, "embedded", ""},
		{"http://db1:8086", KindInfluxV1, "db1:8086", "/write?db=loadcap"},
		{"http://db1:8086/write?db=tel&rp=r1", KindInfluxV1, "db1:8086", "/write?db=tel&rp=r1"},
		{"https://db2/api/v2/write?org=o&bucket=b", KindInfluxV2, "db2:443", "/api/v2/write?bucket=b&org=o"},
		{"http://db3:8181/api/v3/write_lp?db=x", KindInfluxV3, "db3:8181", "/api/v3/write_lp?db=x"},
		{"postgres://u@pg:5432/db?table=t", KindPostgres, "pg:5432", ""},
		// A write path under a prefix is that API, the prefix kept.
		{"http://px:80/influx/write?db=x", KindInfluxV1, "px:80", "/influx/write?db=x"},
		{"https://px/db/api/v2/write?org=o&bucket=b", KindInfluxV2, "px:443", "/db/api/v2/write?bucket=b&org=o"},
		{"http://px:1/a/b/api/v3/write_lp/?db=x", KindInfluxV3, "px:1", "/a/b/api/v3/write_lp/?db=x"},
		{"http://px:1/api/v2/write/write?db=x", KindInfluxV1, "px:1", "/api/v2/write/write?db=x"},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got.Kind != c.kind || got.Name != c.name || got.RequestURI != c.uri {
			t.Errorf("%s: got kind %s name %s uri %s", c.in, got.Kind, got.Name, got.RequestURI)
		}
	}
	v2, _ := ParseTarget("https://db2/api/v2/write?org=o&bucket=b")
	if v2.Authorization != "Token tok-secret" {
		t.Errorf("v2 auth %q", v2.Authorization)
	}
	for _, bad := range []string{"db1:8086", "ftp://x:1/", "http://x:1/query?db=a", "http://x:1/write", "http://x:1/api/v2/write?org=o", "http://x:1/api/v3/write_lp", "http://x:1/influx", "http://x:1/influx/writes?db=x", "http://x:1/rewrite?db=x"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	// Credentials never appear in errors or redacted URLs.
	_, err := ParseTarget("http://user:hunter2@x:1/nope")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
	ok, _ := ParseTarget("http://user:hunter2@x:1/write?db=a&u=user&p=hunter2")
	if r := ok.Redacted(); strings.Contains(r, "hunter2") {
		t.Errorf("Redacted() leaks the password: %s", r)
	}
	// Two databases on one host:port are two targets, named apart.
	ts, err := ParseTargets([]string{"http://a:1/write?db=x", "http://a:1/write?db=y"})
	if err != nil || ts[0].Name == ts[1].Name {
		t.Errorf("targets on one host:port not named apart: %v %v", ts, err)
	}
	// Each embedded entry is a sink of its own.
	if ts, err := ParseTargets([]string{"embedded", "embedded"}); err != nil || ts[1].Name != "embedded#2" {
		t.Errorf("embedded twice: %v %v", ts, err)
	}
	// The same target twice, or an empty entry, is a mistake: refused with
	// one line naming it, never renamed or dropped.
	for _, list := range [][]string{
		{"http://a:1", "http://a:1"},
		{"http://u:hunter2@a:1/write?db=x", " http://u:hunter2@a:1/write?db=x"},
		{"embedded", ""},
		{"", "embedded"},
		{"http://a:1", " "},
	} {
		_, err := ParseTargets(list)
		if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line refusing it (no password)", list, err)
		}
	}
	if _, err := ParseTargets([]string{""}); err == nil || !strings.Contains(err.Error(), "no target given") {
		t.Errorf("empty --targets: %v", err)
	}
}

func TestClassify(t *testing.T) {
	cases := map[error]string{
		syscall.EADDRNOTAVAIL:                        ClassEADDRNOTAVAIL,
		fmt.Errorf("dial: %w", syscall.EADDRINUSE):   ClassEADDRINUSE,
		fmt.Errorf("x: %w", syscall.ECONNREFUSED):    ClassECONNREFUSED,
		fmt.Errorf("read: %w", syscall.ECONNRESET):   ClassECONNRESET,
		fmt.Errorf("read: %w", errNoResponse):        ClassEOF,
		errors.New("something else"):                 ClassOther,
		fmt.Errorf("x: %w", syscall.EMFILE):          ClassEMFILE,
		fmt.Errorf("connect: %w", syscall.ETIMEDOUT): ClassETIMEDOUT,
	}
	for err, want := range cases {
		if got := Classify(err); got != want {
			t.Errorf("Classify(%v) = %s, want %s", err, got, want)
		}
	}
	if StatusClass(503) != ClassHTTP5xx || StatusClass(429) != ClassHTTP4xx {
		t.Error("status classes")
	}
}

// TestPostgresTargetAddress checks that a postgres:// target is labelled and
// sampled at the address pgx really connects to: the URL's host and port,
// its host= and port= parameters, or PGHOST and PGPORT.
func TestPostgresTargetAddress(t *testing.T) {
	t.Setenv("PGHOST", "")
	t.Setenv("PGPORT", "")
	cases := []struct {
		in, env, envPort, want string
	}{
		{"postgres://u@pg:6543/db", "", "", "pg:6543"},                            // explicit host and port
		{"postgres://u@pg/db", "", "", "pg:5432"},                                 // pgx's default port
		{"postgres://u@pg/db", "", "18995", "pg:18995"},                           // PGPORT fills the missing port
		{"postgres://u@pg:6543/db", "", "18995", "pg:6543"},                       // the URL's port wins over PGPORT
		{"postgres:///db?table=t", "10.1.2.3", "7000", "10.1.2.3:7000"},           // no host in the URL: PGHOST and PGPORT
		{"postgres://u@/db?host=127.0.0.1&port=15432", "", "", "127.0.0.1:15432"}, // host= and port= parameters
		{"postgresql://u:pw@[::1]:5433/db", "", "", "[::1]:5433"},                 // IPv6 literal
	}
	for _, c := range cases {
		t.Setenv("PGHOST", c.env)
		t.Setenv("PGPORT", c.envPort)
		got, err := ParseTarget(c.in)
		if err != nil {
			t.Errorf("%s (PGHOST=%q PGPORT=%q): %v", c.in, c.env, c.envPort, err)
			continue
		}
		if got.Addr != c.want || got.Name != c.want {
			t.Errorf("%s (PGHOST=%q PGPORT=%q): addr %s name %s, want %s", c.in, c.env, c.envPort, got.Addr, got.Name, c.want)
		}
	}
	t.Setenv("PGHOST", "/var/run/postgresql")
	t.Setenv("PGPORT", "")
	if _, err := ParseTarget("postgres:///db"); err == nil || !strings.Contains(err.Error(), "Unix socket") {
		t.Errorf("a Unix socket host: got %v, want a refusal naming the Unix socket", err)
	}
	t.Setenv("PGHOST", "")
	_, err := ParseTarget("postgres://u:hunter2@pg/db?port=notaport")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad port= parameter: got %v, want an error without the password", err)
	}
}

// TestRefusedTargetEchoedAsGiven checks that a refused target is named the
// way the user typed it (minus secrets), not as a normalised URL.
func TestRefusedTargetEchoedAsGiven(t *testing.T) {
	for in, want := range map[string]string{
		"http://":                       `"http://"`,
		"https:///write?db=x":           `"https:///write?db=x"`,
		"http://u:pw@/write?p=pw":       `"http://xxxxx@/write?p=xxxxx"`,
		"postgres://u:pw@/db?host=/tmp": `"postgres://xxxxx@/db?host=/tmp"`,
	} {
		_, err := ParseTarget(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTarget(%q): %v, want it to name %s", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseTarget(%q): error leaks the password: %v", in, err)
		}
	}
}

// TestNamedTargets checks targets given by a config file's names.
func TestNamedTargets(t *testing.T) {
	names := &TargetNames{Source: "loadcap.toml", URLs: map[string]string{
		"primary": "http://db1:8086/write?db=tel",
		"backup":  "http://u:hunter2@db2:8086/write?db=tel",
		"broken":  "http://u:hunter2@db3:8086/query?db=tel",
	}}
	ts, err := ParseNamedTargets([]string{"primary", "backup", "http://db4:8086"}, names)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, addr string }{{"primary", "db1:8086"}, {"backup", "db2:8086"}, {"db4:8086", "db4:8086"}}
	for i, w := range want {
		if ts[i].Name != w.name || ts[i].Addr != w.addr {
			t.Errorf("target %d: name %s addr %s, want %s %s", i, ts[i].Name, ts[i].Addr, w.name, w.addr)
		}
	}
	if r := ts[1].Redacted(); strings.Contains(r, "hunter2") {
		t.Errorf("a named target's URL leaks its password: %s", r)
	}
	_, err = ParseNamedTargets([]string{"primray"}, names)
	if err == nil || !strings.Contains(err.Error(), `"primray"`) || !strings.Contains(err.Error(), "backup, broken, primary") {
		t.Errorf("unknown name: %v, want the name and the known names", err)
	}
	_, err = ParseNamedTargets([]string{"broken"}, names)
	if err == nil || !strings.HasPrefix(err.Error(), `loadcap.toml: target "broken": bad target`) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad URL behind a name: %v, want the file and the name, no password", err)
	}
	_, err = ParseNamedTargets([]string{"primary"}, nil)
	if err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("a name without a config file: %v, want a hint about the config file", err)
	}
}
