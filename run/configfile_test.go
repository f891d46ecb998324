package run_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// The config file's bad contents are refused with one line naming the file,
// the line and the key, and never with a password in it.
func TestLoadConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, body, want string
	}{
		{"a number among the targets", "[targets]\nprimary = \"embedded\"\n\nspeed = 5\n", `:4: key "targets.speed": incompatible types`},
		{"unknown table", "rate = \"1k\"\n", `:1: key "rate": unknown key`},
		{"not a string", "[targets]\nprimary = 5\n", `:2: key "targets.primary": incompatible types`},
		{"bad URL", "# two DBs\n[targets]\nprimary = \"http://u:hunter2@db1:8086/query?db=x\"\n", `:3: key "targets.primary": bad target "http://u:xxxxx@db1:8086/query?db=x": unknown write path`},
		{"built-in name", "[targets]\nembedded = \"http://db1:8086\"\n", `:2: key "targets.embedded": bad target name "embedded": that is a built-in target`},
		{"bad name", "[targets]\n\"db1:8086\" = \"http://db1:8086\"\n", `:2: key "targets.db1:8086": bad target name`},
		{"syntax", "[targets\nprimary = 1\n", `:2: expected '.' or ']'`},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "loadcap.toml")
		if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := run.LoadConfigFile(path)
		if err == nil || !run.IsInputError(err) {
			t.Errorf("%s: got %v, want an input error", c.name, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path+c.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") {
			t.Errorf("%s: %q: want one line with %q and no password", c.name, msg, path+c.want)
		}
	}
	if _, err := run.LoadConfigFile(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("a missing --config file: %v, want an error naming it", err)
	}
}

// With loadcap.toml in the working directory, --targets takes its names:
// a dual-write run to "primary" and "backup" (two embedded sinks), whose
// results carry those names; a name the file lacks is refused with the names
// it has; a --config file elsewhere works the same.
func TestConfigFileTargetNames(t *testing.T) {
	dir := t.TempDir()
	body := "# the incident's two databases\n[targets]\nprimary = \"embedded\"\nbackup = \"embedded\"\n"
	if err := os.WriteFile(filepath.Join(dir, run.DefaultConfigFile), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir) // loadcap.toml is read from the working directory
	code, out, errOut := runCLI(t, nil, "run", "--targets", "primary,backup", "--rate", "20", "--duration", "1s", "--batch", "10", "--out", "", "--json")
	if code != 0 {
		t.Fatalf("run with named targets: exit %d: %s", code, errOut)
	}
	var doc results.Document
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decode --json: %v", err)
	}
	if len(doc.Targets) != 2 || doc.Targets[0].Name != "primary" || doc.Targets[1].Name != "backup" {
		t.Fatalf("targets %+v: want primary and backup", doc.Targets)
	}
	for _, tr := range doc.Targets {
		if tr.WritesOK != 20 || tr.WritesFailed != 0 {
			t.Errorf("%s: ok %d failed %d, want 20 and 0", tr.Name, tr.WritesOK, tr.WritesFailed)
		}
	}

	code, _, errOut = runCLI(t, nil, "run", "--targets", "primray", "--duration", "1s", "--out", "")
	if msg := strings.TrimSpace(errOut); code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, `"primray"`) || !strings.Contains(msg, "backup, primary") {
		t.Errorf("unknown name: exit %d, stderr %q; want 2 and one line naming it and the file's names", code, msg)
	}

	other := filepath.Join(t.TempDir(), "fleet.toml")
	if err := os.WriteFile(other, []byte("[targets]\nsolo = \"embedded\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, nil, "run", "--config", other, "--targets", "solo", "--rate", "10", "--duration", "1s", "--batch", "1", "--out", "", "--json")
	if code != 0 || !strings.Contains(out, `"name": "solo"`) {
		t.Errorf("--config: exit %d, stderr %s; want a run of target solo", code, errOut)
	}
	code, _, errOut = runCLI(t, nil, "run", "--config", filepath.Join(dir, "nope.toml"), "--duration", "1s", "--out", "")
	if code != 2 || !strings.Contains(errOut, "nope.toml") {
		t.Errorf("missing --config file: exit %d, stderr %q; want 2 naming it", code, errOut)
	}
}
