package run_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
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
