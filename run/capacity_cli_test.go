package run_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/capacity"
	"github.com/loadcap/loadcap/profiles"
)

// matrixCells parses the first client x sysctl table of `loadcap capacity`
// (after the line starting with header) into client -> sysctl -> cell.
func matrixCells(t *testing.T, out, header string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(out, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, header) {
			start = i
			break
		}
	}
	if start < 0 || start+1 >= len(lines) {
		t.Fatalf("no table after %q in:\n%s", header, out)
	}
	// The header line: "client \ sysctl" then the sysctl names.
	var hdr []string
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], `client \ sysctl`) {
			hdr = strings.Fields(strings.TrimPrefix(lines[i], `client \ sysctl`))
			start = i
			break
		}
	}
	if hdr == nil {
		t.Fatalf("no table header after %q in:\n%s", header, out)
	}
	cells := map[string]map[string]string{}
	for _, l := range lines[start+1:] {
		if strings.TrimSpace(l) == "" {
			break
		}
		// Columns are separated by two spaces or more; a cell may hold one.
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
		if len(f) != len(hdr)+1 {
			t.Fatalf("row %q: %d cells for %d columns", l, len(f)-1, len(hdr))
		}
		cells[f[0]] = map[string]string{}
		for j, s := range hdr {
			cells[f[0]][s] = f[j+1]
		}
	}
	return cells
}

// modelCell is what the capacity model predicts for a built-in client and
// sysctl profile, formatted like the table: "470.5 time-wait".
func modelCell(t *testing.T, client, sysctl string, targets int) (string, capacity.Prediction) {
	t.Helper()
	c, err := profiles.LoadClient(client)
	if err != nil {
		t.Fatal(err)
	}
	s, err := profiles.LoadSysctl(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	k, err := capacity.KernelFromSysctl(s.Map())
	if err != nil {
		t.Fatal(err)
	}
	p := capacity.Predict(capacity.Input{Kernel: k, Client: capacity.ClientFromProfile(c), Targets: targets})
	rate := "never"
	if p.Finite() {
		rate = capacity.FormatRate(p.ExhaustionRate)
	}
	return rate + " " + p.Limit, p
}

var matrixClients = []string{"close-client", "close-client-bind", "close-server", "keepalive"}

// `loadcap capacity` prints the model's matrix: with two targets,
// close-client runs out at 28232 / 60 = 470.5 writes/s per target (a port
// pool per destination), close-client-bind at half that (one shared pool),
// tw-reuse lifts connect() but not bind(), and close-server and a
// keep-alive pool never run out from the write rate.
func TestCLICapacityMatrix(t *testing.T) {
	args := []string{"capacity", "--client", strings.Join(matrixClients, ","), "--sysctl", "linux-default,tw-reuse", "--targets", "2"}
	code, stdout, stderr := runCLI(t, nil, args...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	cells := matrixCells(t, stdout, "predicted port exhaustion")
	want := map[string]map[string]string{
		"close-client":      {"linux-default": "470.5 time-wait", "tw-reuse": "28.2k tw-reuse-delay"},
		"close-client-bind": {"linux-default": "235.3 time-wait", "tw-reuse": "235.3 time-wait"},
		"close-server":      {"linux-default": "never server-closes", "tw-reuse": "never server-closes"},
		"keepalive":         {"linux-default": "never pool", "tw-reuse": "never pool"},
	}
	for _, c := range matrixClients {
		for _, s := range []string{"linux-default", "tw-reuse"} {
			model, _ := modelCell(t, c, s, 2)
			if model != want[c][s] {
				t.Errorf("the model says %q for %s x %s, this test expects %q", model, c, s, want[c][s])
			}
			if cells[c][s] != model {
				t.Errorf("%s x %s: printed %q, the model says %q", c, s, cells[c][s], model)
			}
		}
	}
	// Each row explains its cells.
	for _, w := range []string{
		"28232 ports per target / 60 s / 1 new conns per write = 470.5 writes/s",
		"28232 ports shared by 2 target(s) (bind before connect) / 60 s / 1 new conns per write = 235.3 writes/s",
		"tcp_tw_reuse does not help bind()",
		"no client-side TIME_WAIT; the server holds it",
		"opens no connection per write: no exhaustion from the write rate",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}

	// --json: the same figures, machine-readable.
	code, stdout, stderr = runCLI(t, nil, append(args, "--json")...)
	if code != 0 || stderr != "" {
		t.Fatalf("--json: exit %d, stderr %q", code, stderr)
	}
	var doc struct {
		Targets  int      `json:"targets"`
		Loopback bool     `json:"loopback"`
		Clients  []string `json:"clients"`
		Sysctls  []string `json:"sysctls"`
		Rows     []struct {
			Client string `json:"client"`
			Cells  []struct {
				Sysctl         string   `json:"sysctl"`
				PortsAvailable int      `json:"ports_available"`
				SharedPool     bool     `json:"shared_pool"`
				HoldS          *float64 `json:"time_wait_hold_s"`
				NewConnsPerW   float64  `json:"new_conns_per_write"`
				Rate           *float64 `json:"predicted_exhaustion_rate"`
				Limit          string   `json:"limit"`
				Explanation    string   `json:"explanation"`
				Survives       *bool    `json:"survives_firewall_idle"`
			} `json:"cells"`
		} `json:"rows"`
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("--json does not parse: %v\n%s", err, stdout)
	}
	if doc.Targets != 2 || doc.Loopback || strings.Join(doc.Clients, ",") != strings.Join(matrixClients, ",") ||
		strings.Join(doc.Sysctls, ",") != "linux-default,tw-reuse" || len(doc.Rows) != len(matrixClients) {
		t.Fatalf("--json header: %+v", doc)
	}
	for _, r := range doc.Rows {
		for _, cell := range r.Cells {
			_, p := modelCell(t, r.Client, cell.Sysctl, 2)
			if cell.Limit != p.Limit || cell.PortsAvailable != p.PortsAvailable || cell.SharedPool != p.SharedPool || cell.Survives != nil {
				t.Errorf("%s x %s: %+v, model %+v", r.Client, cell.Sysctl, cell, p)
			}
			switch {
			case !p.Finite() && cell.Rate != nil:
				t.Errorf("%s x %s: rate %v, the model says never (null)", r.Client, cell.Sysctl, *cell.Rate)
			case p.Finite() && (cell.Rate == nil || math.Abs(*cell.Rate-p.ExhaustionRate) > 1e-9):
				t.Errorf("%s x %s: rate %v, the model says %v", r.Client, cell.Sysctl, cell.Rate, p.ExhaustionRate)
			}
		}
	}
	// The headline figure, exactly: 28232 ports / 60 s.
	if r := doc.Rows[0].Cells[0].Rate; r == nil || math.Abs(*r-28232.0/60) > 1e-9 || doc.Rows[0].Cells[0].PortsAvailable != 28232 {
		t.Errorf("close-client x linux-default: %+v", doc.Rows[0].Cells[0])
	}
	if c := doc.Rows[1].Cells[0]; !c.SharedPool || c.Rate == nil || math.Abs(*c.Rate-28232.0/60/2) > 1e-9 {
		t.Errorf("close-client-bind x linux-default: %+v", c)
	}
}

// --firewall-idle says per client whether pooled connections survive a
// firewall that drops flows idle that long: per-write clients hold no idle
// connection, a pool without heartbeat or keepalive dies, a 10 s heartbeat
// is too slow for 5 s, OS keepalive probing after 5 s idle is not early enough.
func TestCLICapacityFirewallIdle(t *testing.T) {
	clients := append(append([]string{}, matrixClients...), "pool-heartbeat", "pool-os-keepalive")
	sysctls := []string{"linux-default", "tw-reuse"}
	args := []string{"capacity", "--client", strings.Join(clients, ","), "--sysctl", strings.Join(sysctls, ","), "--targets", "2", "--firewall-idle", "5s"}
	code, stdout, stderr := runCLI(t, nil, args...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	cells := matrixCells(t, stdout, "pooled connections behind a firewall that drops flows idle for 5s")
	want := map[string]string{"close-client": "survives", "close-client-bind": "survives", "close-server": "survives", "keepalive": "dies", "pool-heartbeat": "dies", "pool-os-keepalive": "dies"}
	for _, c := range clients {
		p, err := profiles.LoadClient(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sysctls {
			sp, _ := profiles.LoadSysctl(s)
			k, _ := capacity.KernelFromSysctl(sp.Map())
			ok, why := capacity.SurvivesIdle(p, k, 5*time.Second)
			model := map[bool]string{true: "survives", false: "dies"}[ok]
			if w, pinned := want[c]; pinned && model != w {
				t.Errorf("the model says %s for %s, this test expects %s", model, c, w)
			}
			if cells[c][s] != model {
				t.Errorf("%s x %s: printed %q, the model says %q (%s)", c, s, cells[c][s], model, why)
			}
			// One line per client and distinct explanation.
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c) + ` \[[^\]]+\]: ` + regexp.QuoteMeta(why) + `$`).MatchString(stdout) {
				t.Errorf("%s x %s: no line explaining %q", c, s, why)
			}
		}
	}
	if !strings.Contains(stdout, "keepalive [linux-default]: no heartbeat, no TCP keepalive: idle connections are dropped silently after 5s") {
		t.Errorf("keepalive's explanation missing:\n%s", stdout)
	}
	// --json carries the answer in every cell.
	_, stdout, _ = runCLI(t, nil, append(args, "--json")...)
	var doc struct {
		FirewallIdleS float64 `json:"firewall_idle_s"`
		Rows          []struct {
			Client string `json:"client"`
			Cells  []struct {
				Survives *bool  `json:"survives_firewall_idle"`
				Why      string `json:"firewall_idle_explanation"`
			} `json:"cells"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.FirewallIdleS != 5 {
		t.Fatalf("--json: %v, firewall_idle_s %v", err, doc.FirewallIdleS)
	}
	for _, r := range doc.Rows {
		for i, c := range r.Cells {
			if c.Survives == nil || c.Why == "" || map[bool]string{true: "survives", false: "dies"}[*c.Survives] != cells[r.Client][sysctls[i]] {
				t.Errorf("%s x %s: json %+v, table %q", r.Client, sysctls[i], c, cells[r.Client][sysctls[i]])
			}
		}
	}
}

// `loadcap profiles lint incident-2020` on this kernel: tcp_tw_recycle is
// absent (removed in 4.12), tcp_fin_timeout does not touch TIME_WAIT,
// ip_forward is unrelated, and tcp_tw_reuse=1 is the key that matters.
func TestCLIProfilesLintIncident2020(t *testing.T) {
	if profiles.SysctlExists("/proc/sys", "net.ipv4.tcp_tw_recycle") {
		t.Skip("this kernel still has tcp_tw_recycle (before 4.12)")
	}
	code, stdout, stderr := runCLI(t, nil, "profiles", "lint", "incident-2020")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(stdout, "\n") {
		if m := regexp.MustCompile(`^\d+\s+(net\.ipv4\.\S+) = `).FindStringSubmatch(l); m != nil {
			rows[m[1]] = l
		}
	}
	wants := map[string][]string{
		"net.ipv4.tcp_tw_recycle":  {"= 1", " absent ", "n/a", "removed in Linux 4.12"},
		"net.ipv4.tcp_fin_timeout": {"= 30", " no-effect ", "does not shorten TIME_WAIT", "FIN_WAIT_2"},
		"net.ipv4.ip_forward":      {"= 1", " unrelated ", "turns the host into a router"},
		"net.ipv4.tcp_syncookies":  {" unrelated "},
		"net.ipv4.tcp_tw_reuse":    {"= 1", " helps * ", "the key that matters", "60x the port budget"},
	}
	for k, ws := range wants {
		for _, w := range ws {
			if !strings.Contains(rows[k], w) {
				t.Errorf("%s: row %q lacks %q", k, rows[k], w)
			}
		}
	}
	if len(rows) != 5 {
		t.Errorf("%d rows, want the 5 keys of the incident:\n%s", len(rows), stdout)
	}
	if !strings.HasSuffix(stdout, "\nthe key that matters: net.ipv4.tcp_tw_reuse = 1\n") {
		t.Errorf("last line:\n%s", stdout)
	}
	// The JSON marks the same key.
	_, stdout, _ = runCLI(t, nil, "profiles", "lint", "--json", "incident-2020")
	var fs []profiles.Finding
	if err := json.Unmarshal([]byte(stdout), &fs); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Matters != (f.Key == "net.ipv4.tcp_tw_reuse") {
			t.Errorf("%s: matters = %v", f.Key, f.Matters)
		}
		if f.Key == "net.ipv4.tcp_tw_recycle" && (f.Exists || f.Verdict != profiles.VerdictAbsent) {
			t.Errorf("tcp_tw_recycle: %+v", f)
		}
	}
}

// Bad profile files exit 2 with one line naming the file, the line and
// the key, whichever command loads them and however they are named.
func TestCLIBadProfileFilesExitTwo(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "profiles.d")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(d, name, body string) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write(dir, "unknown.toml", "conn = \"per-write\"\ncloser = \"client\"\npool_sise = 3\n")
	badValue := write(dir, "closer.toml", "conn = \"per-write\"\ncloser = \"nobody\"\n")
	badSysctl := write(dir, "reuse.conf", "# x\nnet.ipv4.tcp_tw_reuse = yes\n")
	rng := write(dir, "range.conf", "# x\n\nnet.ipv4.ip_local_port_range = 60999 32768\n")
	write(pdir, "typo.toml", "# a typo\nconn = \"pool\"\npool_sise = 3\n")
	write(pdir, "narrow.conf", "net.ipv4.ip_local_port_range = 40000 30000\n")
	missing := filepath.Join(dir, "missing.toml")
	cases := []struct {
		args  []string
		wants []string
	}{
		{[]string{"capacity", "--client", unknown}, []string{unknown + ":3:", `key "pool_sise"`, "unknown key"}},
		{[]string{"capacity", "--client", badValue}, []string{badValue + ":2:", `key "closer"`, `"nobody"`}},
		{[]string{"capacity", "--sysctl", badSysctl}, []string{badSysctl + ":2:", `key "net.ipv4.tcp_tw_reuse"`, `"yes"`}},
		{[]string{"capacity", "--sysctl", rng}, []string{rng + ":3:", `key "net.ipv4.ip_local_port_range"`, "low 60999 is above high 32768"}},
		{[]string{"capacity", "--client", missing}, []string{missing, "no such file"}},
		{[]string{"capacity", "--sysctl", "close-client"}, []string{`"close-client"`, "not a built-in"}},
		{[]string{"profiles", "show", unknown}, []string{unknown + ":3:", `key "pool_sise"`}},
		{[]string{"profiles", "lint", rng}, []string{rng + ":3:", `key "net.ipv4.ip_local_port_range"`}},
		{[]string{"profiles", "lint", filepath.Join(dir, "missing.conf")}, []string{filepath.Join(dir, "missing.conf"), "no such file"}},
		// Files of the profiles directory, by name.
		{[]string{"capacity", "--profiles-dir", pdir, "--client", "typo"}, []string{filepath.Join(pdir, "typo.toml") + ":3:", `key "pool_sise"`, "unknown key"}},
		{[]string{"capacity", "--profiles-dir", pdir, "--client", "close-client", "--sysctl", "narrow"}, []string{filepath.Join(pdir, "narrow.conf") + ":1:", `key "net.ipv4.ip_local_port_range"`, "low 40000 is above high 30000"}},
		{[]string{"profiles", "show", "--profiles-dir", pdir, "typo"}, []string{filepath.Join(pdir, "typo.toml") + ":3:", `key "pool_sise"`}},
		{[]string{"profiles", "lint", "--profiles-dir", pdir, "narrow"}, []string{filepath.Join(pdir, "narrow.conf") + ":1:", `key "net.ipv4.ip_local_port_range"`}},
		// A profiles directory that does not exist.
		{[]string{"capacity", "--profiles-dir", filepath.Join(dir, "nope")}, []string{"--profiles-dir", filepath.Join(dir, "nope"), "no such directory"}},
	}
	for _, c := range cases {
		code, stdout, stderr := runCLI(t, nil, c.args...)
		msg := strings.TrimSpace(stderr)
		if code != 2 || strings.Contains(msg, "\n") || stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q: want status 2 and one line", c.args, code, stdout, stderr)
			continue
		}
		for _, w := range c.wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: %q lacks %q", c.args, msg, w)
			}
		}
	}
}

// A profiles directory: its profiles resolve by name in every command,
// from the flag or LOADCAP_PROFILES_DIR; `profiles list` shows them with
// their source; a file named like a built-in is shadowed (the built-in
// wins), and an invalid file makes list exit 2 after listing.
func TestCLIProfilesDir(t *testing.T) {
	pdir := t.TempDir()
	for name, body := range map[string]string{
		"dual.toml":      "description = \"bind before connect, per write\"\nconn = \"per-write\"\ncloser = \"client\"\ndial_mode = \"bind\"\n",
		"tight.conf":     "# a narrow range\nnet.ipv4.ip_local_port_range = 40000 40599\n",
		"keepalive.toml": "conn = \"per-write\"\ncloser = \"client\"\n",
	} {
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// 600 ports shared by two targets, 60 s each: 5 writes/s per target;
	// keepalive is still the built-in pool.
	for _, env := range [][]string{nil, {"LOADCAP_PROFILES_DIR=" + pdir}} {
		args := []string{"capacity", "--client", "dual,keepalive", "--sysctl", "tight", "--targets", "2"}
		if env == nil {
			args = append(args, "--profiles-dir", pdir)
		}
		code, stdout, stderr := runCLI(t, env, args...)
		if code != 0 {
			t.Fatalf("%v %v: exit %d, stderr %q", env, args, code, stderr)
		}
		if !strings.Contains(stderr, filepath.Join(pdir, "keepalive.toml")+" is shadowed by the built-in client profile") {
			t.Errorf("no shadowing warning: %q", stderr)
		}
		cells := matrixCells(t, stdout, "predicted port exhaustion")
		if cells["dual"]["tight"] != "5 time-wait" || cells["keepalive"]["tight"] != "never pool" {
			t.Errorf("%v: cells %v\n%s", env, cells, stdout)
		}
	}
	// list: user profiles with their source, the shadowed one marked.
	code, stdout, stderr := runCLI(t, nil, "profiles", "list", "--profiles-dir", pdir)
	if code != 0 || stderr != "" {
		t.Fatalf("list: exit %d, stderr %q", code, stderr)
	}
	for _, re := range []string{
		`(?m)^client\s+dual\s+` + regexp.QuoteMeta(filepath.Join(pdir, "dual.toml")) + `\s+bind before connect, per write$`,
		`(?m)^sysctl\s+tight\s+` + regexp.QuoteMeta(filepath.Join(pdir, "tight.conf")) + `\s+ip_local_port_range=40000 40599$`,
		`(?m)^client\s+keepalive\s+builtin\s+keep-alive pool`,
		`(?m)^client\s+keepalive\s+` + regexp.QuoteMeta(filepath.Join(pdir, "keepalive.toml")) + ` \(shadowed by the built-in`,
		`(?m)^client\s+close-client\s+builtin\s`,
		`(?m)^sysctl\s+incident-2020\s+builtin\s`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("list lacks %s:\n%s", re, stdout)
		}
	}
	_, stdout, _ = runCLI(t, nil, "profiles", "list", "--profiles-dir", pdir, "--json")
	var items []struct {
		Kind, Name, Source, Description string
		Shadowed                        bool
	}
	if err := json.Unmarshal([]byte(stdout), &items); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, it := range items {
		if it.Source == filepath.Join(pdir, "dual.toml") && it.Kind == "client" && it.Name == "dual" && !it.Shadowed ||
			it.Source == filepath.Join(pdir, "keepalive.toml") && it.Shadowed {
			found++
		}
	}
	if found != 2 {
		t.Errorf("--json items: %+v", items)
	}
	// show finds them by name too.
	if code, stdout, _ := runCLI(t, nil, "profiles", "show", "--profiles-dir", pdir, "tight"); code != 0 || !strings.Contains(stdout, "net.ipv4.ip_local_port_range = 40000 40599") {
		t.Errorf("show tight: exit %d\n%s", code, stdout)
	}
	// An invalid file: listed with its error, and list exits 2.
	if err := os.WriteFile(filepath.Join(pdir, "broken.toml"), []byte("conn = \"pool\"\nidle_sise = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, nil, "profiles", "list", "--profiles-dir", pdir)
	wantErr := filepath.Join(pdir, "broken.toml") + `:2: key "idle_sise": unknown key`
	if code != 2 || !strings.Contains(stdout, "INVALID: ") || !strings.Contains(stdout, wantErr) || !strings.Contains(stderr, wantErr) {
		t.Errorf("list with a broken file: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
}

// A sysctl profile key this kernel lacks (a typo of ip_local_port_range)
// is ignored by the model, as by the lab, with one warning line naming the
// file, the line and the key; the incident's tcp_tw_recycle, which lint
// explains, draws none.
func TestCLICapacityWarnsAbsentKey(t *testing.T) {
	if !profiles.SysctlExists("/proc/sys", "net.ipv4.ip_local_port_range") {
		t.Skip("no /proc/sys/net/ipv4 to check keys against")
	}
	f := filepath.Join(t.TempDir(), "typo.conf")
	if err := os.WriteFile(f, []byte("# wide range, misspelled\nnet.ipv4.ip_local_port_rang = 1024 65535\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, nil, "capacity", "--client", "close-client", "--sysctl", f+",incident-2020")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want := "loadcap: warning: " + f + `:2: key "net.ipv4.ip_local_port_rang": not on this kernel (no /proc/sys/net/ipv4/ip_local_port_rang), so it is ignored and the Linux default applies; did you mean net.ipv4.ip_local_port_range?` + "\n"
	if stderr != want {
		t.Errorf("stderr:\n%q\nwant\n%q", stderr, want)
	}
	// The default range applies: 28232 / 60 s.
	if cells := matrixCells(t, stdout, "predicted port exhaustion"); cells["close-client"][f] != "470.5 time-wait" {
		t.Errorf("cells %v", cells)
	}
}
