package run_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/sink"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// tlsConfig is a short run toward target with the TLS options given.
func tlsConfig(t *testing.T, target string, o loadgen.TLSOptions) run.Config {
	cfg := baseConfig(t)
	cfg.Targets, cfg.TLS = []string{target}, o
	cfg.Rate, cfg.Duration = 50, time.Second
	return cfg
}

// HTTPS through a real nginx with a certificate of the test's CA, in front
// of a real InfluxDB: with --tls-ca every write is stored (at /, and under
// a path prefix); without it the run stops before any load in one line
// naming the target and the reason; a location that requires a client
// certificate takes writes with --tls-cert/--tls-key and answers 400
// without; --tls-insecure needs no CA and is recorded.
func TestTLSThroughNginx(t *testing.T) {
	influx := testservers.Influx(t)[0]
	nginx := testservers.Nginx(t)
	ca := testservers.TLSFile(t, "ca.pem")
	withCA := loadgen.TLSOptions{CAFile: ca}
	client := loadgen.TLSOptions{CAFile: ca, CertFile: testservers.TLSFile(t, "client.pem"), KeyFile: testservers.TLSFile(t, "client.key")}
	stored := func(name, path string, o loadgen.TLSOptions) *results.Document {
		t.Helper()
		db := testservers.InfluxTempDB(t, influx, "loadcap_tls_"+name)
		out, err := run.Execute(context.Background(), tlsConfig(t, nginx+path+"?db="+db, o))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tr := out.Doc.Targets[0]
		if tr.WritesOK == 0 || tr.WritesFailed != 0 {
			t.Fatalf("%s: ok %d failed %d %v %s", name, tr.WritesOK, tr.WritesFailed, tr.Errors, tr.FirstError)
		}
		if got := testservers.InfluxCount(t, influx, db, "loadcap"); got != tr.LinesOK {
			t.Errorf("%s: count(*) %d, lines_ok %d", name, got, tr.LinesOK)
		}
		return out.Doc
	}

	doc := stored("root", "/write", withCA)
	tr := doc.Targets[0]
	if tr.ConnectMS == nil || tr.TLSHandshakeMS == nil || tr.TLSHandshakeMS.Max <= 0 {
		t.Errorf("connect %+v tls handshake %+v: want both recorded", tr.ConnectMS, tr.TLSHandshakeMS)
	}
	stored("prefix", "/influx/write", withCA)
	stored("client_cert", "/mtls/write", client)
	stored("server_name", "/write", loadgen.TLSOptions{CAFile: ca, ServerName: "localhost"})
	if d := stored("insecure", "/write", loadgen.TLSOptions{Insecure: true}); !d.Config.TLSInsecure {
		t.Errorf("--tls-insecure not recorded in the result")
	}

	// Without the client certificate nginx answers 400: classified, and
	// no write accepted.
	out, err := run.Execute(context.Background(), tlsConfig(t, nginx+"/mtls/write?db=loadcap", withCA))
	if err != nil {
		t.Fatal(err)
	}
	if tr := out.Doc.Targets[0]; tr.WritesOK != 0 || tr.StatusCodes["400"] == 0 || tr.Errors[loadgen.ClassHTTP4xx] != tr.WritesFailed {
		t.Errorf("client cert missing: ok %d status %v errors %v", tr.WritesOK, tr.StatusCodes, tr.Errors)
	}
	if len(results.Unreached(out.Doc)) != 1 {
		t.Errorf("a target that took no write is not reported unreached")
	}

	// Certificate problems stop the run before any load, in one line.
	for name, c := range map[string]struct {
		o    loadgen.TLSOptions
		want string
	}{
		"no CA":      {loadgen.TLSOptions{}, "certificate signed by unknown authority"},
		"wrong name": {loadgen.TLSOptions{CAFile: ca, ServerName: "wrong.example"}, "--tls-server-name"},
	} {
		_, err := run.Execute(context.Background(), tlsConfig(t, nginx+"/write?db=loadcap", c.o))
		if !run.IsInputError(err) {
			t.Errorf("%s: %v, want an input error", name, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, strings.TrimPrefix(nginx, "https://")) || strings.Contains(msg, "\n") {
			t.Errorf("%s: %q: want one line naming the target and %q", name, msg, c.want)
		}
	}
}

// --tls-insecure warns once on stderr.
func TestCLITLSInsecureWarns(t *testing.T) {
	nginx := testservers.Nginx(t)
	code, _, stderr := runCLI(t, nil, "run", "--targets", nginx+"/write?db=loadcap", "--tls-insecure",
		"--rate", "20", "--duration", "1s", "--quiet", "--out", t.TempDir())
	if code != 0 || strings.Count(stderr, "--tls-insecure") != 1 {
		t.Errorf("exit %d, stderr %q: want status 0 and one warning", code, stderr)
	}
}

// A target that accepted no write makes the run exit 1, its result still
// saved, and the summary says that nothing reached it and why, with no
// capacity sentence about it: refused connections, and a server that
// answers 401 to every write.
func TestCLINothingReached(t *testing.T) {
	nginx := testservers.Nginx(t)
	ca := testservers.TLSFile(t, "ca.pem")
	cases := map[string]struct {
		args []string
		want string
	}{
		"refused": {[]string{"--targets", "http://127.0.0.1:1/write?db=x"}, "no write reached 127.0.0.1:1: all "},
		"401":     {[]string{"--targets", nginx + "/auth/write?db=loadcap", "--tls-ca", ca}, "no write was accepted by "},
	}
	for name, c := range cases {
		dir := t.TempDir()
		code, stdout, stderr := runCLI(t, nil, append([]string{"run", "--duration", "1s", "--rate", "50", "--quiet", "--out", dir}, c.args...)...)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1; stderr %q", name, code, stderr)
		}
		if !strings.Contains(stdout, c.want) || !strings.Contains(stdout, "first error: ") {
			t.Errorf("%s: summary %q: want %q and the first error", name, stdout, c.want)
		}
		if strings.Contains(stdout, "capacity: at ") || !strings.Contains(stdout, "capacity: not judged") {
			t.Errorf("%s: summary %q judges the capacity toward a target it never reached", name, stdout)
		}
		if name == "401" && !strings.Contains(stdout, "http_4xx") {
			t.Errorf("%s: summary %q: want the 401s classified", name, stdout)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(files) != 1 {
			t.Errorf("%s: %d result files, want the result saved", name, len(files))
		}
	}
}

// Two runs back to back toward the same server: the close-client run
// leaves its TIME_WAIT sockets; the keep-alive run after it finds them at
// its start, reports them apart, and its own peak is near 0.
func TestOwnTimeWait(t *testing.T) {
	s, err := sink.Start("127.0.0.1:0", sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	target := s.URL() + "/write?db=loadcap"
	execute := func(client string) results.Target {
		cfg := baseConfig(t)
		cfg.Targets, cfg.Client, cfg.Rate, cfg.Duration = []string{target}, client, 100, time.Second
		out, err := run.Execute(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return out.Doc.Targets[0]
	}
	first := execute("close-client")
	if first.OwnPeakTimeWait < int(first.WritesOK)/2 {
		t.Fatalf("close-client: own peak TIME_WAIT %d for %d writes: the client closes first, want about one per write", first.OwnPeakTimeWait, first.WritesOK)
	}
	second := execute("keepalive")
	t.Logf("close-client: start %d own peak %d; keepalive: start %d own peak %d peak %d",
		first.StartTimeWait, first.OwnPeakTimeWait, second.StartTimeWait, second.OwnPeakTimeWait, second.PeakTimeWait)
	if second.StartTimeWait < first.OwnPeakTimeWait/2 {
		t.Errorf("keepalive: TIME_WAIT at start %d, want about the %d the close-client run left", second.StartTimeWait, first.OwnPeakTimeWait)
	}
	if second.OwnPeakTimeWait > 2 {
		t.Errorf("keepalive: own peak TIME_WAIT %d (new connections %d): the earlier run's sockets counted as this run's", second.OwnPeakTimeWait, second.NewConnections)
	}
}

// When every pooled connection is busy because the target is slow, the
// overload sentence names the target's service time and the pool size,
// not this machine.
func TestOverloadNamesSlowTarget(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "pool4.toml")
	if err := os.WriteFile(prof, []byte("conn = \"pool\"\npool_size = 4\nidle_size = 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t)
	cfg.Client, cfg.Rate, cfg.Duration = prof, 100, 2*time.Second
	cfg.Sink.Latency = 100 * time.Millisecond // 4 connections carry at most 40 writes/s
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	msg := results.OverloadSentence(out.Doc)
	if !strings.Contains(msg, "every one of the 4 pooled connections was busy") || !strings.Contains(msg, "service time") || strings.Contains(msg, "machine saturated") {
		t.Errorf("overload %q: want the pool and the target's service time named", msg)
	}
}
