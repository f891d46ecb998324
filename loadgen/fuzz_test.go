package loadgen

import (
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/capacity"
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

// FuzzParseRate: no panic, no hang; an accepted rate is positive, finite,
// at most 1000m, and prints back to the same rate. capacity.ParseRate lives
// beside capacity.FormatRate; its fuzz target stays with the other input
// parsers' here and their within.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"500", "1k", "1.5k", "50K", "2m", "0.5", "300/s", " 7 ", "1000m", "0.001",
		"abc", "", "0", "-5", "1e3", "k", "NaN", "inf", "0x10", "5 k", "2000m", "1_000", "+3", ".5k", "1k/s", "/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r float64
		var err error
		within(t, 2*time.Second, "ParseRate", func() { r, err = capacity.ParseRate(s) })
		if err != nil {
			if !strings.HasPrefix(err.Error(), "bad rate ") || !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParseRate(%q): error %q does not name the value", s, err)
			}
			return
		}
		if !(r > 0) || math.IsInf(r, 0) || math.IsNaN(r) || r > 1e9 {
			t.Fatalf("ParseRate(%q) = %v: accepted a rate that is not positive, finite and at most 1e9", s, r)
		}
		back, err := capacity.ParseRate(strconv.FormatFloat(r, 'f', -1, 64))
		if err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %v, printed and parsed again: %v, %v", s, r, back, err)
		}
	})
}

// FuzzParseTarget: no panic, no hang on any target string; and with a
// password or token put into the URL (user:password, ?p=, ?password=,
// ?token=), neither an accepted target's Redacted() nor its Name nor an
// error message contains any part of it.
func FuzzParseTarget(f *testing.F) {
	old, had := os.LookupEnv("INFLUX_TOKEN")
	os.Setenv("INFLUX_TOKEN", "fuzz-token")
	defer func() {
		if had {
			os.Setenv("INFLUX_TOKEN", old)
		} else {
			os.Unsetenv("INFLUX_TOKEN")
		}
	}()
	seeds := []string{
		"embedded", "embedded-pg", "http://127.0.0.1:8086", "http://h:8086/write?db=x&rp=r&precision=ms",
		"https://h/api/v2/write?org=o&bucket=b", "http://h:1/api/v3/write_lp?db=d", "http://u:pw@h:1/write?db=x",
		"http://h:1/write?db=x&u=admin&p=pw", "postgres://user:pw@127.0.0.1:5432/db?table=t&mode=copy",
		"postgresql://h/db?sslpassword=x", "http://[::1]:8086/write?db=x", "http://h:99999/write?db=x",
		"http://h:1/query", "ftp://h/x", "db1:8086", "http://%zz", "http://u:p@@h/write?db=x", "://", "",
	}
	for i, s := range seeds {
		f.Add(s, "s3cretPW", uint8(i))
	}
	f.Fuzz(func(t *testing.T, raw, pw string, where uint8) {
		within(t, 2*time.Second, "ParseTarget", func() {
			ts, err := ParseTarget(raw)
			if err == nil && (ts.Name == "" || ts.Kind == "") {
				t.Fatalf("ParseTarget(%q): accepted without a name or kind: %+v", raw, ts)
			}
			if err == nil {
				_ = ts.Redacted()
			}
		})
		const pre, post = "SeCrEt", "tErCeS"
		if strings.Contains(raw, pre) || strings.Contains(raw, post) {
			return
		}
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		secret := pre + pw + post
		switch where % 4 {
		case 0:
			user := "user"
			if u.User != nil {
				user = u.User.Username()
			}
			u.User = url.UserPassword(user, secret)
		default:
			q := u.Query()
			q.Set([]string{"p", "password", "token"}[where%4-1], secret)
			u.RawQuery = q.Encode()
		}
		withSecret := u.String()
		var ts TargetSpec
		within(t, 2*time.Second, "ParseTarget", func() { ts, err = ParseTarget(withSecret) })
		leaks := func(s string) bool { return strings.Contains(s, pre) || strings.Contains(s, post) }
		if err != nil {
			if leaks(err.Error()) {
				t.Fatalf("ParseTarget(%q): error leaks the secret: %q", withSecret, err)
			}
			return
		}
		if r := ts.Redacted(); leaks(r) {
			t.Fatalf("ParseTarget(%q).Redacted() = %q: leaks the secret", withSecret, r)
		}
		if leaks(ts.Name) {
			t.Fatalf("ParseTarget(%q).Name = %q: leaks the secret", withSecret, ts.Name)
		}
	})
}
