package pg_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/profiles"
)

// realPG returns the DSN of the test PostgreSQL (LOADCAP_TEST_PG, set by
// scripts/testenv.sh); it skips, or fails when servers are required.
func realPG(t *testing.T) string {
	t.Helper()
	return testservers.Postgres(t)
}

// skipOrFail skips t with the message, or fails it when real servers are
// required (LOADCAP_REQUIRE_SERVERS=1, as under make test): a test that
// needs something of the test server must not pass silently without it.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	testservers.Unavailable(t, fmt.Sprintf(format, args...))
}

// realPGOrEmpty is the test PostgreSQL's DSN, or "" without one.
func realPGOrEmpty() string { return os.Getenv("LOADCAP_TEST_PG") }

var tableSeq atomic.Int64

// uniqueTable returns a table name no other test uses.
func uniqueTable(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), tableSeq.Add(1))
}

// sqlConn opens a plain pgx connection for checks.
func sqlConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func count(t *testing.T, c *pgx.Conn, table string) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %q", table)).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func dropTable(t *testing.T, dsn, table string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		c.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %q", table))
	})
}

func withQuery(dsn, kv string) string {
	for _, c := range dsn {
		if c == '?' {
			return dsn + "&" + kv
		}
	}
	return dsn + "?" + kv
}

func loadProfile(name string) (*profiles.Client, error) { return profiles.LoadClient(name) }

func client(t *testing.T, name string) *profiles.Client {
	t.Helper()
	c, err := profiles.LoadClient(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func gen(t *testing.T) *loadgen.Generator {
	t.Helper()
	gc := loadgen.DefaultGenConfig()
	gc.Series = 100
	g, err := loadgen.NewGenerator(gc)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// drive runs a bounded load through loadgen.Run against one SQL target and
// closes the driver.
func drive(t *testing.T, target, profile string, rate float64, dur time.Duration, batch int) (*pg.Driver, loadgen.TargetReport) {
	t.Helper()
	d, tr := openRun(t, target, profile, rate, dur, batch)
	d.Close()
	return d, tr
}

// openRun is drive with the driver left open, so the caller can look at
// the server before closing it (the test's cleanup closes it too).
func openRun(t *testing.T, target, profile string, rate float64, dur time.Duration, batch int) (*pg.Driver, loadgen.TargetReport) {
	t.Helper()
	spec, err := loadgen.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	d, err := pg.NewDriver(context.Background(), spec, client(t, profile), gen(t), pg.Options{Batch: batch, Timeout: 5 * time.Second, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	rep, err := loadgen.Run(context.Background(), []loadgen.Target{{Name: spec.Name, Driver: d}}, loadgen.Config{
		Pacer: loadgen.NewPacer(rate), Duration: dur, Drain: 5 * time.Second, MaxWorkers: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, rep.Targets[0]
}
