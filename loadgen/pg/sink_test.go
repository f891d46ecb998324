package pg_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loadcap/loadcap/loadgen/pg"
)

func startSink(t *testing.T, opts pg.SinkOptions) *pg.Sink {
	t.Helper()
	s, err := pg.StartSink("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Each mode against the embedded sink: the rows it counted equal lines_ok.
func TestModesSink(t *testing.T) {
	s := startSink(t, pg.SinkOptions{})
	for _, mode := range []string{"insert", "values", "copy"} {
		t.Run(mode, func(t *testing.T) {
			table := "sink_" + mode
			before := s.Stats().Rows
			_, tr := drive(t, withQuery(s.URL(), "table="+table+"&mode="+mode), "keepalive", 200, time.Second, 37)
			if tr.Failed != 0 || tr.OK != 200 {
				t.Fatalf("writes ok=%d failed=%d errors=%v codes=%v first=%v", tr.OK, tr.Failed, tr.Errors, tr.Codes, tr.FirstErrors)
			}
			if got := s.TableRows(table); got != tr.Lines || got != 200*37 {
				t.Fatalf("sink rows %d, lines_ok %d, want %d", got, tr.Lines, 200*37)
			}
			if d := s.Stats().Rows - before; d != tr.Lines {
				t.Fatalf("sink stats rows delta %d, lines_ok %d", d, tr.Lines)
			}
		})
	}
}

// values mode splits a write above 65,535 parameters, says so, and every
// row still arrives.
func TestValuesSplitSink(t *testing.T) {
	for _, profile := range []string{"keepalive", "close-client"} { // named and unnamed statements
		s := startSink(t, pg.SinkOptions{})
		d, tr := drive(t, withQuery(s.URL(), "table=split&mode=values"), profile, 4, time.Second, 20000)
		if tr.Failed != 0 || tr.Lines != 4*20000 || s.TableRows("split") != tr.Lines {
			t.Fatalf("%s: ok=%d failed=%d lines=%d sink=%d first=%v", profile, tr.OK, tr.Failed, tr.Lines, s.TableRows("split"), tr.FirstErrors)
		}
		checkSplitNote(t, d)
	}
}

// checkSplitNote asserts the driver reports the split, in a note that does
// not name the target (run.Execute prefixes each note with it).
func checkSplitNote(t *testing.T, d *pg.Driver) {
	notes := strings.Join(d.Notes(), "\n")
	want := "values mode: a write of 20000 rows x 10 columns exceeds PostgreSQL's 65535 bind parameters; each write is sent as 4 INSERT statements of at most 6553 rows, pipelined"
	// Beside it, only the execution mode's note.
	if len(d.Notes()) != 2 || d.Notes()[0] != want || !strings.HasPrefix(d.Notes()[1], "SQL execution mode exec ") {
		t.Fatalf("notes %q: want exactly %q", notes, want)
	}
}

// What pgx itself sends works: the simple protocol, prepared queries with
// binary results, CopyFrom (which first describes the table), and
// count(*) answers the rows received.
func TestSinkSpeaksPgx(t *testing.T) {
	s := startSink(t, pg.SinkOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS m ("time" timestamptz NOT NULL, host text, v double precision, n bigint, ok boolean)`); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}
	now := time.Now()
	if _, err := c.Exec(ctx, "INSERT INTO m (time, host, v, n, ok) VALUES ($1, $2, $3, $4, $5), ($1, $2, $3, $4, $5)", now, "h", 1.5, int64(7), true); err != nil {
		t.Fatal(err)
	}
	rows := [][]any{{now, "a", 1.0, int64(1), true}, {now, nil, 2.0, int64(2), false}, {now, "c", 3.0, nil, true}}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"m"}, []string{"time", "host", "v", "n", "ok"}, pgx.CopyFromRows(rows))
	if err != nil || n != 3 {
		t.Fatalf("CopyFrom = %d, %v", n, err)
	}
	// simple protocol, several statements, text COPY is not reachable from
	// pgx; a transaction that fails is rolled back.
	if _, err := c.Exec(ctx, "INSERT INTO m VALUES (now(), 'x', 1, 1, true); INSERT INTO m VALUES (now(), 'y', 1, 1, true)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO m VALUES (now(), 'x', 1, 1, true); INSERT INTO nope VALUES (1)", pgx.QueryExecModeSimpleProtocol); err == nil || !strings.Contains(err.Error(), "42P01") {
		t.Fatalf("insert into a missing table: %v, want SQLSTATE 42P01", err)
	}
	var cnt int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM m").Scan(&cnt); err != nil || cnt != 2+3+2 {
		t.Fatalf("count(*) = %d, %v; want 7", cnt, err)
	}
	if _, err := c.Exec(ctx, "DELETE FROM m"); err == nil || !strings.Contains(err.Error(), "0A000") {
		t.Fatalf("unsupported statement: %v, want SQLSTATE 0A000", err)
	}
	if got := s.TableRows("m"); got != 7 {
		t.Fatalf("sink rows %d, want 7", got)
	}
}

// Server-side rejections are data: the run goes on, counting SQLSTATEs.
func TestTooManyConnectionsIsData(t *testing.T) {
	s := startSink(t, pg.SinkOptions{MaxConnections: 2, Latency: 20 * time.Millisecond})
	_, tr := drive(t, withQuery(s.URL(), "table=limit"), "close-client", 200, time.Second, 5)
	if tr.Codes["53300"] == 0 || tr.OK == 0 {
		t.Fatalf("want some ok writes and some 53300: ok=%d failed=%d errors=%v codes=%v", tr.OK, tr.Failed, tr.Errors, tr.Codes)
	}
	if tr.Errors["sql"] != tr.Codes["53300"] {
		t.Fatalf("errors %v vs codes %v", tr.Errors, tr.Codes)
	}
	if tr.Lines != s.TableRows("limit") {
		t.Fatalf("lines_ok %d, sink rows %d", tr.Lines, s.TableRows("limit"))
	}
}
