package run_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/loadgen/sink"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// Secrets never leave loadcap: passwords in URLs (user:password@, u=&p=,
// postgres://user:password@), INFLUX_TOKEN and PGPASSWORD are absent from
// stdout, stderr, result files, exports, progress lines (as the binary
// draws them on a terminal, and rendered in-process), `loadcap report`
// HTML, `loadcap compare` in every format, `loadcap results list` and
// `loadcap merge` (the merged file, its stdout form, a refused merge), for
// runs that succeed, fail to authenticate, and hit dead ports.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		influxPW = "s3cretPW-influx"  // user:password@ of a v1 URL (accepted)
		queryPW  = "s3cretPW-query"   // ?u=&p= of a v1 URL to a dead port
		wrongPW  = "s3cretPW-wrong"   // ?u=&p= refused by the sink (401)
		token    = "s3cretTOKEN-env"  // INFLUX_TOKEN (v2 and v3)
		pgPW     = "s3cretPW-pg"      // postgres://user:password@ (accepted)
		pgEnv    = "s3cretPW-pgenv"   // PGPASSWORD (accepted)
		pgWrong  = "s3cretPW-pgwrong" // postgres:// password refused (28P01)
		pgDeadPW = "s3cretPW-pgdead"  // postgres:// password to a dead port
	)
	secrets := []string{influxPW, queryPW, wrongPW, token, pgPW, pgEnv, pgWrong, pgDeadPW}
	env := []string{"INFLUX_TOKEN=" + token, "PGPASSWORD=" + pgEnv}

	v1 := startSink(t, "127.0.0.1:0", sink.Options{Username: "user", Password: influxPW})
	v2 := startSink(t, "127.0.0.1:0", sink.Options{Token: token})
	dead := freePort(t)
	pgURL := func(pw string) string {
		s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return "postgres://loadcap@" + s.Addr().String() + "/loadcap?sslmode=disable&table=secrets"
	}
	withPW := func(raw, pw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), pw)
		return u.String()
	}
	v1Host := strings.TrimPrefix(v1.URL(), "http://")
	influxTargets := strings.Join([]string{
		"http://user:" + influxPW + "@" + v1Host + "/write?db=x",
		v1.URL() + "/write?db=x&u=user&p=" + wrongPW,
		"http://" + dead + "/write?db=x&u=admin&p=" + queryPW,
		v2.URL() + "/api/v2/write?org=o&bucket=b",
		v2.URL() + "/api/v3/write_lp?db=x",
	}, ",")

	out := t.TempDir()
	exports := t.TempDir()
	var outputs []string // every output, to grep
	add := func(what, s string) { outputs = append(outputs, what+":\n"+s) }
	common := []string{"--duration", "1s", "--rate", "100", "--batch", "5", "--out", out}

	// Influx targets: accepted credentials, refused ones, a dead port; the
	// text summary, then --json with both exports.
	// Two targets accept no write (401, refused): the run exits 1.
	code, stdout, stderr := runCLI(t, env, append([]string{"run", "--targets", influxTargets}, common...)...)
	if code != 1 {
		t.Fatalf("influx run: exit %d, want 1 (targets that accepted no write): %s", code, stderr)
	}
	if !strings.Contains(stdout, "ECONNREFUSED") || !strings.Contains(stdout, "http_4xx") {
		t.Errorf("the run did not produce the failures this test needs (refused, 401):\n%s", stdout)
	}
	add("influx run stdout", stdout)
	add("influx run stderr", stderr)
	code, stdout, stderr = runCLI(t, env, append([]string{"run", "--targets", influxTargets, "--json",
		"--hdr-log", filepath.Join(exports, "run.hlog"), "--vegeta-results", filepath.Join(exports, "run.gob")}, common...)...)
	if code != 1 {
		t.Fatalf("influx --json run: exit %d, want 1: %s", code, stderr)
	}
	add("influx --json stdout", stdout)
	var doc results.Document
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || len(doc.Targets) != 5 {
		t.Fatalf("--json: %v (%d targets)", err, len(doc.Targets))
	}
	// The credentials were used: accepted where right, refused where wrong.
	for i, want := range []string{"ok", "401", "ECONNREFUSED", "ok", "ok"} {
		tr := doc.Targets[i]
		switch {
		case want == "ok" && (tr.WritesOK == 0 || tr.WritesFailed != 0),
			want == "401" && tr.StatusCodes["401"] != tr.Writes,
			want == "ECONNREFUSED" && tr.Errors["ECONNREFUSED"] != tr.Writes:
			t.Errorf("target %d %s: want %s: %+v", i, tr.URL, want, tr)
		}
	}
	add("influx --json stderr", stderr)

	// SQL: a password in the URL and one from PGPASSWORD, both accepted.
	code, stdout, stderr = runCLI(t, env, append([]string{"run", "--targets",
		withPW(pgURL(pgPW), pgPW) + "," + pgURL(pgEnv)}, common...)...)
	if code != 0 {
		t.Fatalf("postgres run: exit %d: %s", code, stderr)
	}
	add("postgres run stdout", stdout)
	add("postgres run stderr", stderr)

	// SQL refused before the run: a wrong password, a dead port.
	for _, target := range []string{withPW(pgURL("other"), pgWrong), "postgres://loadcap:" + pgDeadPW + "@" + dead + "/db?table=t"} {
		code, stdout, stderr = runCLI(t, env, append([]string{"run", "--targets", target}, common...)...)
		t.Logf("postgres refused: %s", strings.TrimSpace(stderr))
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("postgres refused: exit %d, stderr %q: want status 2 and one line", code, stderr)
		}
		add("postgres refused stdout", stdout)
		add("postgres refused stderr", stderr)
	}

	// Bad input naming a URL with a secret.
	code, _, stderr = runCLI(t, env, "run", "--targets", "http://user:"+influxPW+"@"+v1Host+"/query", "--out", out)
	if code != 2 {
		t.Errorf("bad path: exit %d", code)
	}
	add("bad input stderr", stderr)

	// Progress lines as the binary draws them on a terminal: stderr is a
	// pseudo-terminal, so the live line is on (the binary's own check).
	code, stdout, tty := runOnTTY(t, env, "run", "--targets", influxTargets, "--out", "", "--duration", "2s", "--rate", "100", "--batch", "5")
	if code != 1 {
		t.Fatalf("run on a terminal: exit %d, want 1 (targets that accepted no write): %s", code, tty)
	}
	if !strings.Contains(tty, "\r") || !strings.Contains(tty, " ok ") || !strings.Contains(tty, "p99") {
		t.Errorf("no progress line on the terminal: %q", tty)
	}
	add("progress on a terminal", tty)
	add("run on a terminal stdout", stdout)

	// Progress lines, rendered in-process as well.
	cfg := baseConfig(t)
	cfg.Targets = strings.Split(influxTargets, ",")
	cfg.Out = ""
	var progress strings.Builder
	cfg.OnTick = func(tk loadgen.Tick, tw int) { progress.WriteString(run.ProgressLine(tk, tw) + "\n") }
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := run.Execute(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if progress.Len() == 0 {
		t.Errorf("no progress line")
	}
	add("progress lines", progress.String())
	var summary strings.Builder
	results.WriteSummary(&summary, o.Doc, o.Path)
	add("in-process summary", summary.String())
	for _, n := range o.Doc.Notes {
		add("note", n)
	}

	// Everything written to disk, then report, compare and list over it.
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) != 3 {
		t.Fatalf("result files %v, want 3", files)
	}
	for _, dir := range []string{out, exports} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			add(e.Name(), string(b))
		}
	}
	html := filepath.Join(t.TempDir(), "report.html")
	code, stdout, stderr = runCLI(t, env, append(append([]string{"report"}, files...), "-o", html)...)
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	add("report.html", string(b))
	add("report stdout+stderr", stdout+stderr)
	for _, f := range []string{"text", "markdown", "csv", "json"} {
		code, stdout, stderr = runCLI(t, env, append([]string{"compare", "--format", f}, files...)...)
		if code != 0 {
			t.Fatalf("compare %s: exit %d: %s", f, code, stderr)
		}
		add("compare "+f, stdout+stderr)
	}
	code, stdout, stderr = runCLI(t, env, "results", "list", out)
	add("results list", stdout+stderr)

	// loadcap merge: two shards of a fleet run to the secret-bearing
	// targets, merged into a file and onto stdout; and a refused merge,
	// whose error lists how the configs differ.
	shards := t.TempDir()
	for i := range 2 {
		code, stdout, stderr = runCLI(t, env, "run", "--targets", influxTargets, "--shard", strconv.Itoa(i)+"/2",
			"--host", "host"+strconv.Itoa(i), "--duration", "1s", "--rate", "100", "--batch", "5", "--out", shards)
		if code != 1 {
			t.Fatalf("shard %d/2: exit %d, want 1 (targets that accepted no write): %s", i, code, stderr)
		}
		add("shard run", stdout+stderr)
	}
	shardFiles, _ := filepath.Glob(filepath.Join(shards, "*.json"))
	if len(shardFiles) != 2 {
		t.Fatalf("shard result files %v, want 2", shardFiles)
	}
	merged := filepath.Join(t.TempDir(), "merged.json")
	code, stdout, stderr = runCLI(t, env, append(append([]string{"merge"}, shardFiles...), "-o", merged)...)
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	add("merge stdout+stderr", stdout+stderr)
	b, err = os.ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	var md results.Document
	if err := json.Unmarshal(b, &md); err != nil || md.Fleet == nil || len(md.Targets) != 5 {
		t.Fatalf("merged document: %v, fleet %v, %d targets", err, md.Fleet, len(md.Targets))
	}
	add("merged.json", string(b))
	code, stdout, stderr = runCLI(t, env, append(append([]string{"merge"}, shardFiles...), "-o", "-")...)
	if code != 0 || !strings.Contains(stdout, `"fleet"`) {
		t.Fatalf("merge -o -: exit %d: %s", code, stderr)
	}
	add("merge -o - stdout+stderr", stdout+stderr)
	code, stdout, stderr = runCLI(t, env, "merge", shardFiles[0], files[0], files[2], "-o", filepath.Join(t.TempDir(), "refused.json"))
	if code != 2 {
		t.Errorf("merge of different runs: exit %d, want 2: %s", code, stderr)
	}
	add("refused merge stdout+stderr", stdout+stderr)

	for _, o := range outputs {
		for _, s := range secrets {
			if i := strings.Index(o, s); i >= 0 {
				what, _, _ := strings.Cut(o, "\n")
				lo, hi := max(0, i-120), min(len(o), i+len(s)+40)
				t.Errorf("secret %q leaked in %s: ...%s...", s, what, o[lo:hi])
			}
		}
	}
	// The redaction is visible where URLs are shown.
	if !strings.Contains(strings.Join(outputs, "\n"), "xxxxx") {
		t.Errorf("no redacted URL (xxxxx) anywhere")
	}
}

// runOnTTY runs the loadcap binary with its stderr on a pseudo-terminal
// (stdin too, stdout on a pipe), as a user at a terminal would, and returns
// its exit status, its stdout and all that it drew on the terminal.
func runOnTTY(t *testing.T, env []string, args ...string) (code int, stdout, tty string) {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.Command(os.Getenv("LOADCAP_TEST_EXE"), args...)
	cmd.Env = append(os.Environ(), env...)
	var o bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &o, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatal(err)
	}
	slave.Close() // the child holds its own: EOF (EIO) once it exits
	var term bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&term, master); close(copied) }()
	code = waitExit(t, cmd, func() string { return fmt.Sprintf("%v on a terminal", args) })
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
		t.Fatalf("%v: the terminal was not closed 10 s after the exit", args)
	}
	return code, o.String(), term.String()
}

// openPTY opens a pseudo-terminal pair: the master, and the terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open the pseudo-terminal: %v", err)
	}
	return m, s
}
