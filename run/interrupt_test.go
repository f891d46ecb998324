package run_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen/sink"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// proc is a running loadcap binary.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	exited         chan struct{} // closed when the process has exited
	err            error         // Wait's error, once exited is closed
}

// lockedBuffer is a bytes.Buffer safe to read while the process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startBinary starts `loadcap args...`; the process is killed when the
// test ends if it is still running.
func startBinary(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Getenv("LOADCAP_TEST_EXE"), args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// waitRequests waits until s has answered at least n requests: the binary
// is sending its load.
func waitRequests(t *testing.T, s *sink.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Requests < n {
		if time.Now().After(deadline) {
			t.Fatalf("the binary sent %d requests in 30 s", s.Stats().Requests)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExit waits for the started cmd, at most 90 s (then it kills it and
// fails t naming what), and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd, what func() string) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitCode(t, err)
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after 90 s", what())
		return -1
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", err)
	return -1
}

// SIGTERM to `loadcap run` (not --lab) mid-run: the load stops, in-flight
// writes drain, and the result file is saved with what was measured,
// marked interrupted; no temporary file is left behind.
func TestCLISIGTERMSavesResult(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sink.Options{})
	out := t.TempDir()
	p := startBinary(t, "run", "--targets", s.URL()+"/write?db=x", "--duration", "60s",
		"--rate", "200", "--batch", "10", "--out", out, "--quiet")
	stdout, stderr := p.stdout, p.stderr
	waitRequests(t, s, 100)
	sent := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM; stderr %q", stderr.String())
	}
	if code := exitCode(t, p.err); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr %q", code, stderr.String())
	}
	t.Logf("stopped and saved %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr %q: want the interruption said", stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) != 1 {
		t.Fatalf("result files %v; stdout %q", files, stdout.String())
	}
	if !strings.Contains(stdout.String(), files[0]) {
		t.Errorf("summary does not name the saved file %s:\n%s", files[0], stdout.String())
	}
	doc, err := results.Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	tr := doc.Targets[0]
	if !doc.Interrupted || doc.Config.DurationS != 60 {
		t.Errorf("interrupted %v, duration %v: want an interrupted 60 s run", doc.Interrupted, doc.Config.DurationS)
	}
	if tr.WritesOK < 100 || tr.WritesFailed != 0 {
		t.Errorf("measurements lost: %+v", tr)
	}
	// Every write the sink answered was counted (the drain let in-flight
	// writes finish), and none beyond.
	if got := s.Stats().Lines; got != tr.LinesOK {
		t.Errorf("sink counted %d lines, the saved result %d", got, tr.LinesOK)
	}
	if ents, _ := filepath.Glob(filepath.Join(out, ".loadcap-*")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// A second signal exits at once with status 130, even while the first
// one's drain is waiting for writes that hang.
func TestCLISecondSignalExitsAtOnce(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sink.Options{Intercept: func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/write" {
			return false
		}
		<-r.Context().Done()
		return true
	}})
	out := t.TempDir()
	p := startBinary(t, "run", "--targets", s.URL()+"/write?db=x", "--duration", "60s",
		"--rate", "100", "--batch", "10", "--timeout", "30s", "--out", out, "--quiet")
	stderr := p.stderr
	// Each of the first workers holds one hanging write.
	waitRequests(t, s, 5)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The first signal's message: the drain has begun.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "interrupted") {
		if time.Now().After(deadline) {
			t.Fatalf("no interruption message after SIGTERM: %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-p.exited:
		t.Fatalf("exited before the second signal (%v): the drain should wait for the hanging writes", p.err)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// At once means without finishing the drain: a run that drained would
	// exit 0 with its result saved (TestCLISIGTERMSavesResult); the second
	// signal exits 130 and saves nothing. (Exit codes and files tell, not
	// the wall time, which a busy machine stretches.)
	select {
	case <-p.exited:
		if code := exitCode(t, p.err); code != 130 {
			t.Errorf("exit %d after a second signal, want 130", code)
		}
		if !strings.Contains(stderr.String(), "quitting now without saving") {
			t.Errorf("stderr %q: want the second signal's message", stderr.String())
		}
		if files, _ := filepath.Glob(filepath.Join(out, "*.json")); len(files) != 0 {
			t.Errorf("result saved after a second signal (%v): the run drained instead of quitting", files)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after a second signal")
	}
}

// An --out that cannot be written is refused before any traffic: a path
// under a regular file (chmod does not stop root), and a full disk (a tiny
// tmpfs, filled).
func TestUnwritableOutRefusedBeforeRun(t *testing.T) {
	s := startSink(t, "127.0.0.1:0", sink.Options{})
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	full := fullDisk(t)

	for _, c := range []struct{ name, out, want string }{
		{"under a regular file", filepath.Join(file, "results"), "not a directory"},
		{"full disk", full, "no space left on device"},
	} {
		if c.out == "" {
			t.Logf("%s: skipped (no tmpfs)", c.name)
			continue
		}
		before := s.Stats().Requests
		cfg := baseConfig(t)
		cfg.Targets = []string{s.URL() + "/write?db=x"}
		cfg.Out = c.out
		out, err := run.Execute(t.Context(), cfg)
		if !run.IsInputError(err) || out != nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.out) {
			t.Errorf("%s: got %v, want an input error naming %s: %s", c.name, err, c.out, c.want)
		}
		code, stdout, stderr := runCLI(t, nil, "run", "--targets", s.URL()+"/write?db=x", "--duration", "1s", "--out", c.out, "--quiet")
		msg := strings.TrimSpace(stderr)
		if code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) || stdout != "" {
			t.Errorf("%s: exit %d, stderr %q: want status 2 and one line saying %s", c.name, code, msg, c.want)
		}
		if n := s.Stats().Requests - before; n != 0 {
			t.Errorf("%s: %d requests sent before the refusal", c.name, n)
		}
	}
	if full != "" {
		if ents, _ := os.ReadDir(full); len(ents) != 1 {
			t.Errorf("full disk: probe files left behind: %v", ents)
		}
	}
}

// fullDisk mounts a 64 KiB tmpfs, fills it and returns its path; "" when
// mounting is not possible (not root, no tmpfs), a failure when
// LOADCAP_REQUIRE_SERVERS=1 (make test) forbids skipping. It is unmounted
// when the test ends.
func fullDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		if testservers.Required() {
			t.Fatalf("mount tmpfs for the full-disk case: %v; %s=1 forbids skipping it", err, testservers.EnvRequire)
		}
		t.Logf("mount tmpfs: %v", err)
		return ""
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for i := 0; i < 1000; i++ {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill tmpfs: %v", err)
			}
			return dir
		}
	}
	t.Fatalf("a 64 KiB tmpfs took 4 MB")
	return ""
}
