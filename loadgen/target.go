package loadgen

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Target kinds.
const (
	KindEmbedded   = "embedded"    // the in-process InfluxDB-compatible sink
	KindEmbeddedPG = "embedded-pg" // the in-process PostgreSQL-wire sink
	KindInfluxV1   = "influx-v1"   // POST /write?db=
	KindInfluxV2   = "influx-v2"   // POST /api/v2/write?org=&bucket=
	KindInfluxV3   = "influx-v3"   // POST /api/v3/write_lp?db=
	KindPostgres   = "postgres"    // SQL through pgx
)

// TargetSpec is a parsed --targets entry.
type TargetSpec struct {
	// Name identifies the target in results: host:port, or "embedded".
	Name string
	// Raw is the entry as given (may hold credentials: never print it).
	Raw  string
	Kind string
	// URL is the parsed URL (nil for embedded kinds until resolved).
	URL *url.URL
	// Addr is host:port to dial.
	Addr string
	// TLS is true for https.
	TLS bool
	// RequestURI is the path and query the HTTP drivers POST to.
	RequestURI string
	// Authorization is the Authorization header value, or "".
	Authorization string
	// Precision is the precision the URL asks for ("" when it does not).
	Precision string
	// Prefix is the part of the URL path before the write API's own path
	// ("/influx" in /influx/api/v2/write), "" when the API is at the root.
	// A reverse proxy that mounts the server under a prefix keeps it for
	// every path, so the heartbeat's /ping goes under it too.
	Prefix string
}

// Redacted returns the target URL with any password or token replaced by
// "xxxxx", safe to print and to store.
func (t *TargetSpec) Redacted() string {
	if t.URL == nil {
		return t.Kind
	}
	return RedactURL(t.URL)
}

// RedactURL returns u as a string with the password and secret-looking query
// parameters (password, token, p, sslpassword) replaced by "xxxxx".
func RedactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	q := c.Query()
	changed := false
	for _, k := range []string{"p", "password", "token", "sslpassword", "authToken"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// TargetNames maps target names to URLs, as a config file (loadcap.toml)
// defines them.
type TargetNames struct {
	// Source names where the names come from (the config file's path), for
	// messages.
	Source string
	// URLs maps each name to its target URL.
	URLs map[string]string
}

// ParseTargets parses a comma-separated --targets value. An empty entry
// and an entry given twice are refused; embedded and embedded-pg may repeat
// (each starts its own sink: embedded, embedded#2, ...), and two different
// URLs to the same host:port (two databases, say) are named host:port and
// host:port#2.
func ParseTargets(list []string) ([]TargetSpec, error) {
	return ParseNamedTargets(list, nil)
}

// ParseNamedTargets is ParseTargets where an entry may also be a name from
// names (nil: none); such a target is called by its name in results.
func ParseNamedTargets(list []string, names *TargetNames) ([]TargetSpec, error) {
	var out []TargetSpec
	seen := map[string]int{}
	given := map[string]bool{}
	if strings.TrimSpace(strings.Join(list, "")) == "" {
		return nil, fmt.Errorf("bad --targets: no target given")
	}
	for _, raw := range list {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return nil, fmt.Errorf("bad --targets %q: an empty entry (a comma too many); give each target once, separated by commas", redactRaw(strings.Join(list, ",")))
		}
		if given[raw] && raw != KindEmbedded && raw != KindEmbeddedPG {
			return nil, fmt.Errorf("bad --targets: %q given twice; every write already goes to every target once", redactRaw(raw))
		}
		given[raw] = true
		t, err := parseEntry(raw, names)
		if err != nil {
			return nil, err
		}
		seen[t.Name]++
		if n := seen[t.Name]; n > 1 {
			t.Name = fmt.Sprintf("%s#%d", t.Name, n)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bad --targets: no target given")
	}
	return out, nil
}

// parseEntry parses one --targets entry: a name from names, or a target.
func parseEntry(raw string, names *TargetNames) (TargetSpec, error) {
	if names != nil {
		if u, ok := names.URLs[raw]; ok {
			t, err := ParseTarget(u)
			if err != nil {
				return TargetSpec{}, fmt.Errorf("%s: target %q: %w", names.Source, raw, err)
			}
			t.Name = raw
			return t, nil
		}
	}
	t, err := ParseTarget(raw)
	if err != nil && !strings.Contains(raw, ":") {
		if names == nil {
			return TargetSpec{}, fmt.Errorf("%w, or a target name from a config file (loadcap.toml or --config; there is none)", err)
		}
		known := make([]string, 0, len(names.URLs))
		for n := range names.URLs {
			known = append(known, n)
		}
		sort.Strings(known)
		return TargetSpec{}, fmt.Errorf("bad target %q: not a target URL, and %s defines no such name (it has: %s)", redactRaw(raw), names.Source, strings.Join(known, ", "))
	}
	return t, err
}

// ParseTarget parses one target: "embedded", "embedded-pg", an InfluxDB v1,
// v2 or v3 write URL, or a postgres:// URL. Errors never contain the
// credentials of the URL.
func ParseTarget(raw string) (TargetSpec, error) {
	switch raw {
	case KindEmbedded, KindEmbeddedPG:
		return TargetSpec{Name: raw, Raw: raw, Kind: raw}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" && !isPostgresScheme(u.Scheme) {
		return TargetSpec{}, fmt.Errorf("bad target %q: want embedded, http(s)://host:port/write?db=D, .../api/v2/write?org=O&bucket=B, .../api/v3/write_lp?db=D or postgres://user@host:port/db", redactRaw(raw))
	}
	t := TargetSpec{Raw: raw, URL: u}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return TargetSpec{}, fmt.Errorf("bad target %q: bad port %q: want 1..65535", RedactURL(u), p)
		}
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		t.Kind = KindPostgres
		addr, err := postgresAddr(u)
		if err != nil {
			return TargetSpec{}, fmt.Errorf("bad target %q: %w", redactRaw(raw), err)
		}
		t.Addr = addr
		t.Name = t.Addr
		return t, nil
	case "http", "https":
	default:
		return TargetSpec{}, fmt.Errorf("bad target %q: unknown scheme %q (want http, https or postgres)", RedactURL(u), u.Scheme)
	}
	t.TLS = u.Scheme == "https"
	def := "80"
	if t.TLS {
		def = "443"
	}
	t.Addr = hostPort(u, def)
	t.Name = t.Addr
	if _, _, err := net.SplitHostPort(t.Addr); err != nil {
		return TargetSpec{}, fmt.Errorf("bad target %q: bad host:port: %w", RedactURL(u), err)
	}
	q := u.Query()
	t.Precision = q.Get("precision")
	api, prefix := writeAPI(strings.TrimSuffix(u.Path, "/"))
	t.Prefix = prefix
	switch api {
	case "":
		t.Kind = KindInfluxV1
		q.Set("db", "loadcap")
		u.Path = "/write"
	case "/write":
		t.Kind = KindInfluxV1
		if q.Get("db") == "" {
			return TargetSpec{}, fmt.Errorf("bad target %q: InfluxDB 1.x /write needs ?db=NAME", RedactURL(u))
		}
	case "/api/v2/write":
		t.Kind = KindInfluxV2
		if q.Get("org") == "" && q.Get("orgID") == "" || q.Get("bucket") == "" {
			return TargetSpec{}, fmt.Errorf("bad target %q: InfluxDB 2.x /api/v2/write needs ?org=O&bucket=B", RedactURL(u))
		}
		tok := os.Getenv("INFLUX_TOKEN")
		if tok == "" {
			return TargetSpec{}, fmt.Errorf("bad target %q: InfluxDB 2.x needs a token in INFLUX_TOKEN", RedactURL(u))
		}
		t.Authorization = "Token " + tok
	case "/api/v3/write_lp":
		t.Kind = KindInfluxV3
		if q.Get("db") == "" {
			return TargetSpec{}, fmt.Errorf("bad target %q: InfluxDB 3 /api/v3/write_lp needs ?db=NAME", RedactURL(u))
		}
		if tok := os.Getenv("INFLUX_TOKEN"); tok != "" {
			t.Authorization = "Bearer " + tok
		}
	default:
		return TargetSpec{}, fmt.Errorf("bad target %q: unknown write path %q (want a path ending in /write, /api/v2/write or /api/v3/write_lp)", RedactURL(u), u.Path)
	}
	if u.User != nil && t.Authorization == "" {
		pw, _ := u.User.Password()
		t.Authorization = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
	}
	// Credentials in u/p query parameters (InfluxDB 1.x) stay in the request
	// URI, which is never printed; the stored URL is redacted.
	u.RawQuery = q.Encode()
	t.RequestURI = u.RequestURI()
	return t, nil
}

// WithPrecision returns the request URI with the precision parameter set in
// the form the target's API expects.
func (t *TargetSpec) WithPrecision(p string) string {
	u := *t.URL
	q := u.Query()
	if q.Get("precision") == "" {
		switch t.Kind {
		case KindInfluxV1:
			m := map[string]string{"ns": "n", "us": "u", "ms": "ms", "s": "s"}
			q.Set("precision", m[p])
		case KindInfluxV3:
			m := map[string]string{"ns": "nanosecond", "us": "microsecond", "ms": "millisecond", "s": "second"}
			q.Set("precision", m[p])
		default:
			q.Set("precision", p)
		}
	}
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

// writeAPIs are the write paths loadcap speaks, longest first: a path ending
// in one of them is that API under a prefix.
var writeAPIs = []string{"/api/v3/write_lp", "/api/v2/write", "/write"}

// writeAPI splits a URL path (without a trailing slash) into the write API
// it ends in and the prefix before it: "/influx/api/v2/write" is
// ("/api/v2/write", "/influx"). An empty path is ("", ""); a path that
// ends in no write API is returned whole as the API, which the caller
// refuses.
func writeAPI(path string) (api, prefix string) {
	if path == "" {
		return "", ""
	}
	for _, a := range writeAPIs {
		if strings.HasSuffix(path, a) {
			return a, strings.TrimSuffix(path, a)
		}
	}
	return path, ""
}

func isPostgresScheme(s string) bool { return s == "postgres" || s == "postgresql" }

// postgresAddr returns the host:port pgx will connect to for a postgres://
// URL, by pgx's own rules: host and port from the URL, from its host= and
// port= parameters, or from PGHOST and PGPORT, defaulting to port 5432.
// Only the address parameters are handed to pgx here, so a password never
// reaches an error. A Unix socket has no port budget to measure: refused.
func postgresAddr(u *url.URL) (string, error) {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	q := url.Values{}
	for _, k := range []string{"host", "port"} {
		if v := u.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	c.RawQuery = q.Encode()
	cfg, err := pgconn.ParseConfig(c.String())
	if err != nil {
		return "", fmt.Errorf("address: %w", err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		return "", fmt.Errorf("host %q is a Unix socket: loadcap measures TCP ports, give host:port (or PGHOST and PGPORT)", cfg.Host)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), nil
}

func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// redactRaw returns a target that was refused in a form safe to print: a
// parsable URL goes through RedactURL; otherwise anything between "//" and
// the last "@" and the values of secret-looking query parameters are
// hidden.
func redactRaw(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return RedactURL(u)
	}
	if i := strings.Index(raw, "//"); i >= 0 {
		if j := strings.LastIndex(raw, "@"); j > i {
			raw = raw[:i+2] + "xxxxx" + raw[j:]
		}
	}
	return secretParamRE.ReplaceAllString(raw, "${1}xxxxx")
}

// secretParamRE matches the value of a secret-looking query parameter.
var secretParamRE = regexp.MustCompile(`(?i)([?&;](?:p|password|token|sslpassword|authtoken)=)[^&;#]*`)
