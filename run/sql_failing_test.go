package run_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loadcap/loadcap/internal/testservers"
	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pg"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/results"
)

// Failing SQL targets, against the embedded PostgreSQL-wire sink, alone
// and beside a healthy embedded-pg target (dual write): the SQL twins of
// TestFailingTargets. The run completes, every write is accounted for and
// classified (errno classes, or "sql" with its SQLSTATE), and the healthy
// target is unaffected.

// startPGSink starts a PostgreSQL-wire sink on addr, closed at the end.
func startPGSink(t *testing.T, addr string) *pgsink.Server {
	t.Helper()
	s, err := pgsink.Start(addr, pgsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sqlClassified checks that every write of tr is accounted for: ok plus
// failed is what was issued; the classes add up to the failures, SQL
// failures ("sql") to their SQLSTATEs ("pg_*"), and none is "other".
func sqlClassified(t *testing.T, tr results.Target) {
	t.Helper()
	if tr.WritesOK+tr.WritesFailed != tr.Writes {
		t.Errorf("%s: ok %d + failed %d != writes %d", tr.Name, tr.WritesOK, tr.WritesFailed, tr.Writes)
	}
	var classes, codes int64
	for k, n := range tr.Errors {
		if len(k) > 3 && k[:3] == "pg_" {
			codes += n
		} else {
			classes += n
		}
	}
	if classes != tr.WritesFailed || codes != tr.Errors[loadgen.ClassSQL] {
		t.Errorf("%s: errors %v: classes add up to %d (%d writes failed), SQLSTATEs to %d (%d sql)", tr.Name, tr.Errors, classes, tr.WritesFailed, codes, tr.Errors[loadgen.ClassSQL])
	}
	if tr.Errors[loadgen.ClassOther] > 0 {
		t.Errorf("%s: %d failures left unclassified (other): %s", tr.Name, tr.Errors[loadgen.ClassOther], tr.FirstError)
	}
}

// holdListener serves the first connection it accepts (the driver's
// start-up check) through the sink it is handed to, and then accepts
// every other connection and never answers it, or, with stall, lets the
// sink answer its start-up and then stalls every answer after that.
type holdListener struct {
	net.Listener
	stall bool

	mu     sync.Mutex
	n      int
	held   []net.Conn
	closed chan struct{}
}

func (l *holdListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.n++
		first := l.n == 1
		if !first {
			l.held = append(l.held, c)
		}
		l.mu.Unlock()
		switch {
		case first:
			return c, nil
		case l.stall:
			return &testservers.StallConn{Conn: c, Closed: l.closed}, nil
		}
		// held: accepted, never read, never answered
	}
}

func (l *holdListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	for _, c := range l.held {
		c.Close()
	}
	return l.Listener.Close()
}

type sqlFailCase struct {
	name    string
	profile string
	timeout time.Duration
	// target starts the failing server and returns its URL and a function
	// that returns the rows it stored.
	target func(t *testing.T, table string) (string, func() int64)
	check  func(t *testing.T, tr results.Target, rate float64, dur time.Duration)
	// unanswered: the server executes what it is sent but never answers:
	// it may store rows of writes that then time out (a write is one
	// round trip, as through a transaction pooler), never more than were
	// sent.
	unanswered bool
	// killed: the sink is closed mid-run, so a write it stored may lose
	// its reply with the connection (the client sees EOF or a reset):
	// the rows stored exceed lines_ok by at most those writes' rows.
	killed bool
}

func sqlFailCases() []sqlFailCase {
	diesAndReturns := func(t *testing.T, table string) (string, func() int64) {
		addr := freePort(t)
		s := startPGSink(t, addr)
		g, err := loadgen.NewGenerator(loadgen.DefaultGenConfig())
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var back *pgsink.Server
		go func() {
			time.Sleep(500 * time.Millisecond)
			s.Close()
			time.Sleep(500 * time.Millisecond)
			// The same port again, as a restarted database, with its table
			// (the writes that reach it before that fail 42P01).
			for i := 0; i < 50; i++ {
				s2, err := pgsink.Start(addr, pgsink.Options{})
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				t.Cleanup(func() { s2.Close() })
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if c, err := pgx.Connect(ctx, s2.URL()); err == nil {
					c.Exec(ctx, pg.CreateTableSQL(table, pg.Columns(g)))
					c.Close(ctx)
				}
				mu.Lock()
				back = s2
				mu.Unlock()
				return
			}
		}()
		return "postgres://loadcap@" + addr + "/loadcap?sslmode=disable", func() int64 {
			mu.Lock()
			defer mu.Unlock()
			n := s.TableRows(table)
			if back != nil {
				n += back.TableRows(table)
			}
			return n
		}
	}
	diesCheck := func(t *testing.T, tr results.Target, rate float64, dur time.Duration) {
		if tr.WritesFailed == 0 || tr.WritesOK == 0 {
			t.Errorf("want failures during the outage and successes around it: %+v", tr)
		}
		if tr.Writes != int64(rate*dur.Seconds()) {
			t.Errorf("writes %d: want all %d issued", tr.Writes, int64(rate*dur.Seconds()))
		}
		h := tr.Health
		if h == nil || h.RecoveredMS == nil {
			t.Fatalf("health %+v: want a recovery recorded", h)
		}
		if h.FirstFailureMS < 300 || *h.RecoveredMS < h.FirstFailureMS || h.UnhealthyS <= 0 {
			t.Errorf("health %+v (recovered %d ms): want a failure after the sink died and a later recovery", h, *h.RecoveredMS)
		}
		if tr.Errors[loadgen.ClassECONNREFUSED] == 0 {
			t.Errorf("errors %v: want ECONNREFUSED while the sink was down", tr.Errors)
		}
		for k := range tr.Errors {
			switch k {
			case loadgen.ClassECONNREFUSED, loadgen.ClassECONNRESET, loadgen.ClassEOF, loadgen.ClassEPIPE, loadgen.ClassSQL, "pg_42P01":
			default:
				t.Errorf("errors %v: %s is not a failure of a server that went away", tr.Errors, k)
			}
		}
	}
	hanging := func(stall bool) func(t *testing.T, table string) (string, func() int64) {
		return func(t *testing.T, table string) (string, func() int64) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			hl := &holdListener{Listener: ln, stall: stall, closed: make(chan struct{})}
			s := pgsink.New(pgsink.Options{})
			go s.Serve(hl)
			t.Cleanup(func() { hl.Close(); s.Close() })
			return "postgres://loadcap@" + ln.Addr().String() + "/loadcap?sslmode=disable", func() int64 { return s.TableRows(table) }
		}
	}
	hangCheck := func(t *testing.T, tr results.Target, rate float64, dur time.Duration) {
		if tr.WritesOK != 0 || tr.Errors[loadgen.ClassTimeout] == 0 {
			t.Errorf("want write timeouts and nothing ok: %+v", tr)
		}
		// Writes still hanging at the drain deadline are cancelled;
		// those no worker could start by then are not_started.
		for k := range tr.Errors {
			switch k {
			case loadgen.ClassTimeout, loadgen.ClassCancelled, loadgen.ClassNotStarted:
			default:
				t.Errorf("errors %v: want timeouts, and writes cancelled or not started at the drain deadline, only", tr.Errors)
			}
		}
		// A hanging write holds its worker for the timeout: 64 workers
		// hold 128 writes/s, less than asked, so writes start late and
		// the late ones are counted, or are failed as not started at the
		// drain deadline; none is lost.
		if tr.LateStarts == 0 {
			t.Errorf("no late starts counted with every worker held by a hanging write: %+v", tr)
		}
		if tr.Writes != int64(rate*dur.Seconds()) {
			t.Errorf("writes %d: want all %d issued and accounted for", tr.Writes, int64(rate*dur.Seconds()))
		}
		if tr.LatencyMS.P50 < 450 {
			t.Errorf("latency %+v: want the timeout (500 ms) in it", tr.LatencyMS)
		}
	}
	return []sqlFailCase{
		{name: "dies mid-run and comes back/keepalive", profile: "keepalive", target: diesAndReturns, check: diesCheck, killed: true},
		{name: "dies mid-run and comes back/close-client", profile: "close-client", target: diesAndReturns, check: diesCheck, killed: true},
		{name: "accepts but never answers", profile: "keepalive", timeout: 500 * time.Millisecond, target: hanging(false), check: hangCheck},
		{name: "answers start-up then stalls", profile: "keepalive", timeout: 500 * time.Millisecond, target: hanging(true), check: hangCheck, unanswered: true},
	}
}

func TestSQLFailingTargets(t *testing.T) {
	const rate, dur = 200, 1500 * time.Millisecond
	for _, fc := range sqlFailCases() {
		for _, dual := range []bool{false, true} {
			name := fc.name + "/single"
			if dual {
				name = fc.name + "/dual"
			}
			t.Run(name, func(t *testing.T) {
				cfg := sqlConfig(t, "", rate, dur)
				cfg.Client = fc.profile
				if fc.timeout > 0 {
					cfg.Timeout = fc.timeout
				}
				table := "failing"
				url, stored := fc.target(t, table)
				cfg.Targets = []string{url + "&table=" + table}
				if dual {
					cfg.Targets = append(cfg.Targets, "embedded-pg")
				}
				doc := executeFailing(t, cfg)
				tr := doc.Targets[0]
				t.Logf("writes %d ok %d failed %d late %d errors %v p50 %.0f ms", tr.Writes, tr.WritesOK, tr.WritesFailed, tr.LateStarts, tr.Errors, tr.LatencyMS.P50)
				sqlClassified(t, tr)
				fc.check(t, tr, rate, dur)
				if got := stored(); fc.unanswered && (got < tr.LinesOK || got > tr.Writes*int64(cfg.Batch)) {
					t.Errorf("the sink stored %d rows, lines_ok %d, %d writes of %d rows sent", got, tr.LinesOK, tr.Writes, cfg.Batch)
				} else if cut := (tr.Errors[loadgen.ClassEOF] + tr.Errors[loadgen.ClassECONNRESET] + tr.Errors[loadgen.ClassEPIPE]) * int64(cfg.Batch); fc.killed && (got < tr.LinesOK || got > tr.LinesOK+cut) {
					t.Errorf("the sink stored %d rows, lines_ok %d; at most %d more (writes cut off with the connection)", got, tr.LinesOK, cut)
				} else if !fc.unanswered && !fc.killed && got != tr.LinesOK {
					t.Errorf("the sink stored %d rows, lines_ok %d", got, tr.LinesOK)
				}
				if !dual {
					return
				}
				h := doc.Targets[1]
				sqlClassified(t, h)
				healthyBeside(t, h, cfg)
			})
		}
	}
}
