package pgsink_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen/pgsink"
)

func connect(t *testing.T, s *pgsink.Server) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// What pgx itself sends works: the simple protocol, prepared queries with
// binary results, CopyFrom (which first describes the table), and
// count(*) answers the rows received.
func TestSinkSpeaksPgx(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{})
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

func TestOptionsValidate(t *testing.T) {
	if err := (pgsink.Options{Latency: time.Millisecond, ErrorRate: 0.5, MaxConnections: 3}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		o    pgsink.Options
		want string
	}{
		{pgsink.Options{Latency: -time.Second}, "latency -1s"},
		{pgsink.Options{ErrorRate: 1.5}, "error rate 1.5"},
		{pgsink.Options{ErrorRate: -0.1}, "error rate -0.1"},
		{pgsink.Options{MaxConnections: -1}, "max connections -1"},
	} {
		if err := c.o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %q", c.o, err, c.want)
		}
	}
}

// Addr is a net.Addr, nil before Serve; URL reaches the sink.
func TestAddr(t *testing.T) {
	s := pgsink.New(pgsink.Options{})
	if s.Addr() != nil || s.URL() != "" {
		t.Fatalf("before Serve: addr %v url %q", s.Addr(), s.URL())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Addr() == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if a, ok := s.Addr().(*net.TCPAddr); !ok || a.Port != ln.Addr().(*net.TCPAddr).Port {
		t.Fatalf("addr %v, want the listener's %v", s.Addr(), ln.Addr())
	}
	var one int
	if err := connect(t, s).QueryRow(context.Background(), "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 through URL(): %d, %v", one, err)
	}
	busy := ln.Addr().String()
	if _, err := pgsink.Start(busy, pgsink.Options{}); err == nil || !strings.Contains(err.Error(), "start pg sink on "+busy) {
		t.Errorf("an address in use: %v, want an error naming it", err)
	}
}

// Fault injection: the chosen fraction of INSERTs and COPYs is answered
// SQLSTATE XX000 and not counted; the same seed fails the same writes; the
// session stays usable.
func TestErrorRate(t *testing.T) {
	run := func(seed int64) (failed []int, rows int64) {
		s := testservers.PGSink(t, pgsink.Options{ErrorRate: 0.3, Seed: seed})
		c := connect(t, s)
		ctx := context.Background()
		if _, err := c.Exec(ctx, "CREATE TABLE m (v bigint)"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			var err error
			if i%2 == 0 {
				_, err = c.Exec(ctx, "INSERT INTO m (v) VALUES ($1)", int64(i))
			} else {
				_, err = c.CopyFrom(ctx, pgx.Identifier{"m"}, []string{"v"}, pgx.CopyFromRows([][]any{{int64(i)}}))
			}
			var pe *pgconn.PgError
			switch {
			case err == nil:
			case errors.As(err, &pe) && pe.Code == "XX000" && strings.Contains(pe.Message, "injected"):
				failed = append(failed, i)
			default:
				t.Fatalf("write %d: %v", i, err)
			}
		}
		if st := s.Stats(); st.Rows != s.TableRows("m") || st.Errors != int64(len(failed)) {
			t.Fatalf("stats %v, table rows %d, %d injected", st, s.TableRows("m"), len(failed))
		}
		return failed, s.TableRows("m")
	}
	a, rows := run(7)
	if len(a) < 30 || len(a) > 90 || rows != int64(200-len(a)) {
		t.Fatalf("error rate 0.3: %d of 200 writes failed, %d rows counted", len(a), rows)
	}
	b, _ := run(7)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("the same seed failed other writes: %v and %v", a, b)
	}
	if c, _ := run(8); fmt.Sprint(c) == fmt.Sprint(a) {
		t.Fatalf("another seed failed the same writes")
	}
}

// waitStatements waits (bounded) until the sink has executed n statements.
func waitStatements(t *testing.T, s *pgsink.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Statements < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d statements after 10 s, want %d", s.Stats().Statements, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Shutdown answers the statement in progress, then ends every session with
// FATAL 57P01 (an idle one at once), and accepts no new connection.
func TestShutdown(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{Latency: 500 * time.Millisecond})
	ctx := context.Background()
	idle, busy := connect(t, s), connect(t, s)
	answered := make(chan error, 1)
	go func() {
		var one int
		err := busy.QueryRow(ctx, "select 1").Scan(&one)
		if err == nil && one != 1 {
			err = errors.New("wrong answer")
		}
		answered <- err
	}()
	waitStatements(t, s, 1) // the select is being answered
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-answered; err != nil {
		t.Fatalf("the statement in progress: %v, want its answer", err)
	}
	_, err := idle.Exec(ctx, "select 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P01" {
		t.Fatalf("an idle session after Shutdown: %v, want FATAL 57P01", err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if c, err := pgx.Connect(cctx, s.URL()); err == nil {
		c.Close(ctx)
		t.Fatal("a new connection after Shutdown was accepted")
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("a second Shutdown: %v", err)
	}
}

// A Shutdown whose context ends first closes what is left and says so.
func TestShutdownDeadline(t *testing.T) {
	s := testservers.PGSink(t, pgsink.Options{Latency: time.Minute})
	busy := connect(t, s)
	answered := make(chan error, 1)
	go func() { _, err := busy.Exec(context.Background(), "select 1"); answered <- err }()
	waitStatements(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's deadline", err)
	}
	select {
	case err := <-answered:
		if err == nil {
			t.Fatal("the statement cut by Close succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not closed")
	}
}
