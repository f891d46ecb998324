package testservers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables written by scripts/testenv.sh.
const (
	// EnvInflux1 is the base URL of the first InfluxDB 1.x server.
	EnvInflux1 = "LOADCAP_TEST_INFLUX1"
	// EnvInflux2 is the base URL of the second InfluxDB 1.x server.
	EnvInflux2 = "LOADCAP_TEST_INFLUX2"
	// EnvPostgres is the pgx connection string of the PostgreSQL server.
	EnvPostgres = "LOADCAP_TEST_PG"
	// EnvPgBouncerTx and EnvPgBouncerSession are connection strings of the
	// pgbouncers in front of that PostgreSQL, in pool_mode transaction and
	// session.
	EnvPgBouncerTx      = "LOADCAP_TEST_PGBOUNCER_TX"
	EnvPgBouncerSession = "LOADCAP_TEST_PGBOUNCER_SESSION"
	// EnvTLSDir is the directory of the test CA (ca.pem) and the client
	// certificate (client.pem, client.key) it signed.
	EnvTLSDir = "LOADCAP_TEST_TLS_DIR"
	// EnvNginx is the base URL of the nginx terminating TLS in front of
	// the first InfluxDB (at /, under /influx/, under /mtls/ with a client
	// certificate, and /auth/ answering 401).
	EnvNginx = "LOADCAP_TEST_NGINX"
	// EnvRequire, set to 1, turns a missing server into a test failure.
	EnvRequire = "LOADCAP_REQUIRE_SERVERS"
)

// DB is the database scripts/testenv.sh creates in every server.
const DB = "loadcap"

// timeout bounds every request a helper makes.
const timeout = 30 * time.Second

var client = &http.Client{Timeout: timeout}

// Required reports whether LOADCAP_REQUIRE_SERVERS=1: missing servers fail
// tests instead of skipping them.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Unavailable skips t because what it needs (root, a command, a server) is
// not there, or fails it when LOADCAP_REQUIRE_SERVERS=1 (make test) forbids
// skipping. It returns so that callers can return right after it even under
// a fake testing.TB.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatal(why + "; " + EnvRequire + "=1 forbids skipping")
		return
	}
	t.Skip(why)
}

// missing skips t, or fails it when servers are required. It returns so that
// callers can return right after it even under a fake testing.TB.
func missing(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("%s not set: no test server (run scripts/testenv.sh up and eval \"$(scripts/testenv.sh env)\")", what)
	if Required() {
		t.Fatal(msg + "; " + EnvRequire + "=1 forbids skipping")
		return
	}
	t.Skip(msg)
}

// Influx returns the base URLs of the two InfluxDB 1.x servers
// ("http://127.0.0.1:18086", "http://127.0.0.1:18087"). It skips the test
// when they are not configured, or fails it when servers are required.
func Influx(t testing.TB) []string {
	t.Helper()
	var urls []string
	for _, name := range []string{EnvInflux1, EnvInflux2} {
		u := os.Getenv(name)
		if u == "" {
			missing(t, name)
			return nil
		}
		urls = append(urls, strings.TrimRight(u, "/"))
	}
	return urls
}

// Postgres returns the connection string of the PostgreSQL server (database
// loadcap, user postgres, trust authentication). It skips the test when it is
// not configured, or fails it when servers are required.
func Postgres(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvPostgres)
	if u == "" {
		missing(t, EnvPostgres)
	}
	return u
}

// PgBouncer returns the connection string of the pgbouncer in pool_mode
// mode ("transaction" or "session") in front of the test PostgreSQL.
func PgBouncer(t testing.TB, mode string) string {
	t.Helper()
	name := EnvPgBouncerTx
	if mode == "session" {
		name = EnvPgBouncerSession
	}
	return env(t, name)
}

// TLSFile returns the path of a file of the test CA's directory: ca.pem,
// server.pem, client.pem or client.key.
func TLSFile(t testing.TB, name string) string {
	t.Helper()
	return env(t, EnvTLSDir) + "/" + name
}

// Nginx returns the https:// base URL of the test nginx.
func Nginx(t testing.TB) string {
	t.Helper()
	return env(t, EnvNginx)
}

// env returns the environment variable name, or skips (fails when servers
// are required) when it is not set.
func env(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		missing(t, name)
	}
	return v
}

// queryResponse is InfluxDB 1.x's /query JSON answer.
type queryResponse struct {
	Results []struct {
		Series []struct {
			Name    string   `json:"name"`
			Columns []string `json:"columns"`
			Values  [][]any  `json:"values"` // numbers as json.Number
		} `json:"series"`
		Error string `json:"error"`
	} `json:"results"`
	Error string `json:"error"`
}

// influxQuery runs one InfluxQL statement with POST /query and returns the
// decoded answer; it fails t on any error.
func influxQuery(t testing.TB, baseURL, db, q string) *queryResponse {
	t.Helper()
	form := url.Values{"q": {q}}
	if db != "" {
		form.Set("db", db)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("influx query %q: %v", q, err)
		return nil
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("influx query %q at %s: %v", q, baseURL, err)
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("influx query %q at %s: read answer: %v", q, baseURL, err)
		return nil
	}
	var qr queryResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&qr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("influx query %q at %s: status %d: %s", q, baseURL, resp.StatusCode, body)
		return nil
	}
	if qr.Error != "" {
		t.Fatalf("influx query %q at %s: %s", q, baseURL, qr.Error)
		return nil
	}
	for _, r := range qr.Results {
		if r.Error != "" {
			t.Fatalf("influx query %q at %s: %s", q, baseURL, r.Error)
			return nil
		}
	}
	return &qr
}

// quoteIdent quotes an InfluxQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// InfluxCount returns the number of points of measurement in db, from
// `SELECT count(*)`. InfluxDB answers count(*) with one count per field
// (count_<field>); InfluxCount returns the largest of them, which is the count
// of a field every line carries, hence the number of points, as long as at
// least one field is present in every line (loadcap's generator writes the
// same field set on every line). Lines with the same series and timestamp are
// one point in InfluxDB: a test that counts must write distinct timestamps
// per series. A measurement that does not exist counts 0.
func InfluxCount(t testing.TB, baseURL, db, measurement string) int64 {
	t.Helper()
	qr := influxQuery(t, baseURL, db, "SELECT count(*) FROM "+quoteIdent(measurement))
	if qr == nil {
		return 0
	}
	var best int64
	for _, r := range qr.Results {
		for _, s := range r.Series {
			for _, row := range s.Values {
				for i, v := range row {
					if i >= len(s.Columns) || !strings.HasPrefix(s.Columns[i], "count_") {
						continue
					}
					num, ok := v.(json.Number)
					if !ok {
						continue // null: the field never occurs
					}
					n, err := num.Int64()
					if err != nil {
						t.Fatalf("influx count %s in %s at %s: column %s = %q: %v", measurement, db, baseURL, s.Columns[i], v, err)
						return 0
					}
					best = max(best, n)
				}
			}
		}
	}
	return best
}

// InfluxCreateDB creates database db (a no-op if it exists).
func InfluxCreateDB(t testing.TB, baseURL, db string) {
	t.Helper()
	influxQuery(t, baseURL, "", "CREATE DATABASE "+quoteIdent(db))
}

// InfluxDropDB drops database db and all its data (a no-op if it does not
// exist).
func InfluxDropDB(t testing.TB, baseURL, db string) {
	t.Helper()
	influxQuery(t, baseURL, "", "DROP DATABASE "+quoteIdent(db))
}

// InfluxTempDB drops and creates database name, and drops it again when the
// test ends: a database of the test's own on a shared server.
func InfluxTempDB(t testing.TB, baseURL, name string) string {
	t.Helper()
	InfluxDropDB(t, baseURL, name)
	InfluxCreateDB(t, baseURL, name)
	t.Cleanup(func() { InfluxDropDB(t, baseURL, name) })
	return name
}

// InfluxWrite writes a line-protocol body to db through the v1 /write path
// (nanosecond timestamps) and fails t unless the server answers 204.
func InfluxWrite(t testing.TB, baseURL, db string, body []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u := baseURL + "/write?" + url.Values{"db": {db}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("influx write to %s: %v", u, err)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("influx write to %s: %v", u, err)
		return
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("influx write to %s: status %d: %s", u, resp.StatusCode, msg)
	}
}

// pgConnect opens one connection; the caller closes it.
func pgConnect(t testing.TB, ctx context.Context, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("postgres connect: %v", err)
		return nil
	}
	return conn
}

// PgExec runs one SQL statement with args on a fresh connection and returns
// the number of rows it affected.
func PgExec(t testing.TB, connString, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn := pgConnect(t, ctx, connString)
	if conn == nil {
		return 0
	}
	defer conn.Close(context.Background())
	tag, err := conn.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("postgres exec %q: %v", sql, err)
		return 0
	}
	return tag.RowsAffected()
}

// PgQueryInt runs a query returning one integer (count(*), SHOW ...::int and
// the like) on a fresh connection.
func PgQueryInt(t testing.TB, connString, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn := pgConnect(t, ctx, connString)
	if conn == nil {
		return 0
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("postgres query %q: %v", sql, err)
		return 0
	}
	return n
}

// PgCount returns the number of rows of table, which may be
// schema-qualified ("public.points").
func PgCount(t testing.TB, connString, table string) int64 {
	t.Helper()
	ident := pgx.Identifier(strings.Split(table, ".")).Sanitize()
	return PgQueryInt(t, connString, "SELECT count(*) FROM "+ident)
}
