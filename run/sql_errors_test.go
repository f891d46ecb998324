package run_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/results"
	"github.com/loadcap/loadcap/run"
)

// SQLSTATE classes end to end, against real PostgreSQL, through
// run.Execute: a server error is counted in the class "sql"
// (loadgen.ClassSQL) and, beside it, under "pg_" + its SQLSTATE
// ("pg_57P01", "pg_23514"), in the result document's errors map.

var sqlTableSeq atomic.Int64

// sqlTable returns a table name of the test's own in the test PostgreSQL,
// dropped when the test ends.
func sqlTable(t *testing.T, dsn, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), sqlTableSeq.Add(1))
	t.Cleanup(func() { testservers.PgExec(t, dsn, `DROP TABLE IF EXISTS "`+name+`"`) })
	return name
}

// withParams appends query parameters to a connection string.
func withParams(dsn, kv string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + kv
	}
	return dsn + "?" + kv
}

// sqlConfig is a bounded SQL run against one target.
func sqlConfig(t *testing.T, target string, rate float64, dur time.Duration) run.Config {
	cfg := baseConfig(t)
	cfg.Targets = []string{target}
	cfg.Rate, cfg.Duration, cfg.Batch = rate, dur, 10
	cfg.Gen.Series = 100
	cfg.SampleInterval = 250 * time.Millisecond
	return cfg
}

// sqlErrors checks that tr's errors are exactly the SQL class and the
// given SQLSTATE, each counting every failed write, and returns nothing
// else: {"sql": failed, "pg_<code>": failed}.
func sqlErrors(t *testing.T, tr results.Target, code string) {
	t.Helper()
	if tr.WritesOK+tr.WritesFailed != tr.Writes {
		t.Errorf("ok %d + failed %d != writes %d", tr.WritesOK, tr.WritesFailed, tr.Writes)
	}
	want := map[string]int64{loadgen.ClassSQL: tr.WritesFailed, "pg_" + code: tr.WritesFailed}
	var keys []string
	for k, n := range tr.Errors {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) != 2 || tr.Errors[loadgen.ClassSQL] != want[loadgen.ClassSQL] || tr.Errors["pg_"+code] != want["pg_"+code] {
		t.Errorf("errors %v (%s): want exactly %v", tr.Errors, tr.FirstError, want)
	}
}

// A backend killed with pg_terminate_backend while the run uses its
// connection: the next write on it fails with the server's FATAL
// 57P01 (admin_shutdown), classified "sql" and "pg_57P01"; the pool opens
// a new connection and the run goes on: later writes succeed, every write
// is accounted for, and count(*) equals lines_ok.
func TestSQLTerminatedBackendRealPostgres(t *testing.T) {
	dsn := testservers.Postgres(t)
	table := sqlTable(t, dsn, "term")
	app := fmt.Sprintf("loadcap_term_%d", os.Getpid())
	cfg := sqlConfig(t, withParams(dsn, "table="+table+"&application_name="+app), 50, 3*time.Second)
	killed := make(chan int64, 1)
	go func() {
		time.Sleep(1200 * time.Millisecond)
		// Only this run's backends, named by their application_name.
		killed <- testservers.PgQueryInt(t, dsn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app)
	}()
	out, err := run.Execute(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := <-killed
	tr := out.Doc.Targets[0]
	t.Logf("terminated %d backends; writes %d ok %d failed %d errors %v first %q", n, tr.Writes, tr.WritesOK, tr.WritesFailed, tr.Errors, tr.FirstError)
	if n < 1 {
		t.Fatalf("no backend of the run to terminate (application_name %s)", app)
	}
	if tr.WritesFailed < 1 || tr.WritesFailed > n {
		t.Fatalf("%d writes failed with %d backends terminated: want 1..%d (one per killed connection at most)", tr.WritesFailed, n, n)
	}
	sqlErrors(t, tr, "57P01")
	if !strings.Contains(tr.FirstError, "terminating connection due to administrator command") {
		t.Errorf("first_error %q: want the server's message", tr.FirstError)
	}
	if tr.Writes != 150 {
		t.Errorf("writes %d, want all 150 issued", tr.Writes)
	}
	if h := tr.Health; h == nil || h.FirstClass != loadgen.ClassSQL || h.RecoveredMS == nil {
		t.Errorf("health %+v: want a failure classified sql and a recovery", h)
	}
	var okAfter int64
	for _, iv := range out.Doc.Timeline {
		if iv.TMS >= 2000 {
			okAfter += iv.OK
		}
	}
	if okAfter == 0 {
		t.Errorf("no write succeeded in the last second, after the backends were terminated: %+v", out.Doc.Timeline)
	}
	if got := testservers.PgCount(t, dsn, table); got != tr.LinesOK {
		t.Errorf("count(*) %d, lines_ok %d", got, tr.LinesOK)
	}
}

// Integrity violations: a CHECK constraint every generated row breaks gives
// SQLSTATE 23514 (check_violation) on every write, in each mode, and
// nothing is stored; a unique index on host, which the generator's 100
// series repeat, gives 23505 (unique_violation) on some writes while the
// others are stored. Neither aborts the run.
func TestSQLIntegrityViolationsRealPostgres(t *testing.T) {
	dsn := testservers.Postgres(t)
	g, err := loadgen.NewGenerator(sqlConfig(t, "", 1, time.Second).Gen)
	if err != nil {
		t.Fatal(err)
	}
	create := func(table, constraint string) {
		testservers.PgExec(t, dsn, pg.CreateTableSQL(table, pg.Columns(g)))
		testservers.PgExec(t, dsn, constraint)
	}
	for _, mode := range []string{"insert", "values", "copy"} {
		t.Run("check/"+mode, func(t *testing.T) {
			table := sqlTable(t, dsn, "chk_"+mode)
			create(table, `ALTER TABLE "`+table+`" ADD CONSTRAINT loadcap_never CHECK (host IS NULL)`)
			out, err := run.Execute(context.Background(), sqlConfig(t, withParams(dsn, "table="+table+"&mode="+mode), 20, time.Second))
			if err != nil {
				t.Fatal(err)
			}
			tr := out.Doc.Targets[0]
			if !strings.Contains(tr.FirstError, `violates check constraint "loadcap_never"`) {
				t.Errorf("first_error %q: want the server's message", tr.FirstError)
			}
			if tr.Writes != 20 || tr.WritesFailed != tr.Writes || tr.LinesOK != 0 {
				t.Fatalf("writes %d failed %d lines_ok %d: want all 20 failed", tr.Writes, tr.WritesFailed, tr.LinesOK)
			}
			sqlErrors(t, tr, "23514")
			if got := testservers.PgCount(t, dsn, table); got != 0 {
				t.Errorf("count(*) %d after every write failed", got)
			}
		})
	}
	t.Run("unique", func(t *testing.T) {
		table := sqlTable(t, dsn, "uniq")
		create(table, `CREATE UNIQUE INDEX ON "`+table+`" (host)`)
		out, err := run.Execute(context.Background(), sqlConfig(t, withParams(dsn, "table="+table+"&mode=values"), 40, time.Second))
		if err != nil {
			t.Fatal(err)
		}
		tr := out.Doc.Targets[0]
		t.Logf("writes %d ok %d failed %d errors %v", tr.Writes, tr.WritesOK, tr.WritesFailed, tr.Errors)
		if tr.WritesOK == 0 || tr.WritesFailed == 0 {
			t.Fatalf("writes ok %d failed %d: want the first writes stored and repeats of a host refused", tr.WritesOK, tr.WritesFailed)
		}
		sqlErrors(t, tr, "23505")
		if got := testservers.PgCount(t, dsn, table); got != tr.LinesOK {
			t.Errorf("count(*) %d, lines_ok %d", got, tr.LinesOK)
		}
	})
}
