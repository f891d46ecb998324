package pg

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// sinkServerVersion is what the sink reports as server_version.
const sinkServerVersion = "15.0"

// SinkOptions configure the embedded PostgreSQL-wire sink.
type SinkOptions struct {
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
}

// SinkStats are the sink's counters since it started.
type SinkStats struct {
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

func (s SinkStats) String() string {
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

// Sink is an in-process PostgreSQL-wire server that accepts writes, counts
// rows and stores nothing. It speaks enough of the protocol for pgx, psql
// and pgbench-style inserts: trust (or cleartext password) authentication,
// the simple and extended query protocols with pipelining, and COPY FROM
// STDIN in text, CSV and binary format. See docs/sql.md for what it
// accepts.
type Sink struct {
	opts SinkOptions
	ln   net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	tables  map[string]*sinkTable
	nextOID uint32
	wg      sync.WaitGroup

	connections, active, rejected atomic.Int64
	statements, errs              atomic.Int64
	rows, copies                  atomic.Int64
	pid                           atomic.Uint32
}

// NewSink returns a sink that serves nothing until Serve.
func NewSink(opts SinkOptions) *Sink {
	return &Sink{opts: opts, conns: map[net.Conn]struct{}{}, tables: map[string]*sinkTable{}, nextOID: 16384}
}

// StartSink listens on addr ("127.0.0.1:0" picks a free port) and serves in
// the background until Close.
func StartSink(addr string, opts SinkOptions) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	s := NewSink(opts)
	s.ln = ln // Addr and URL work as soon as StartSink returns
	go s.Serve(ln)
	return s, nil
}

// Serve accepts connections on ln until Close (returning nil) or an accept
// error. The listener may come from another network namespace.
func (s *Sink) Serve(ln net.Listener) error {
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
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
			}()
			defer func() {
				if recover() != nil { // a sink bug ends one session, never the run
					s.errs.Add(1)
				}
			}()
			newSinkConn(s, nc).serve()
		}()
	}
}

// Addr returns the listening address ("" before Serve).
func (s *Sink) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns a postgres:// URL for the sink (user and database loadcap,
// sslmode=disable; with a password option, the password is not included).
func (s *Sink) URL() string {
	return "postgres://loadcap@" + s.Addr() + "/loadcap?sslmode=disable"
}

// Stats returns the counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{
		Connections: s.connections.Load(), Active: s.active.Load(), Rejected: s.rejected.Load(),
		Statements: s.statements.Load(), Errors: s.errs.Load(), Rows: s.rows.Load(), Copies: s.copies.Load(),
	}
}

// TableRows returns the rows committed into table ("" or unknown: 0).
// Names are matched as PostgreSQL would: unquoted lower-case.
func (s *Sink) TableRows(table string) int64 {
	if t := s.table(table); t != nil {
		return t.rows.Load()
	}
	return 0
}

// Close stops accepting, closes every connection and waits for them.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Sink) table(name string) *sinkTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tables[name]
}

// createTable registers a table; existed is true when it was there already.
func (s *Sink) createTable(name string, cols []sinkCol) (existed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tables[name]; ok {
		return true
	}
	s.nextOID++
	s.tables[name] = &sinkTable{name: name, oid: s.nextOID, cols: cols}
	return false
}

func (s *Sink) dropTable(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tables[name]
	delete(s.tables, name)
	return ok
}
