package testservers

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestInfluxEnvironment proves the InfluxDB part of the test environment:
// 1,000 lines written over HTTP to each server are counted back by
// InfluxCount.
func TestInfluxEnvironment(t *testing.T) {
	const lines, perWrite = 1000, 100
	for i, base := range Influx(t) {
		db := InfluxTempDB(t, base, "loadcap_testservers")
		for w := 0; w < lines/perWrite; w++ {
			var b bytes.Buffer
			for j := range perWrite {
				n := w*perWrite + j
				// 10 series; distinct timestamps, so no point overwrites another.
				fmt.Fprintf(&b, "envcheck,host=h%d,server=%d value=%d.5,n=%di,ok=true %d\n",
					n%10, i, n, n, 1700000000000000000+int64(n)*1000)
			}
			InfluxWrite(t, base, db, b.Bytes())
		}
		if got := InfluxCount(t, base, db, "envcheck"); got != lines {
			t.Errorf("%s: InfluxCount = %d, want %d", base, got, lines)
		}
		if got := InfluxCount(t, base, db, "absent"); got != 0 {
			t.Errorf("%s: InfluxCount of an absent measurement = %d", base, got)
		}
		// The database testenv.sh creates exists too.
		InfluxWrite(t, base, DB, []byte("testservers_probe value=1\n"))
	}
}

// TestInfluxCountPartialFields checks that InfluxCount counts points when
// fields differ between lines, as long as one field is on every line.
func TestInfluxCountPartialFields(t *testing.T) {
	base := Influx(t)[0]
	db := InfluxTempDB(t, base, "loadcap_testservers_fields")
	InfluxWrite(t, base, db, []byte("m a=1,b=1 1\nm a=2 2\nm a=3,c=3 3\n"))
	if got := InfluxCount(t, base, db, "m"); got != 3 {
		t.Errorf("InfluxCount = %d, want 3", got)
	}
}

// TestPostgresEnvironment proves the PostgreSQL part: a table written and
// counted through pgx, and room for many connections.
func TestPostgresEnvironment(t *testing.T) {
	pg := Postgres(t)
	PgExec(t, pg, "DROP TABLE IF EXISTS testservers_env")
	t.Cleanup(func() { PgExec(t, pg, "DROP TABLE IF EXISTS testservers_env") })
	PgExec(t, pg, "CREATE TABLE testservers_env (id int PRIMARY KEY, v double precision)")
	if n := PgExec(t, pg, "INSERT INTO testservers_env SELECT g, g * 0.5 FROM generate_series(1, $1) g", 1000); n != 1000 {
		t.Errorf("insert affected %d rows, want 1000", n)
	}
	if got := PgCount(t, pg, "public.testservers_env"); got != 1000 {
		t.Errorf("PgCount = %d, want 1000", got)
	}
	if mc := PgQueryInt(t, pg, "SELECT current_setting('max_connections')::int"); mc < 300 {
		t.Errorf("max_connections = %d, want >= 300", mc)
	}
}

// fakeTB records Skip and Fatal instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Skip(args ...any)  { f.skipped, f.msg = true, fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any) { f.failed, f.msg = true, fmt.Sprint(args...) }

func TestMissingServers(t *testing.T) {
	t.Setenv(EnvInflux1, "")
	t.Setenv(EnvInflux2, "")
	t.Setenv(EnvPostgres, "")

	t.Setenv(EnvRequire, "")
	f := &fakeTB{TB: t}
	if urls := Influx(f); urls != nil || !f.skipped || f.failed {
		t.Errorf("not required: Influx = %v, skipped %v, failed %v", urls, f.skipped, f.failed)
	}
	f = &fakeTB{TB: t}
	if u := Postgres(f); u != "" || !f.skipped || f.failed {
		t.Errorf("not required: Postgres = %q, skipped %v, failed %v", u, f.skipped, f.failed)
	}

	t.Setenv(EnvRequire, "1")
	f = &fakeTB{TB: t}
	if Influx(f); f.skipped || !f.failed || !strings.Contains(f.msg, EnvInflux1) {
		t.Errorf("required: skipped %v, failed %v, message %q", f.skipped, f.failed, f.msg)
	}
	f = &fakeTB{TB: t}
	if Postgres(f); f.skipped || !f.failed {
		t.Errorf("required: Postgres skipped %v, failed %v", f.skipped, f.failed)
	}

	t.Setenv(EnvInflux1, "http://127.0.0.1:1/")
	t.Setenv(EnvInflux2, "http://127.0.0.1:2")
	f = &fakeTB{TB: t}
	if urls := Influx(f); f.failed || len(urls) != 2 || urls[0] != "http://127.0.0.1:1" {
		t.Errorf("set: Influx = %v, failed %v", urls, f.failed)
	}
}

func TestQuoteIdent(t *testing.T) {
	if got := quoteIdent(`a"b\c`); got != `"a\"b\\c"` {
		t.Errorf("quoteIdent = %s", got)
	}
}
