package pg_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// pool8 is a client profile file: a keep-alive pool of 8 connections. A
// pgbouncer opens its server connections one at a time, so on a loaded
// test machine a burst of 64 new client connections can wait seconds for
// theirs; 8 bound that wait. (How the two budgets interact is the subject
// of docs/write-paths.md.)
func pool8(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "pool8.toml")
	if err := os.WriteFile(p, []byte("conn = \"pool\"\npool_size = 8\nidle_size = 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runPG runs cfg through run.Execute and returns its one target. The
// write timeout is generous: a loaded 2-core machine forks backends slowly.
func runPG(t *testing.T, cfg run.Config) results.Target {
	t.Helper()
	cfg.Timeout = 15 * time.Second
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
	pooled := pool8(t)
	for _, pool := range []string{"transaction", "session"} {
		dsn := testservers.PgBouncer(t, pool)
		for _, mode := range []string{"insert", "values", "copy"} {
			clients := []string{pooled}
			if mode == "insert" {
				clients = append(clients, "close-client")
			}
			for _, client := range clients {
				table := uniqueTable("pgb_" + pool[:2] + "_" + mode)
				dropTable(t, direct, table)
				cfg := runConfig(withQuery(dsn, "table="+table+"&mode="+mode))
				cfg.Client = client
				tr := runPG(t, cfg)
				what := pool + " " + mode + " " + filepath.Base(client)
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
// pooler-safe ones do; cache_statement fails there as with pgx whenever a
// write lands on another server connection than the one that prepared its
// statement (how often depends on the concurrency), and never loses or
// doubles a row. (describe_exec can fail there the same way.)
func TestExecModes(t *testing.T) {
	direct := realPG(t)
	pooled := pool8(t)
	type cell struct{ where, exec, mode string }
	var cells []cell
	for _, exec := range []string{"exec", "cache_describe", "describe_exec", "cache_statement", "simple_protocol"} {
		cells = append(cells, cell{"direct", exec, "insert"})
	}
	cells = append(cells, cell{"direct", "simple_protocol", "values"}, cell{"direct", "cache_statement", "values"},
		cell{"session", "cache_statement", "insert"}, cell{"session", "simple_protocol", "insert"},
		cell{"transaction", "cache_describe", "insert"}, cell{"transaction", "simple_protocol", "insert"},
		cell{"transaction", "simple_protocol", "values"}, cell{"transaction", "cache_statement", "values"})
	for _, c := range cells {
		dsn := direct
		if c.where != "direct" {
			dsn = testservers.PgBouncer(t, c.where)
		}
		table := uniqueTable("x_" + c.where[:2] + "_" + c.mode)
		dropTable(t, direct, table)
		cfg := runConfig(withQuery(dsn, "table="+table+"&mode="+c.mode+"&default_query_exec_mode="+c.exec))
		cfg.Client = pooled
		tr := runPG(t, cfg)
		what := c.where + " " + c.exec + " " + c.mode
		if got := testservers.PgCount(t, direct, table); got != tr.LinesOK {
			t.Errorf("%s: count(*) = %d, lines_ok = %d", what, got, tr.LinesOK)
		}
		if c.where == "transaction" && c.exec == "cache_statement" {
			// How many fail depends on which server connection each
			// write lands on.
			t.Logf("%s: %d of %d writes failed (%v), as with pgx", what, tr.WritesFailed, tr.Writes, tr.Errors)
			continue
		}
		if tr.WritesFailed != 0 || tr.LinesOK != 100*20 {
			t.Errorf("%s: writes_failed=%d lines_ok=%d errors=%v %s", what, tr.WritesFailed, tr.LinesOK, tr.Errors, tr.FirstError)
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
