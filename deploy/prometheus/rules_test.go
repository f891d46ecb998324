package prometheus

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/loadcap/loadcap/exporter"
	"github.com/loadcap/loadcap/internal/testservers"
)

// promtool runs promtool with args in this directory; a missing promtool
// fails the test when servers are required.
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		if testservers.Required() {
			t.Fatal("promtool not found (Debian package prometheus; scripts/testenv.sh up installs it)")
		}
		t.Skip("promtool not found")
	}
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRulesCheckAndUnitTests(t *testing.T) {
	out := promtool(t, "check", "rules", "loadcap.rules.yml")
	if !strings.Contains(out, "SUCCESS: 7 rules found") {
		t.Errorf("promtool check rules: %s", out)
	}
	out = promtool(t, "test", "rules", "loadcap.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules: %s", out)
	}
}

// ruleFile is the part of a rules file the checks below read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record      string            `json:"record"`
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// dashboard is the part of the Grafana dashboard the checks below read.
type dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func load(t *testing.T) (*ruleFile, *dashboard) {
	t.Helper()
	b, err := os.ReadFile("loadcap.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("loadcap.rules.yml: %v", err)
	}
	b, err = os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return &rf, &d
}

// exprs returns every PromQL expression of the rules and the dashboard,
// keyed by where it is, with the dashboard's variables given values.
func exprs(rf *ruleFile, d *dashboard) map[string]string {
	out := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out["rule "+r.Record+r.Alert] = r.Expr
		}
	}
	vars := strings.NewReplacer("$instance", ".*", "$__rate_interval", "1m")
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			out["panel "+p.Title+" #"+string(rune('A'+i))] = vars.Replace(tg.Expr)
		}
	}
	return out
}

// TestNamesAreServed: every loadcap_ metric the rules and the dashboard
// name is one the exporter serves, and the alerts the issue asks for exist.
func TestNamesAreServed(t *testing.T) {
	rf, d := load(t)
	served := exporter.MetricNames()
	recorded := map[string]bool{}
	alerts := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			if r.Alert != "" {
				alerts[r.Alert] = r.For
			}
		}
	}
	for where, e := range exprs(rf, d) {
		for _, m := range regexp.MustCompile(`\bloadcap_[a-z0-9_]+`).FindAllString(e, -1) {
			if !slices.Contains(served, m) {
				t.Errorf("%s: %s is not a metric the exporter serves", where, m)
			}
		}
	}
	for name, forDur := range map[string]string{"LoadcapPortHeadroomLow": "5m", "LoadcapPortsExhausted": "", "LoadcapTimeWaitOverflow": ""} {
		if got, ok := alerts[name]; !ok || got != forDur {
			t.Errorf("alert %s: present %v, for %q; want for %q", name, ok, got, forDur)
		}
	}
	budget := false
	for _, p := range d.Panels {
		var all string
		for _, tg := range p.Targets {
			all += tg.Expr + "\n"
		}
		if strings.Contains(all, "loadcap_ports_in_use") && strings.Contains(all, "loadcap_port_range_ports") {
			budget = true
		}
	}
	if !budget {
		t.Error("no dashboard panel draws loadcap_ports_in_use against loadcap_port_range_ports")
	}
}

// TestExpressionsParse runs every expression of the rules and the dashboard
// as an instant query against the test Prometheus: a syntax or type error is
// a failed query.
func TestExpressionsParse(t *testing.T) {
	base, _ := testservers.Prometheus(t)
	rf, d := load(t)
	for where, e := range exprs(rf, d) {
		if e == "" {
			t.Errorf("%s: empty expression", where)
			continue
		}
		testservers.PromQuery(t, base, e) // fails t on an error answer
	}
}
