package run_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
)

// loadcap exits 2 with one clear line naming the bad value, before sending
// anything, for bad input of every kind.
func TestCLIBadInputExitsTwo(t *testing.T) {
	exe := os.Getenv("LOADCAP_TEST_EXE")
	cases := []struct {
		args []string
		want string // must appear in the one line
	}{
		{[]string{"run", "--targets", "db1:8086"}, `"db1:8086"`},
		{[]string{"run", "--targets", "http://u:hunter2@h:1/query"}, `unknown write path`},
		{[]string{"run", "--rate", "abc"}, `"abc"`},
		{[]string{"run", "--client", "no-such-profile"}, `no-such-profile`},
		{[]string{"run", "--sysctl", "tw-reuse"}, `sysctl -w net.ipv4.tcp_tw_reuse="1"`},
		{[]string{"run", "--batch", "0"}, `--batch 0`},
		{[]string{"run", "--find-limit"}, `--find-limit needs --lab`},
		{[]string{"run", "--client", "a,b"}, `need --lab`},
	}
	for _, c := range cases {
		cmd := exec.Command(exe, append(c.args, "--out", t.TempDir(), "--duration", "1s")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want status 2; stderr %q", c.args, err, stderr.String())
			continue
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: stderr %q: want one line containing %s", c.args, msg, c.want)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%v: the password leaked: %q", c.args, msg)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: printed %q on stdout", c.args, stdout.String())
		}
	}
}

// `loadcap run` with no targets works on a fresh machine: the README's
// first command, shortened.
func TestCLIRunEmbeddedDefault(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command(os.Getenv("LOADCAP_TEST_EXE"), "run", "--duration", "2s", "--out", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	for _, want := range []string{"embedded", "capacity:", "result: " + out} {
		if !strings.Contains(string(b), want) {
			t.Errorf("summary lacks %q:\n%s", want, b)
		}
	}
}

// Values urfave/cli itself cannot parse (a duration, a number, a boolean,
// from a flag or from its LOADCAP_* variable), unknown flags, commands and
// subcommands, and a flag without its value: every command refuses them
// with exit status 2 and exactly one stderr line naming the flag and the
// value, and prints nothing on stdout (no usage dump).
func TestCLIUsageErrorsOneLine(t *testing.T) {
	type usageCase struct {
		args []string
		env  []string
		want string // must appear in the one line
	}
	cases := []usageCase{
		{[]string{"run", "--duration", "zz"}, nil, `--duration "zz"`},
		{[]string{"run", "--workers", "x"}, nil, `--workers "x"`},
		{[]string{"run", "--batch", "x"}, nil, `--batch "x"`},
		{[]string{"run", "--sink-error-rate", "x"}, nil, `--sink-error-rate "x"`},
		{[]string{"run", "--lab=maybe"}, nil, `--lab "maybe"`},
		{[]string{"run", "--workers", "99999999999999999999"}, nil, `--workers "99999999999999999999"`},
		{[]string{"run", "--duration"}, nil, `--duration`},
		{[]string{"run", "---x"}, nil, `---x`},
		{[]string{"capacity", "--targets", "abc"}, nil, `--targets "abc"`},
		{[]string{"merge", "-o"}, nil, `-o`},
		{[]string{"run"}, []string{"LOADCAP_DURATION=zz"}, `LOADCAP_DURATION "zz"`},
		{[]string{"run"}, []string{"LOADCAP_WORKERS=x"}, `LOADCAP_WORKERS "x"`},
		{[]string{"run"}, []string{"LOADCAP_LAB=maybe"}, `LOADCAP_LAB "maybe"`},
		{[]string{"--no-such-flag"}, nil, `--no-such-flag`},
		{[]string{"no-such-command"}, nil, `"no-such-command"`},
		{[]string{"help", "no-such-command"}, nil, `"no-such-command"`},
	}
	// Every command and subcommand, as the help lists them: an unknown
	// flag, and for those with subcommands an unknown subcommand.
	cmds := helpCommands(t)
	if len(cmds) < 8 {
		t.Fatalf("loadcap --help lists %v: too few commands", cmds)
	}
	for _, c := range cmds {
		subs := helpCommands(t, c)
		for _, sub := range subs {
			cases = append(cases, usageCase{[]string{c, sub, "--no-such-flag"}, nil, `--no-such-flag`})
		}
		if len(subs) > 0 {
			cases = append(cases, usageCase{[]string{c, "no-such-command"}, nil, `"no-such-command"`})
		}
		cases = append(cases, usageCase{[]string{c, "--no-such-flag"}, nil, `--no-such-flag`})
	}
	// Should a case run after all, it stays short and writes nowhere here.
	base := []string{"LOADCAP_OUT=" + t.TempDir(), "LOADCAP_QUIET=true"}
	for _, c := range cases {
		code, stdout, stderr := runCLI(t, append(base, c.env...), c.args...)
		if code != 2 {
			t.Errorf("%v %v: exit %d, want status 2; stderr %q", c.env, c.args, code, stderr)
			continue
		}
		msg := strings.TrimSuffix(stderr, "\n")
		if msg == "" || strings.Contains(msg, "\n") || strings.TrimSpace(msg) == "" || !strings.Contains(msg, c.want) {
			t.Errorf("%v %v: stderr %q: want exactly one non-empty line containing %s", c.env, c.args, stderr, c.want)
		}
		if stdout != "" {
			t.Errorf("%v %v: printed %d bytes on stdout (usage dump?): %.200q", c.env, c.args, len(stdout), stdout)
		}
	}
	// Help is still there when asked for.
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "run"}, {"run", "--help"}, {"profiles"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(stdout, "USAGE:") || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %.100q: want the help", args, code, stderr, stdout)
		}
	}
}

// helpCommands returns the commands `loadcap [cmd] --help` lists (not
// help itself).
func helpCommands(t *testing.T, cmd ...string) []string {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, append(cmd, "--help")...)
	if code != 0 {
		t.Fatalf("%v --help: exit %d: %s", cmd, code, stderr)
	}
	var names []string
	in := false
	for _, line := range strings.Split(stdout, "\n") {
		switch {
		case strings.HasPrefix(line, "COMMANDS:"):
			in = true
		case in && (line == "" || !strings.HasPrefix(line, " ")):
			in = false
		case in:
			name := strings.Fields(line)[0]
			if !strings.HasSuffix(name, ",") && name != "help" {
				names = append(names, name)
			}
		}
	}
	return names
}

// --pattern sets the run's length: a pattern that never writes is refused,
// and so is a --duration (flag or LOADCAP_DURATION) that says otherwise;
// one that agrees is accepted (lab runs pass both to their load generator).
func TestCLIPatternAndDuration(t *testing.T) {
	out := t.TempDir()
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"--pattern", "idle 2s"}, nil, `"idle 2s": no write phase`},
		{[]string{"--pattern", "idle 1s, idle 1s"}, nil, `no write phase`},
		{[]string{"--pattern", "write 2s", "--duration", "5s"}, nil, `--duration 5s with --pattern "write 2s"`},
		{[]string{"--pattern", "write 2s"}, []string{"LOADCAP_DURATION=5s"}, `--duration 5s with --pattern "write 2s"`},
		{[]string{"--pattern", "write 50ms, idle 1s", "--rate", "10"}, nil, `less than one write`},
	}
	for _, c := range cases {
		code, stdout, stderr := runCLI(t, c.env, append([]string{"run", "--out", out, "--quiet"}, c.args...)...)
		msg := strings.TrimSpace(stderr)
		if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) || stdout != "" {
			t.Errorf("%v %v: exit %d, stdout %q, stderr %q: want status 2 and one line containing %s", c.env, c.args, code, stdout, stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("refused runs left files: %v", ents)
	}
	code, stdout, stderr := runCLI(t, nil, "run", "--out", "", "--quiet", "--json", "--rate", "50", "--batch", "5",
		"--duration", "1500ms", "--pattern", "write 1s, idle 500ms")
	if code != 0 {
		t.Fatalf("--duration equal to the pattern's length: exit %d: %s", code, stderr)
	}
	var d results.Document
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatal(err)
	}
	if d.Config.DurationS != 1.5 || d.Config.Pattern != "write 1s, idle 500ms" || d.Targets[0].Writes != 50 {
		t.Errorf("duration %v s, pattern %q, writes %d: want 1.5 s, the pattern and 50 writes", d.Config.DurationS, d.Config.Pattern, d.Targets[0].Writes)
	}
}
