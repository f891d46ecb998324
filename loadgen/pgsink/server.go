package pgsink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loadcap/loadcap/internal/faults"
)

// serverVersion is what the sink reports as server_version.
const serverVersion = "15.0"

// Options configure the PostgreSQL-wire sink. The zero value is a plain,
// fault-free sink; as in the line-protocol sink (loadgen/sink), a new
// behaviour for tests is a new field whose zero value keeps the current one.
type Options struct {
	// Password, when set, makes the sink ask every client for it (cleartext
	// password authentication) and refuse a wrong one with SQLSTATE 28P01,
	// as PostgreSQL does. Empty: trust authentication.
	Password string
	// MaxConnections refuses sessions beyond this many at once with
	// SQLSTATE 53300 too_many_connections (0: no limit).
	MaxConnections int
	// Latency is added before every ReadyForQuery (each Sync or simple
	// query), like a slower server.
	Latency time.Duration
	// ErrorRate is the fraction (0..1) of writes (INSERT and COPY
	// statements) answered with an error (SQLSTATE XX000) instead of being
	// counted. Which writes fail is a pure function of Seed and the order
	// in which writes arrive, so a run is reproducible.
	ErrorRate float64
	// Seed selects the error-injection sequence.
	Seed int64
}

// Validate reports the first option out of range, naming it and its value.
func (o Options) Validate() error {
	switch {
	case o.Latency < 0:
		return fmt.Errorf("validate pg sink options: latency %v is negative", o.Latency)
	case o.ErrorRate < 0 || o.ErrorRate > 1 || math.IsNaN(o.ErrorRate):
		return fmt.Errorf("validate pg sink options: error rate %v is not within 0..1", o.ErrorRate)
	case o.MaxConnections < 0:
		return fmt.Errorf("validate pg sink options: max connections %d is negative", o.MaxConnections)
	}
	return nil
}

// Stats are the sink's counters since it started.
type Stats struct {
	// Connections counts sessions that completed start-up; Active are open
	// now; Rejected were refused at start-up (limit, password).
	Connections, Active, Rejected int64
	// Statements counts executed statements (each INSERT of a pipeline, each
	// COPY, each SELECT ...); Errors counts error responses.
	Statements, Errors int64
	// Rows counts committed rows: VALUES tuples of INSERTs and COPY rows.
	// Copies counts completed COPY FROM STDIN.
	Rows, Copies int64
}

// String is the counters on one line, as `loadcap sink` prints them.
func (s Stats) String() string {
	return fmt.Sprintf("connections=%d active=%d rejected=%d statements=%d rows=%d copies=%d errors=%d",
		s.Connections, s.Active, s.Rejected, s.Statements, s.Rows, s.Copies, s.Errors)
}

// sinkTable is a table the sink has seen created.
type sinkTable struct {
	name string
	oid  uint32
	cols []sinkCol
	rows atomic.Int64
}

// Server is an in-process PostgreSQL-wire server that accepts writes, counts
// rows and stores nothing. It speaks enough of the protocol for pgx, psql
// and pgbench-style inserts: trust (or cleartext password) authentication,
// the simple and extended query protocols with pipelining, and COPY FROM
// STDIN in text, CSV and binary format. Its API mirrors the line-protocol
// sink's (loadgen/sink): New, Start, Serve, Addr, URL, Stats, Shutdown,
// Close. All methods are safe for concurrent use.
type Server struct {
	opts Options

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*sinkConn]struct{}
	closed  bool          // Close or Shutdown began: no new session
	halt    chan struct{} // closed by Close: latency waits end
	halted  bool
	tables  map[string]*sinkTable
	nextOID uint32
	wg      sync.WaitGroup

	seq                           atomic.Uint64 // write sequence number, for error injection
	connections, active, rejected atomic.Int64
	statements, errs              atomic.Int64
	rows, copies                  atomic.Int64
	pid                           atomic.Uint32
}

// New returns a sink that serves nothing until Serve.
func New(opts Options) *Server {
	return &Server{opts: opts, halt: make(chan struct{}), conns: map[*sinkConn]struct{}{}, tables: map[string]*sinkTable{}, nextOID: 16384}
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in
// the background until Close or Shutdown.
func Start(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start pg sink on %s: %w", addr, err)
	}
	s := New(opts)
	s.ln = ln // Addr and URL work as soon as Start returns
	go s.Serve(ln)
	return s, nil
}

// Serve accepts connections on ln until Close or Shutdown (returning nil)
// or an accept error. The listener may come from another network
// namespace.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			// EMFILE and the like: back off, keep serving
			time.Sleep(20 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		c := newSinkConn(s, nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				nc.Close()
			}()
			defer func() {
				if recover() != nil { // a sink bug ends one session, never the run
					s.errs.Add(1)
				}
			}()
			c.serve()
		}()
	}
}

// Addr returns the address the sink listens on, or nil before Serve or
// Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL returns a postgres:// URL for the sink (user and database loadcap,
// sslmode=disable; with a password option, the password is not included);
// an unspecified listen address (0.0.0.0, ::) is reported as 127.0.0.1. It
// is empty before Serve or Start.
func (s *Server) URL() string {
	a, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "postgres://loadcap@" + net.JoinHostPort(ip.String(), strconv.Itoa(a.Port)) + "/loadcap?sslmode=disable"
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections: s.connections.Load(), Active: s.active.Load(), Rejected: s.rejected.Load(),
		Statements: s.statements.Load(), Errors: s.errs.Load(), Rows: s.rows.Load(), Copies: s.copies.Load(),
	}
}

// TableRows returns the rows committed into table ("" or unknown: 0).
// Names are matched as PostgreSQL would: unquoted lower-case.
func (s *Server) TableRows(table string) int64 {
	if t := s.table(table); t != nil {
		return t.rows.Load()
	}
	return 0
}

// stop stops accepting; it reports whether the sink was already stopped.
func (s *Server) stop() (was bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true, nil
	}
	s.closed = true
	if s.ln != nil {
		err = s.ln.Close()
	}
	return false, err
}

// Close stops the sink at once: it closes the listener and every
// connection, including those with a statement in progress, and waits for
// their sessions to end.
func (s *Server) Close() error {
	_, err := s.stop()
	s.mu.Lock()
	if !s.halted {
		s.halted = true
		close(s.halt)
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close pg sink: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and ends every session once the
// message it is answering (a statement, a whole COPY) is answered, with
// FATAL 57P01 admin_shutdown as PostgreSQL's fast shutdown; it waits for
// that until ctx is done, then closes what is left as Close does and
// returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	if _, err := s.stop(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("shut down pg sink: %w", err)
	}
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		conns := make([]*sinkConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.shutdown()
		}
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return fmt.Errorf("shut down pg sink: %w", ctx.Err())
	}
}

// inject reports whether the next write is answered with an injected
// error (see internal/faults).
func (s *Server) inject() bool {
	if s.opts.ErrorRate <= 0 {
		return false
	}
	return faults.Pick(s.opts.ErrorRate, s.opts.Seed, s.seq.Add(1))
}

func (s *Server) table(name string) *sinkTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tables[name]
}

// createTable registers a table; existed is true when it was there already.
func (s *Server) createTable(name string, cols []sinkCol) (existed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tables[name]; ok {
		return true
	}
	s.nextOID++
	s.tables[name] = &sinkTable{name: name, oid: s.nextOID, cols: cols}
	return false
}

func (s *Server) dropTable(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tables[name]
	delete(s.tables, name)
	return ok
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
