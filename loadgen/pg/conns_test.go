package pg_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen/pgsink"
)

// scratchDB creates a database of its own for one test, so that the
// server's per-database statistics count only this test's sessions. It
// returns the DSN of the new database; the database is dropped at the end.
func scratchDB(t *testing.T, dsn string, admin *pgx.Conn) (string, string) {
	t.Helper()
	name := fmt.Sprintf("loadcap_t%d_%d", os.Getpid(), tableSeq.Add(1))
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		skipOrFail(t, "cannot create a scratch database (%v): needs CREATEDB", err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String(), name
}

// sessions is pg_stat_database.sessions (PostgreSQL 14+): sessions ever
// established to db, as the server counts them.
func sessions(t *testing.T, admin *pgx.Conn, db string) int64 {
	t.Helper()
	ctx := context.Background()
	admin.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
	var n int64
	if err := admin.QueryRow(ctx, "SELECT sessions FROM pg_stat_database WHERE datname = $1", db).Scan(&n); err != nil {
		t.Fatalf("read pg_stat_database.sessions: %v", err)
	}
	return n
}

// settledSessions waits (bounded) for exited backends to flush their stats.
func settledSessions(t *testing.T, admin *pgx.Conn, db string, want int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := sessions(t, admin, db)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func backends(t *testing.T, admin *pgx.Conn, db string) int64 {
	t.Helper()
	var n int64
	if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// close-client: one server session per write, as the server counts them.
// Which side holds the TIME_WAIT is TestDialModesRealPostgres's (it matches
// the TIME_WAIT sockets to the run's own 4-tuples).
func TestCloseClientRealPostgres(t *testing.T) {
	dsn := realPG(t)
	admin := sqlConn(t, dsn)
	db, name := scratchDB(t, dsn, admin)
	s0 := sessions(t, admin, name)

	_, tr := openRun(t, withQuery(db, "table=cc"), "close-client", 50, time.Second, 10)
	if tr.Failed != 0 || tr.OK != 50 {
		t.Fatalf("ok=%d failed=%d %v %v", tr.OK, tr.Failed, tr.Errors, tr.FirstErrors)
	}
	if tr.NewConnections != tr.OK {
		t.Fatalf("new_connections %d, writes %d: want one per write", tr.NewConnections, tr.OK)
	}
	// +1: the start-up check's own session
	if got := settledSessions(t, admin, name, s0+tr.OK+1) - s0; got != tr.OK+1 {
		t.Fatalf("server sessions +%d, want %d writes + 1 start-up check", got, tr.OK)
	}
	if got := count(t, sqlConn(t, db), "cc"); got != tr.Lines {
		t.Fatalf("count(*) %d, lines_ok %d", got, tr.Lines)
	}
}

// keepalive: the pool opens connections once and keeps every one of them:
// the server's session count grows by exactly the pool's connections and
// all of them are still open at the end of the run.
func TestKeepalivePoolConstantRealPostgres(t *testing.T) {
	dsn := realPG(t)
	admin := sqlConn(t, dsn)
	db, name := scratchDB(t, dsn, admin)
	s0 := sessions(t, admin, name)
	d, tr := openRun(t, withQuery(db, "table=ka&mode=copy"), "keepalive", 200, 2*time.Second, 10)
	if tr.Failed != 0 || tr.OK != 400 {
		t.Fatalf("ok=%d failed=%d %v %v", tr.OK, tr.Failed, tr.Errors, tr.FirstErrors)
	}
	if tr.NewConnections < 1 || tr.NewConnections > 64 {
		t.Fatalf("new_connections %d: want 1..64 (the pool)", tr.NewConnections)
	}
	if got := backends(t, admin, name); got != tr.NewConnections {
		t.Fatalf("%d backends open at the end, the pool opened %d: it churned", got, tr.NewConnections)
	}
	d.Close()
	if got := settledSessions(t, admin, name, s0+tr.NewConnections+1) - s0; got != tr.NewConnections+1 {
		t.Fatalf("server sessions +%d, want the pool's %d + 1 start-up check", got, tr.NewConnections)
	}
}

// small-idle-pool keeps only 2 idle connections: what concurrency opened
// beyond that is closed by the client when released (and opened again at
// the next burst: churn); keepalive keeps every connection it opened.
func TestSmallIdlePoolKeepsTwoSink(t *testing.T) {
	for _, c := range []struct {
		profile string
		idle    func(opened int64) int64
	}{
		{"small-idle-pool", func(int64) int64 { return 2 }},
		{"keepalive", func(opened int64) int64 { return opened }},
	} {
		s := testservers.PGSink(t, pgsink.Options{Latency: 20 * time.Millisecond})
		_, tr := openRun(t, withQuery(s.URL(), "table=idle"), c.profile, 200, time.Second, 5)
		if tr.Failed != 0 || tr.NewConnections < 3 {
			t.Fatalf("%s: failed=%d %v, new connections %d (want concurrency above 2)", c.profile, tr.Failed, tr.Errors, tr.NewConnections)
		}
		time.Sleep(50 * time.Millisecond) // closes reach the sink
		if got, want := s.Stats().Active, c.idle(tr.NewConnections); got != want {
			t.Errorf("%s: %d connections left open after the run (opened %d), want %d", c.profile, got, tr.NewConnections, want)
		}
	}
}
