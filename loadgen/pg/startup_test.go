package pg_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/loadgen/pgsink"
)

func newDriver(target string, create bool) error {
	spec, err := loadgen.ParseTarget(target)
	if err != nil {
		return err
	}
	g, _ := loadgen.NewGenerator(loadgen.DefaultGenConfig())
	p, err := loadProfile("keepalive")
	if err != nil {
		return err
	}
	d, err := pg.NewDriver(context.Background(), spec, p, g, pg.Options{Batch: 10, Timeout: 3 * time.Second, Create: create})
	if err == nil {
		d.Close()
	}
	return err
}

// checkLine asserts a start-up error is one line naming the problem and
// holding no password.
func checkLine(t *testing.T, name string, err error, want, secret string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", name)
		return
	}
	msg := err.Error()
	t.Logf("%s: %s", name, msg)
	if !strings.Contains(msg, want) || strings.Contains(msg, "\n") || (secret != "" && strings.Contains(msg, secret)) {
		t.Errorf("%s: %q: want one line containing %q, without the password", name, msg, want)
	}
}

func TestStartupErrorsSink(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{Password: "right-secret"})
	u, _ := url.Parse(s.URL())
	u.User = url.UserPassword("loadcap", "wrong-secret")
	checkLine(t, "wrong password", newDriver(u.String(), true), `password authentication failed for user "loadcap"`, "wrong-secret")

	u.User = url.UserPassword("loadcap", "right-secret")
	if err := newDriver(u.String()+"&table=ok", true); err != nil {
		t.Fatalf("right password: %v", err)
	}
	checkLine(t, "missing table", newDriver(u.String()+"&table=absent", false), "does not exist (run with --sql-create", "right-secret")

	c := sqlConn(t, u.String())
	if _, err := c.Exec(context.Background(), `CREATE TABLE other (time timestamptz, host text, t01 text, t02 text, f0 text)`); err != nil {
		t.Fatal(err)
	}
	checkLine(t, "schema mismatch", newDriver(u.String()+"&table=other", true), `column "f0" is text, loadcap writes double precision`, "right-secret")
	checkLine(t, "bad mode", newDriver(u.String()+"&mode=upsert", true), `bad mode "upsert"`, "right-secret")
	checkLine(t, "unreachable", newDriver("postgres://loadcap:pw-here@127.0.0.1:1/loadcap?sslmode=disable", true), "connection refused", "pw-here")
}

func TestStartupErrorsRealPostgres(t *testing.T) {
	dsn := realPG(t)
	u, _ := url.Parse(dsn)
	u.Path = "/loadcap_no_such_db"
	checkLine(t, "missing database", newDriver(u.String(), true), `database "loadcap_no_such_db" does not exist`, "")

	table := uniqueTable("mismatch")
	dropTable(t, dsn, table)
	c := sqlConn(t, dsn)
	if _, err := c.Exec(context.Background(), `CREATE TABLE "`+table+`" (time timestamptz, host text, f0 integer)`); err != nil {
		t.Fatal(err)
	}
	checkLine(t, "schema mismatch", newDriver(withQuery(dsn, "table="+table), true), `column "t01" is missing`, "")

	// A wrong password needs a role the server authenticates by password.
	ctx := context.Background()
	c.Exec(ctx, "DROP ROLE IF EXISTS loadcap_pw_test")
	if _, err := c.Exec(ctx, "CREATE ROLE loadcap_pw_test LOGIN PASSWORD 'right-secret'"); err != nil {
		skipOrFail(t, "cannot create a role: %v", err)
	}
	t.Cleanup(func() { c.Exec(context.Background(), "DROP ROLE IF EXISTS loadcap_pw_test") })
	u, _ = url.Parse(dsn)
	u.User = url.UserPassword("loadcap_pw_test", "wrong-secret")
	err := newDriver(u.String(), false)
	if err != nil && strings.Contains(err.Error(), "does not exist (run with") {
		skipOrFail(t, "the test server trusts role loadcap_pw_test on loopback: no password check to fail (pg_hba.conf; scripts/testenv.sh asks scram-sha-256 for it)")
	}
	checkLine(t, "wrong password", err, `password authentication failed for user "loadcap_pw_test"`, "wrong-secret")
}
