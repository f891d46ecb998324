package pg_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/run"
)

func runConfig(targets ...string) run.Config {
	gc := loadgen.DefaultGenConfig()
	gc.Series = 100
	return run.Config{
		Targets: targets, Rate: 100, Duration: time.Second, Batch: 20, Client: "keepalive", Sysctl: "host",
		Gen: gc, Timeout: 5 * time.Second, Version: "test", SampleInterval: 250 * time.Millisecond,
	}
}

// Through run.Execute, as `loadcap run` does: for each mode, count(*) in
// PostgreSQL equals the lines_ok of the result document.
func TestExecuteModesRealPostgres(t *testing.T) {
	dsn := realPG(t)
	c := sqlConn(t, dsn)
	for _, mode := range []string{"insert", "values", "copy"} {
		table := uniqueTable("exec_" + mode)
		dropTable(t, dsn, table)
		out, err := run.Execute(context.Background(), runConfig(withQuery(dsn, "table="+table+"&mode="+mode)))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		tr := out.Doc.Targets[0]
		if tr.WritesFailed != 0 || tr.LinesOK != 100*20 {
			t.Fatalf("%s: writes_failed=%d lines_ok=%d errors=%v %s", mode, tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
		}
		if got := count(t, c, table); got != tr.LinesOK {
			t.Errorf("%s: count(*) = %d, lines_ok = %d", mode, got, tr.LinesOK)
		}
		if tr.Kind != loadgen.KindPostgres {
			t.Errorf("%s: kind %q", mode, tr.Kind)
		}
	}
}

// embedded-pg runs without a database; --sql-mode picks the mode.
func TestExecuteEmbeddedPG(t *testing.T) {
	for _, mode := range []string{"insert", "values", "copy"} {
		cfg := runConfig("embedded-pg")
		cfg.SQLMode = mode
		out, err := run.Execute(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		tr := out.Doc.Targets[0]
		if tr.WritesFailed != 0 || tr.LinesOK != 100*20 || tr.Kind != loadgen.KindEmbeddedPG {
			t.Fatalf("%s: %+v", mode, tr)
		}
	}
}

// Mixed dual-write: every write goes to an InfluxDB-compatible HTTP target
// and to PostgreSQL; both hold every line.
func TestExecuteMixedDualWrite(t *testing.T) {
	target := "embedded-pg"
	table := uniqueTable("dual")
	dsn := ""
	if d := realPGOrEmpty(); d != "" {
		dsn = d
		target = withQuery(dsn, "table="+table+"&mode=copy")
		dropTable(t, dsn, table)
	}
	out, err := run.Execute(context.Background(), runConfig("embedded", target))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Doc.Targets) != 2 {
		t.Fatalf("%d targets", len(out.Doc.Targets))
	}
	for _, tr := range out.Doc.Targets {
		if tr.WritesFailed != 0 || tr.LinesOK != 100*20 {
			t.Fatalf("%s: writes_failed=%d lines_ok=%d %v %s", tr.Name, tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
		}
	}
	if dsn != "" {
		if got := count(t, sqlConn(t, dsn), table); got != out.Doc.Targets[1].LinesOK {
			t.Fatalf("count(*) %d, lines_ok %d", got, out.Doc.Targets[1].LinesOK)
		}
	}
}

// Start-up problems are InputErrors (exit 2) with one line naming the
// problem, never the password, and nothing is sent.
func TestExecuteStartupErrorsAreInput(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{Password: "right-secret"})
	u, _ := url.Parse(s.URL())
	u.User = url.UserPassword("loadcap", "wrong-secret")
	cases := map[string][2]string{
		"wrong password": {u.String(), "password authentication failed"},
		"unreachable":    {"postgres://loadcap:wrong-secret@127.0.0.1:1/loadcap?sslmode=disable", "connection refused"},
		"bad mode":       {u.String() + "&mode=merge", `bad mode "merge"`},
	}
	if dsn := realPGOrEmpty(); dsn != "" {
		m, _ := url.Parse(dsn)
		m.Path = "/loadcap_missing_db"
		cases["missing database"] = [2]string{m.String(), `database "loadcap_missing_db" does not exist`}
	}
	for name, c := range cases {
		before := s.Stats().Statements
		_, err := run.Execute(context.Background(), runConfig("embedded", c[0]))
		if !run.IsInputError(err) {
			t.Errorf("%s: %v, want an input error", name, err)
			continue
		}
		msg := err.Error()
		t.Logf("%s: %s", name, msg)
		if !strings.Contains(msg, c[1]) || strings.Contains(msg, "\n") || strings.Contains(msg, "wrong-secret") {
			t.Errorf("%s: %q: want one line with %q and no password", name, msg, c[1])
		}
		if s.Stats().Statements != before {
			t.Errorf("%s: statements were sent", name)
		}
	}
}

// A driver's notes reach the result document named once by their target:
// "embedded-pg: values mode: ...", never "embedded-pg: embedded-pg: ...".
func TestExecuteNotesNameTargetOnce(t *testing.T) {
	cfg := runConfig("embedded-pg")
	cfg.SQLMode, cfg.Rate, cfg.Batch = "values", 2, 7000 // 70,000 parameters: split in two
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tr := out.Doc.Targets[0]; tr.WritesFailed != 0 || tr.LinesOK != 2*7000 {
		t.Fatalf("writes_failed=%d lines_ok=%d %v %s", tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
	}
	want := "embedded-pg: values mode: a write of 7000 rows x 10 columns exceeds PostgreSQL's 65535 bind parameters; each write is sent as 2 INSERT statements of at most 6553 rows, pipelined"
	found := false
	for _, n := range out.Doc.Notes {
		if strings.Contains(n, "embedded-pg: embedded-pg") {
			t.Errorf("note names its target twice: %q", n)
		}
		found = found || n == want
	}
	if !found {
		t.Fatalf("notes %q: want %q", out.Doc.Notes, want)
	}
}
