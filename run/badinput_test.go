package run_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// runCLI runs the loadcap binary with args and env added to the
// environment, bounded in time, and returns its exit status and outputs.
func runCLI(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Getenv("LOADCAP_TEST_EXE"), args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code = waitExit(t, cmd, func() string { return fmt.Sprintf("%v (stderr %q)", args, e.String()) })
	return code, o.String(), e.String()
}

// Every flag of `loadcap run` that can be wrong is refused before any
// traffic with status 2 and one line naming the value (file:line for
// files); none of these runs leaves a result file behind.
func TestCLIBadInputAudit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badClient := write("mine.toml", "conn = \"pool\"\npool_sise = 4\n")
	badClientValue := write("mine2.toml", "conn = \"pool\"\npool_size = 2\nidle_size = 8\n")
	badSysctl := write("bad.conf", "# tuning\nnet.ipv4.tcp_tw_reuse = 1\nnet.ipv4.ip_local_port_range = 60000 1024\n")
	notSysctl := write("junk.conf", "net.ipv4.tcp_tw_reuse = 1\nthis is not a sysctl line\n")
	regular := write("afile", "x")

	cases := []struct {
		args []string
		env  []string
		want string // must appear in the one line
	}{
		// durations and counts
		{[]string{"--duration", "-1s"}, nil, `--duration -1s`},
		{[]string{"--duration", "0s"}, nil, `--duration 0s`},
		{[]string{"--workers", "0"}, nil, `--workers 0`},
		{[]string{"--workers", "-1"}, nil, `-1`},
		{[]string{"--max-workers", "0"}, nil, `--max-workers 0`},
		{[]string{"--parallel", "2"}, nil, `--parallel applies to a matrix`},
		{[]string{"--lab", "--client", "close-client,keepalive", "--parallel", "-1"}, nil, `--parallel -1`},
		{[]string{"--workers", "100", "--max-workers", "10"}, nil, `--workers 100`},
		{[]string{"--timeout", "0"}, nil, `--timeout 0s`},
		{[]string{"--timeout", "-1s"}, nil, `--timeout -1s`},
		{[]string{"--sample-interval", "-1s"}, nil, `--sample-interval -1s`},
		{[]string{"--sample-interval", "1ms"}, nil, `--sample-interval 1ms`},
		{[]string{"--batch", "-1"}, nil, `--batch -1`},
		{[]string{"--batch", "2000000"}, nil, `--batch 2000000`},
		{[]string{"--lab-ports", "5"}, nil, `--lab-ports needs --lab`},
		{[]string{"--lab-targets", "2"}, nil, `--lab-targets needs --lab`},
		{[]string{"--lab", "--lab-targets", "0"}, nil, `bad --lab-targets "0"`},
		{[]string{"--lab", "--lab-targets", "17"}, nil, `bad --lab-targets "17"`},
		{[]string{"--lab", "--lab-targets", "1,x"}, nil, `bad --lab-targets "1,x"`},
		{[]string{"--lab", "--lab-targets", "1,"}, nil, `bad --lab-targets "1,"`},
		{[]string{"--lab", "--lab-targets", "2,2"}, nil, `bad --lab-targets "2,2": 2 twice`},
		{[]string{"--lab", "--lab-targets", "1,2", "--fail-on", "errors>0"}, nil, `--fail-on applies to one run`},
		// rates
		{[]string{"--rate", "0"}, nil, `"0"`},
		{[]string{"--rate", "-5"}, nil, `"-5"`},
		{[]string{"--rate", "nan"}, nil, `"nan"`},
		{[]string{"--rate", "inf"}, nil, `"inf"`},
		{[]string{"--rate", "1e3"}, nil, `"1e3"`},
		{[]string{"--rate", "2000m"}, nil, `"2000m"`},
		{[]string{"--rate", "0.1"}, nil, `--rate 0.1`}, // less than one write in 1s
		// generator
		{[]string{"--precision", "xx"}, nil, `"xx"`},
		{[]string{"--series", "0"}, nil, `0`},
		{[]string{"--tags", "-1"}, nil, `-1`},
		// the embedded sink's fault injection
		{[]string{"--sink-latency", "-1s"}, nil, `--sink-latency -1s`},
		{[]string{"--sink-error-rate", "2"}, nil, `--sink-error-rate 2`},
		// output
		{[]string{"--out", regular}, nil, regular},
		{[]string{"--out", filepath.Join(regular, "sub")}, nil, filepath.Join(regular, "sub")},
		{[]string{"--hdr-log", filepath.Join(regular, "x.hlog")}, nil, `--hdr-log`},
		// SQL and dial modes
		{[]string{"--sql-mode", "bogus"}, nil, `--sql-mode "bogus"`},
		{[]string{"--dial", "foo"}, nil, `"foo"`},
		// targets
		{[]string{"--targets", "ftp://h:21/write?db=x"}, nil, `unknown scheme "ftp"`},
		{[]string{"--targets", "http://127.0.0.1:1/write"}, nil, `needs ?db=NAME`},
		{[]string{"--targets", "http://127.0.0.1:1/api/v2/write?org=o&bucket=b"}, []string{"INFLUX_TOKEN="}, `INFLUX_TOKEN`},
		{[]string{"--targets", "http://127.0.0.1:1/api/v3/write_lp"}, nil, `needs ?db=NAME`},
		{[]string{"--targets", "http://h:99999/write?db=x"}, nil, `h:99999`},
		{[]string{"--targets", "postgres://u:hunter2@127.0.0.1:1/db?table=a.b.c"}, nil, `"a.b.c"`},
		{[]string{"--targets", "postgres://u@127.0.0.1:1/db?table=t&mode=bogus"}, nil, `"bogus"`},
		{[]string{"--targets", "embedded,"}, nil, `an empty entry`},
		{[]string{"--targets", "http://127.0.0.1:1/write?db=x,http://127.0.0.1:1/write?db=x"}, nil, `"http://127.0.0.1:1/write?db=x" given twice`},
		{[]string{"--targets", "postgres://u@127.0.0.1:1/db?default_query_exec_mode=fastest"}, nil, `default_query_exec_mode "fastest"`},
		{[]string{"--targets", "postgres://u@127.0.0.1:1/db?statement_cache_capacity=-1"}, nil, `statement_cache_capacity "-1"`},
		// TLS files
		{[]string{"--tls-ca", filepath.Join(dir, "missing-ca.pem")}, nil, `--tls-ca "` + filepath.Join(dir, "missing-ca.pem") + `": no such file`},
		{[]string{"--tls-ca", regular}, nil, `no PEM certificate`},
		{[]string{"--tls-key", regular}, nil, `--tls-key "` + regular + `": needs --tls-cert`},
		{[]string{"--tls-cert", regular}, nil, `--tls-cert "` + regular + `": needs --tls-key`},
		{[]string{"--tls-cert", regular, "--tls-key", regular}, nil, `--tls-cert "` + regular + `" / --tls-key`},
		// profile files: the file, the line and the key
		{[]string{"--client", badClient}, nil, badClient + `:2: key "pool_sise"`},
		{[]string{"--client", badClientValue}, nil, badClientValue + `:3`},
		{[]string{"--client", filepath.Join(dir, "missing.toml")}, nil, `missing.toml`},
		{[]string{"--sysctl", badSysctl}, nil, badSysctl + `:3`},
		{[]string{"--sysctl", notSysctl}, nil, notSysctl + `:2`},
		// fleet
		{[]string{"--shard", "3/2"}, nil, `"3/2"`},
		{[]string{"--start-at", "garbage"}, nil, `"garbage"`},
		{[]string{"--pattern", "write 1x"}, nil, `"1x"`},
		{[]string{"--pattern", "idle 2s"}, nil, `"idle 2s"`},
		{[]string{"--pattern", "write 2s"}, nil, `--duration 1s`}, // the pattern lasts 2s
		// values urfave/cli cannot parse, and unknown flags
		{[]string{"--duration", "zz"}, nil, `--duration "zz"`},
		{[]string{"--workers", "x"}, nil, `--workers "x"`},
		{[]string{"--batch", "x"}, nil, `--batch "x"`},
		{[]string{"--timeout", "soon"}, nil, `--timeout "soon"`},
		{[]string{"--gzip=perhaps"}, nil, `--gzip "perhaps"`},
		{[]string{"--seed", "1.5"}, nil, `--seed "1.5"`},
		{[]string{"--no-such-flag"}, nil, `--no-such-flag`},
		{nil, []string{"LOADCAP_BATCH=x"}, `LOADCAP_BATCH "x"`},
		{nil, []string{"LOADCAP_SAMPLE_INTERVAL=zz"}, `LOADCAP_SAMPLE_INTERVAL "zz"`},
		// --fail-on
		{[]string{"--fail-on", "errors>>1%"}, nil, `"errors>>1%"`},
		{[]string{"--fail-on", "bogus>1"}, nil, `"bogus>1"`},
		{[]string{"--fail-on", "p99>5"}, nil, `"p99>5"`},
		{[]string{"--fail-on", "errors>1%,achieved=99%"}, nil, `"achieved=99%"`},
		{[]string{"--fail-on", "errors>150%"}, nil, `"errors>150%"`},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "results")
		args := append([]string{"run", "--out", out, "--duration", "1s", "--quiet"}, c.args...)
		code, stdout, stderr := runCLI(t, c.env, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want status 2; stderr %q", c.args, code, stderr)
			continue
		}
		msg := strings.TrimSpace(stderr)
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: stderr %q: want one line containing %s", c.args, msg, c.want)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("%v: the password leaked: %q", c.args, msg)
		}
		if stdout != "" {
			t.Errorf("%v: printed %q on stdout", c.args, stdout)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Errorf("%v: refused run left files in --out: %v", c.args, ents)
		}
	}
}

// The same checks hold for run.Execute: the gaps the CLI audit found are
// refused as InputErrors by run itself, not only by the command.
func TestValidateAuditGaps(t *testing.T) {
	cases := map[string]func(*run.Config){
		"negative sample interval": func(c *run.Config) { c.SampleInterval = -time.Second },
		"tiny sample interval":     func(c *run.Config) { c.SampleInterval = time.Millisecond },
		"workers above max":        func(c *run.Config) { c.Workers, c.MaxWorkers = 10, 2 },
		"no write in duration":     func(c *run.Config) { c.Rate, c.Duration = 0.2, 2*time.Second },
		"unknown sql mode":         func(c *run.Config) { c.SQLMode = "upsert" },
		"pattern never writes":     func(c *run.Config) { c.Pattern = "idle 2s" },
		"no write in the pattern":  func(c *run.Config) { c.Rate, c.Pattern = 10, "write 50ms, idle 2s" },
		"duration against pattern": func(c *run.Config) { c.Pattern, c.DurationSet = "write 1s", true }, // Duration 2s
		"negative sink latency":    func(c *run.Config) { c.Sink.Latency = -time.Millisecond },
		"sink error rate above 1":  func(c *run.Config) { c.Sink.ErrorRate = 1.5 },
		"out is a file": func(c *run.Config) {
			f := filepath.Join(c.Out, "f")
			os.WriteFile(f, nil, 0o644)
			c.Out = f
		},
	}
	for name, mod := range cases {
		cfg := baseConfig(t)
		mod(&cfg)
		start := time.Now()
		out, err := run.Execute(t.Context(), cfg)
		if !run.IsInputError(err) || out != nil {
			t.Errorf("%s: got %v, want an input error and no outcome", name, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: refusing took %s: traffic was sent?", name, time.Since(start))
		}
	}
}

// --fail-on in CI: a run that completes but fails its condition exits 1,
// names the condition, and its result file is still saved; a run that
// passes its conditions exits 0.
func TestCLIFailOnExitStatus(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, nil, "run", "--duration", "2s", "--rate", "200", "--batch", "10", "--quiet",
		"--out", out, "--sink-error-rate", "0.2", "--fail-on", "port_errors>0,errors>1%")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	if !strings.Contains(stderr, "errors>1% holds: embedded failed") || strings.Contains(stderr, "port_errors>0 holds") {
		t.Errorf("stderr %q: want the errors condition named, not the port_errors one", stderr)
	}
	if !strings.Contains(stdout, "result: ") {
		t.Errorf("summary missing: %q", stdout)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.json"))
	if len(files) != 1 {
		t.Fatalf("result files %v, want one", files)
	}
	doc, err := results.Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if doc.Targets[0].WritesFailed == 0 || doc.Targets[0].Errors["http_5xx"] != doc.Targets[0].WritesFailed {
		t.Errorf("saved target %+v", doc.Targets[0])
	}

	code, _, stderr = runCLI(t, nil, "run", "--duration", "2s", "--rate", "200", "--batch", "10", "--quiet",
		"--out", t.TempDir(), "--json", "--fail-on", "errors>0,port_errors>0,p99>5s,achieved<50%")
	if code != 0 {
		t.Fatalf("healthy run: exit %d, stderr %q", code, stderr)
	}
}

// report -o and merge -o into a directory that does not exist are bad
// input: exit 2 and one line naming the user's path (not a hidden
// temporary file), nothing written.
func TestOutputIntoMissingDirectory(t *testing.T) {
	in := filepath.Join("..", "results", "testdata", "close-client-host.json")
	missing := filepath.Join(t.TempDir(), "no", "such")
	for _, args := range [][]string{
		{"report", in, "-o", filepath.Join(missing, "r.html")},
		{"merge", in, "-o", filepath.Join(missing, "m.json")},
	} {
		code, stdout, stderr := runCLI(t, nil, args...)
		line := strings.TrimSpace(stderr)
		if code != 2 || strings.Count(line, "\n") != 0 || !strings.Contains(line, args[len(args)-1]) ||
			!strings.Contains(line, "does not exist") || strings.Contains(line, ".tmp") {
			t.Errorf("%v: exit %d, stderr %q: want 2 and one line naming %s", args, code, stderr, args[len(args)-1])
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q", args, stdout)
		}
	}
}
