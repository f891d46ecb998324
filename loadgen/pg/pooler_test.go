package pg_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// runPG runs cfg through run.Execute and returns its one target.
func runPG(t *testing.T, cfg run.Config) results.Target {
	t.Helper()
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v: %v", cfg.Targets, err)
	}
	return out.Doc.Targets[0]
}

// Through real pgbouncers, in transaction and in session pooling, every
// write mode stores exactly lines_ok rows with the default execution mode
// (a transaction pooler hands each transaction to any server connection:
// a named prepared statement of an earlier write is not there, or is there
// twice). The keep-alive pool and close-client both work; close-client
// through the pooler opens one client connection per write.
func TestPoolersEveryMode(t *testing.T) {
	direct := realPG(t)
	poolers := map[string]string{
		"transaction": testservers.PgBouncer(t, "transaction"),
		"session":     testservers.PgBouncer(t, "session"),
	}
	for pool, dsn := range poolers {
		for _, mode := range []string{"insert", "values", "copy"} {
			for _, client := range []string{"keepalive", "close-client"} {
				table := uniqueTable("pgb_" + pool[:2] + "_" + mode)
				dropTable(t, direct, table)
				cfg := runConfig(withQuery(dsn, "table="+table+"&mode="+mode))
				cfg.Client = client
				tr := runPG(t, cfg)
				what := pool + " " + mode + " " + client
				if tr.WritesFailed != 0 || tr.LinesOK != 100*20 {
					t.Errorf("%s: writes_failed=%d lines_ok=%d errors=%v %s", what, tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
					continue
				}
				if got := testservers.PgCount(t, direct, table); got != tr.LinesOK {
					t.Errorf("%s: count(*) = %d, lines_ok = %d", what, got, tr.LinesOK)
				}
				if client == "close-client" && tr.NewConnections != tr.Writes {
					t.Errorf("%s: %d new connections for %d writes, want one client connection per write", what, tr.NewConnections, tr.Writes)
				}
			}
		}
	}
}

// Every execution mode pgx knows (default_query_exec_mode in the URL) is
// honoured and never reaches the server as a start-up parameter: directly
// and through a session pooler (which refuses unknown start-up parameters)
// every one stores every row. Through a transaction pooler the
// pooler-safe ones do, and cache_statement fails as it does with pgx: its
// named statement outlives the transaction.
func TestExecModes(t *testing.T) {
	direct := realPG(t)
	targets := map[string]string{
		"direct":      direct,
		"session":     testservers.PgBouncer(t, "session"),
		"transaction": testservers.PgBouncer(t, "transaction"),
	}
	for where, dsn := range targets {
		for _, exec := range []string{"exec", "cache_describe", "simple_protocol", "cache_statement", "describe_exec"} {
			for _, mode := range []string{"insert", "values"} {
				table := uniqueTable("x_" + where[:2] + "_" + mode)
				dropTable(t, direct, table)
				tr := runPG(t, runConfig(withQuery(dsn, "table="+table+"&mode="+mode+"&default_query_exec_mode="+exec)))
				what := where + " " + exec + " " + mode
				if where == "transaction" && (exec == "cache_statement" || exec == "describe_exec") {
					// Not guaranteed to fail on every write (a write may
					// land on the server connection that has the statement),
					// only never to lose or double a row.
					if got := testservers.PgCount(t, direct, table); got != tr.LinesOK {
						t.Errorf("%s: count(*) = %d, lines_ok = %d", what, got, tr.LinesOK)
					}
					if exec == "cache_statement" && tr.WritesFailed == 0 {
						t.Errorf("%s: no write failed; a named statement through a transaction pooler should", what)
					}
					t.Logf("%s: %d of %d writes failed (%v), as with pgx", what, tr.WritesFailed, tr.Writes, tr.Errors)
					continue
				}
				if tr.WritesFailed != 0 || tr.LinesOK != 100*20 {
					t.Errorf("%s: writes_failed=%d lines_ok=%d errors=%v %s", what, tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
					continue
				}
				if got := testservers.PgCount(t, direct, table); got != tr.LinesOK {
					t.Errorf("%s: count(*) = %d, lines_ok = %d", what, got, tr.LinesOK)
				}
			}
		}
	}
}

// The execution mode in use is said in the result's notes.
func TestExecModeNoted(t *testing.T) {
	dsn := realPG(t)
	table := uniqueTable("x_note")
	dropTable(t, dsn, table)
	out, err := run.Execute(context.Background(), runConfig(withQuery(dsn, "table="+table+"&default_query_exec_mode=simple_protocol")))
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(out.Doc.Notes, "\n")
	if !strings.Contains(notes, "SQL execution mode simple_protocol") {
		t.Errorf("notes %q: want the execution mode", notes)
	}
}

// PostgreSQL with ssl = on and a certificate of the test's CA: the pgx URL
// settings sslmode=verify-full&sslrootcert=CA take writes, TLS handshake
// time recorded; without the CA the run stops before any load with one
// line naming the target and the reason.
func TestPostgresTLSVerifyFull(t *testing.T) {
	direct := realPG(t)
	ca := testservers.TLSFile(t, "ca.pem")
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	u.RawQuery = ""
	table := uniqueTable("tls")
	dropTable(t, direct, table)
	tr := runPG(t, runConfig(u.String()+"?sslmode=verify-full&sslrootcert="+url.QueryEscape(ca)+"&table="+table))
	if tr.WritesFailed != 0 || tr.LinesOK != 100*20 {
		t.Fatalf("verify-full: writes_failed=%d lines_ok=%d %v %s", tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
	}
	if got := testservers.PgCount(t, direct, table); got != tr.LinesOK {
		t.Errorf("verify-full: count(*) = %d, lines_ok = %d", got, tr.LinesOK)
	}
	if tr.TLSHandshakeMS == nil || tr.ConnectMS == nil {
		t.Errorf("connect %+v TLS handshake %+v: want both recorded", tr.ConnectMS, tr.TLSHandshakeMS)
	}
	_, err = run.Execute(context.Background(), runConfig(u.String()+"?sslmode=verify-full&table="+table))
	if !run.IsInputError(err) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "certificate signed by unknown authority") || !strings.Contains(err.Error(), u.Host) {
		t.Errorf("without the CA: %v: want one input error line naming %s and the unknown authority", err, u.Host)
	}
}
