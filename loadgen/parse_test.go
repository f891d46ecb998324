package loadgen

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestParseRate(t *testing.T) {
	good := map[string]float64{"500": 500, "1k": 1000, "1.5k": 1500, "50K": 50000, "2m": 2e6, "0.5": 0.5, "300/s": 300}
	for in, want := range good {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"abc", "", "0", "-5", "1e3", "k", "NaN", "inf", "0x10", "5 k", "2000m"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q): no error", in)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseRate(%q): error %q does not name the value", in, err)
		}
	}
}

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
	for _, bad := range []string{"db1:8086", "ftp://x:1/", "http://x:1/query?db=a", "http://x:1/write", "http://x:1/api/v2/write?org=o", "http://x:1/api/v3/write_lp"} {
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
	ts, err := ParseTargets([]string{"http://a:1", "http://a:1"})
	if err != nil || ts[0].Name == ts[1].Name {
		t.Errorf("duplicate names not made unique: %v %v", ts, err)
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
