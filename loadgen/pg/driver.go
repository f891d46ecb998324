package pg

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/profiles"
)

// Options are the per-run settings of a SQL driver.
type Options struct {
	// Batch is the number of rows per write.
	Batch int
	// Timeout bounds one write (connect, send, response) and the start-up
	// check (default 10 s).
	Timeout time.Duration
	// Mode is the write mode when the target URL has no mode= (default
	// insert).
	Mode string
	// Table is the table when the target URL has no table= (default: the
	// generator's measurement).
	Table string
	// Create creates the table when it is missing (--sql-create).
	Create bool
}

// Driver writes generated points as rows to one PostgreSQL target (or the
// embedded sink). It implements loadgen.Driver.
type Driver struct {
	name string
	mode string
	// exec is the execution mode of insert and values (Exec* constants).
	exec     string
	table    string
	cols     []Column
	oids     []uint32
	gen      *loadgen.Generator
	opts     Options
	cfg      *pgconn.Config
	dialer   *loadgen.Dialer
	pool     *pool
	perWrite bool
	password string
	notes    []string
	// dead counts pooled connections found dead when a write reused them.
	dead atomic.Int64

	insertSQL string
	// values mode: full chunks of chunkRows rows, then restRows rows.
	chunkRows, chunks, restRows int
	chunkSQL, restSQL           string
	copySQL                     string
	// simpleSQL is "INSERT INTO t (cols) VALUES " (simple protocol).
	simpleSQL string
	// valuesOIDs are the parameter types of a full values chunk: the
	// columns' OIDs, chunkRows times. Given, the server need not infer
	// a type for each of up to 65,535 parameters.
	valuesOIDs []uint32
}

var binaryFormat = []int16{1}

// Names of the statements prepared on pooled connections: the per-row (or
// full-chunk) INSERT and the remainder chunk of values mode.
var stmtNames = [2]string{"loadcap_rows", "loadcap_rest"}

// NewDriver checks the target before any load is sent (connects once, with
// the profile's dial settings, creates the table if asked and checks its
// columns) and returns the driver. Its errors are one line for the user and
// never hold the password.
func NewDriver(ctx context.Context, spec loadgen.TargetSpec, p *profiles.Client, gen *loadgen.Generator, opts Options) (*Driver, error) {
	if opts.Batch < 1 {
		return nil, fmt.Errorf("bad batch %d: want at least 1", opts.Batch)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	t, err := ParseTarget(spec)
	if err != nil {
		return nil, err
	}
	d := &Driver{name: spec.Name, gen: gen, opts: opts, mode: t.Mode, table: t.Table}
	if d.mode == "" {
		d.mode = opts.Mode
	}
	if d.mode == "" {
		d.mode = ModeInsert
	}
	if err := CheckMode(d.mode); err != nil {
		return nil, err
	}
	if d.table == "" {
		d.table = opts.Table
	}
	if d.table == "" {
		d.table = gen.Config().Measurement
	}
	if _, err := splitTable(d.table); err != nil {
		return nil, err
	}
	if spec.URL != nil && spec.URL.User != nil {
		d.password, _ = spec.URL.User.Password()
	}
	// pgx's own reading of the URL: its settings (default_query_exec_mode,
	// statement_cache_capacity, ...) are taken out, never sent to the
	// server as start-up parameters (a pooler refuses unknown ones).
	xcfg, err := pgx.ParseConfig(t.DSN)
	if err != nil {
		return nil, fmt.Errorf("bad target %q: %s", spec.Redacted(), scrub(oneLine(err.Error()), d.password))
	}
	cfg := &xcfg.Config
	d.exec = t.ExecMode
	if d.exec == "" {
		d.exec = ExecExec
	}
	if err := checkCaches(d.exec, xcfg); err != nil {
		return nil, fmt.Errorf("bad target %q: %w", spec.Redacted(), err)
	}
	if d.password == "" {
		d.password = cfg.Password // from PGPASSWORD or a pgpass file
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "loadcap"
	}
	cfg.ConnectTimeout = opts.Timeout
	d.cols = Columns(gen)
	for _, c := range d.cols {
		d.oids = append(d.oids, c.OID)
	}
	if p.Pooled() && p.Closer == profiles.CloserServer {
		return nil, fmt.Errorf("client profile %s: closer = \"server\" needs conn = \"per-write\" for SQL targets", p.Name)
	}

	// The start-up check has its own dialer: shaped like the run's, not
	// counted in its new connections.
	checkDialer, err := loadgen.NewDialer(p, opts.Timeout)
	if err != nil {
		return nil, err
	}
	cc := cfg.Copy()
	cc.DialFunc = dialFunc(checkDialer)
	cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	pc, err := pgconn.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to database %q as user %q: %s", cfg.Database, cfg.User, scrub(connectProblem(err, cfg), d.password))
	}
	err = ensureSchema(cctx, pc, d.table, d.cols, opts.Create)
	_, isTLS := pc.Conn().(*tls.Conn)
	// Closed as the run closes its connections, so that the check leaves
	// its TIME_WAIT (or none, with linger0) where the run's do.
	cl := closer{timeout: opts.Timeout, server: !p.Pooled() && p.Closer == profiles.CloserServer, linger0: p.Linger0}
	cl.close(pc)
	if err != nil {
		return nil, fmt.Errorf("%s", scrub(err.Error(), d.password))
	}
	if !isTLS && (cfg.TLSConfig != nil || len(cfg.Fallbacks) > 0) && sameServer(cfg) {
		// sslmode=prefer: pgx would open a TLS attempt and then a second
		// connection for every connect; libpq continues on the first.
		// The server refused TLS, so connect in plain directly: one TCP
		// connection per session, as libpq.
		cfg.TLSConfig = nil
		cfg.Fallbacks = nil
		d.notes = append(d.notes, "the server refused TLS (sslmode=prefer); connections are made without TLS, one TCP connection each")
	}

	d.dialer, err = loadgen.NewDialer(p, opts.Timeout)
	if err != nil {
		return nil, err
	}
	cfg.DialFunc = dialFunc(d.dialer)
	cfg.AfterNetConnect = afterConnect(d.dialer)
	d.cfg = cfg
	d.perWrite = !p.Pooled()
	d.pool = newPool(func(ctx context.Context) (*pgconn.PgConn, error) {
		return pgconn.ConnectConfig(ctx, d.cfg)
	}, poolConfig{pooled: !d.perWrite, maxConns: p.PoolSize, maxIdle: p.IdleSize,
		idleTimeout: p.IdleTimeout.D(), heartbeat: p.Heartbeat.D(), closer: cl})

	d.buildStatements()
	if d.mode != ModeCopy {
		d.notes = append(d.notes, "SQL execution mode "+d.exec+execNote[d.exec])
	}
	return d, nil
}

// execNote says what each execution mode costs and where it breaks.
var execNote = map[string]string{
	ExecExec:           " (unnamed statement parsed in each write's pipeline: one round trip, safe through transaction poolers)",
	ExecCacheDescribe:  " (as exec: loadcap knows its parameter types, there is nothing to describe)",
	ExecCacheStatement: " (named statements prepared once per connection: writes fail through a transaction-pooling pooler whenever they land on another server connection)",
	ExecDescribeExec:   " (unnamed statement prepared in one round trip, executed in a second: two round trips per write)",
	ExecSimpleProtocol: " (rows as SQL literals in one Query message: no parameters)",
}

// checkCaches refuses what pgx refuses: a caching execution mode whose
// cache is turned off (capacity 0).
func checkCaches(exec string, c *pgx.ConnConfig) error {
	switch {
	case exec == ExecCacheStatement && c.StatementCacheCapacity == 0:
		return fmt.Errorf("default_query_exec_mode=cache_statement needs statement_cache_capacity above 0")
	case exec == ExecCacheDescribe && c.DescriptionCacheCapacity == 0:
		return fmt.Errorf("default_query_exec_mode=cache_describe needs description_cache_capacity above 0")
	}
	return nil
}

// sameServer reports whether the fallbacks of cfg only differ in TLS.
func sameServer(cfg *pgconn.Config) bool {
	for _, f := range cfg.Fallbacks {
		if f.Host != cfg.Host || f.Port != cfg.Port {
			return false
		}
	}
	return true
}

func (d *Driver) buildStatements() {
	batch := d.opts.Batch
	if d.mode != ModeCopy && d.exec == ExecSimpleProtocol {
		d.simpleSQL = fmt.Sprintf("INSERT INTO %s (%s) VALUES ", quoteTable(d.table), columnList(d.cols))
		return
	}
	switch d.mode {
	case ModeInsert:
		d.insertSQL = insertSQL(d.table, d.cols, 1)
	case ModeValues:
		per := maxParams / len(d.cols)
		if batch <= per {
			d.chunkRows, d.chunks = batch, 1
		} else {
			d.chunkRows, d.chunks, d.restRows = per, batch/per, batch%per
			n := d.chunks
			if d.restRows > 0 {
				n++
			}
			d.notes = append(d.notes, fmt.Sprintf("values mode: a write of %d rows x %d columns exceeds PostgreSQL's %d bind parameters; each write is sent as %d INSERT statements of at most %d rows, pipelined",
				batch, len(d.cols), maxParams, n, per))
		}
		d.chunkSQL = insertSQL(d.table, d.cols, d.chunkRows)
		for r := 0; r < d.chunkRows; r++ {
			d.valuesOIDs = append(d.valuesOIDs, d.oids...)
		}
		if d.restRows > 0 {
			d.restSQL = insertSQL(d.table, d.cols, d.restRows)
		}
	case ModeCopy:
		d.copySQL = copySQL(d.table, d.cols)
	}
}

// Mode returns the write mode in use.
func (d *Driver) Mode() string { return d.mode }

// ExecMode returns the execution mode of insert and values writes.
func (d *Driver) ExecMode() string { return d.exec }

// Table returns the table written to.
func (d *Driver) Table() string { return d.table }

// NewConnections returns how many connections the driver has opened.
func (d *Driver) NewConnections() int64 { return d.dialer.Opened.Load() }

// ConnTimes returns the connect and TLS handshake times of the driver's new
// connections.
func (d *Driver) ConnTimes() *loadgen.ConnTimes { return &d.dialer.Times }

// Heartbeats returns how many "select 1" heartbeats ran on idle pooled
// connections, and how many of them failed (the connection was dropped).
func (d *Driver) Heartbeats() (sent, failed int64) {
	return d.pool.Pings()
}

// DeadConnections returns how many pooled connections were found dead when
// a write reused them, and how many failed their heartbeat.
func (d *Driver) DeadConnections() (onReuse, onHeartbeat int64) {
	_, failed := d.Heartbeats()
	return d.dead.Load(), failed
}

// Notes returns what the result document should say about this target:
// statement splitting, TLS fallback, heartbeats. They do not name the
// target: the caller (run.Execute) prefixes each with the target's name.
func (d *Driver) Notes() []string {
	out := append([]string(nil), d.notes...)
	if sent, failed := d.Heartbeats(); sent > 0 {
		out = append(out, fmt.Sprintf("heartbeat: %d select 1 on idle connections, %d failed", sent, failed))
	}
	return out
}

// Close closes the idle connections.
func (d *Driver) Close() error { d.pool.Close(); return nil }

// NewSession returns a worker's session with its own buffers.
func (d *Driver) NewSession() loadgen.Session {
	s := &session{d: d, enc: rowEncoder{gen: d.gen, cols: d.cols}}
	n := len(d.cols)
	if d.mode == ModeValues {
		n *= d.chunkRows
	}
	s.params = make([][]byte, n)
	return s
}

type session struct {
	d      *Driver
	enc    rowEncoder
	pt     loadgen.Point
	arena  []byte
	offs   []int
	params [][]byte
	buf    []byte
	rd     bytes.Reader
}

// Write sends write seq (Batch rows) in the driver's mode. Server errors
// and connection failures are returned as classified results.
func (s *session) Write(ctx context.Context, seq uint64, intended time.Time) loadgen.Result {
	d := s.d
	deadline := time.Now().Add(d.opts.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	getStart := time.Now()
	c, err := d.pool.Get(dctx)
	if err != nil {
		class, code := classify(err)
		return loadgen.Result{Class: class, Code: code, Err: fmt.Errorf("connect: %s", scrub(oneLine(err.Error()), d.password)), Sent: getStart}
	}
	sent := time.Now()
	if d.perWrite {
		sent = getStart
	}
	var rows int64
	switch {
	case d.mode != ModeCopy && d.exec == ExecSimpleProtocol:
		rows, err = s.simple(dctx, c.pc, seq, intended)
	case d.mode == ModeInsert:
		rows, err = s.insert(dctx, c, seq, intended)
	case d.mode == ModeValues:
		rows, err = s.values(dctx, c, seq, intended)
	default:
		rows, err = s.copy(dctx, c.pc, seq, intended)
	}
	if err != nil {
		err = withSocketFailure(err, c.pc.Conn())
	}
	var pe *pgconn.PgError
	if err != nil && c.Reused && !errors.As(err, &pe) {
		// A pooled connection that fails without a server error was dead
		// while it sat in the pool (dropped by a firewall, or the server).
		d.dead.Add(1)
	}
	d.pool.Put(c, err == nil || !fatal(err))
	if err != nil {
		class, code := classify(err)
		return loadgen.Result{Class: class, Code: code, Err: fmt.Errorf("%s: %s", d.mode, scrub(oneLine(err.Error()), d.password)), Sent: sent}
	}
	return loadgen.Result{Lines: int(rows), Sent: sent}
}

// fillParams encodes row j into s.params[at:at+len(cols)] via the arena.
func (s *session) encodeRow(seq uint64, j int, intended time.Time) {
	s.d.gen.Fill(&s.pt, seq, j, intended, s.d.opts.Batch)
	s.arena, s.offs = s.enc.appendParams(s.arena, s.offs, &s.pt)
}

func (s *session) bindParams(n int) [][]byte {
	for i := 0; i < n; i++ {
		s.params[i] = s.arena[s.offs[2*i]:s.offs[2*i+1]]
	}
	return s.params[:n]
}

// runBatch executes b and sums the rows of its command tags.
func runBatch(ctx context.Context, pc *pgconn.PgConn, b *pgconn.Batch) (int64, error) {
	mrr := pc.ExecBatch(ctx, b)
	var rows int64
	var first error
	for mrr.NextResult() {
		tag, err := mrr.ResultReader().Close()
		if err != nil && first == nil {
			first = err
		}
		rows += tag.RowsAffected()
	}
	if err := mrr.Close(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return 0, first
	}
	return rows, nil
}

// named reports whether writes bind named statements prepared once per
// connection (cache_statement on a pooled connection) rather than the
// unnamed statement.
func (d *Driver) named() bool { return d.exec == ExecCacheStatement && !d.perWrite }

// statement prepares statement i (sql) for the write being built in b, and
// reports whether it added the first execution to b itself. With
// cache_statement a pooled connection prepares it once (one round trip,
// then reused like pgx's statement cache); with describe_exec it is
// prepared unnamed in a round trip of its own, every write; otherwise it
// is parsed as the unnamed statement in the write's own pipeline (no extra
// round trip, nothing outlives the transaction).
func (s *session) statement(ctx context.Context, c *conn, b *pgconn.Batch, i int, sql string, oids []uint32, ps [][]byte) (bool, error) {
	if s.d.exec == ExecDescribeExec {
		_, err := c.pc.Prepare(ctx, "", sql, oids)
		return false, err
	}
	if !s.d.named() {
		b.ExecParams(sql, ps, oids, binaryFormat, nil)
		return true, nil
	}
	if c.prepared&(1<<i) == 0 {
		if _, err := c.pc.Prepare(ctx, stmtNames[i], sql, oids); err != nil {
			return false, err
		}
		c.prepared |= 1 << i
	}
	return false, nil
}

// bind adds one execution of statement i to b (the unnamed statement
// unless named statements are in use).
func (s *session) bind(b *pgconn.Batch, i int, ps [][]byte) {
	if !s.d.named() {
		b.ExecPrepared("", ps, binaryFormat, nil)
		return
	}
	b.ExecPrepared(stmtNames[i], ps, binaryFormat, nil)
}

func (s *session) insert(ctx context.Context, c *conn, seq uint64, intended time.Time) (int64, error) {
	d := s.d
	var b pgconn.Batch
	for j := 0; j < d.opts.Batch; j++ {
		s.arena, s.offs = s.arena[:0], s.offs[:0]
		s.encodeRow(seq, j, intended)
		ps := s.bindParams(len(d.cols))
		if j == 0 {
			parsed, err := s.statement(ctx, c, &b, 0, d.insertSQL, d.oids, ps)
			if err != nil {
				return 0, err
			}
			if parsed {
				continue
			}
		}
		s.bind(&b, 0, ps)
	}
	return runBatch(ctx, c.pc, &b)
}

func (s *session) values(ctx context.Context, c *conn, seq uint64, intended time.Time) (int64, error) {
	d := s.d
	var b pgconn.Batch
	j := 0
	chunk := func(i, rows int, sql string, first bool) error {
		s.arena, s.offs = s.arena[:0], s.offs[:0]
		for r := 0; r < rows; r++ {
			s.encodeRow(seq, j, intended)
			j++
		}
		ps := s.bindParams(rows * len(d.cols))
		if first {
			parsed, err := s.statement(ctx, c, &b, i, sql, d.valuesOIDs[:rows*len(d.cols)], ps)
			if err != nil || parsed {
				return err
			}
		}
		s.bind(&b, i, ps)
		return nil
	}
	for k := 0; k < d.chunks; k++ {
		if err := chunk(0, d.chunkRows, d.chunkSQL, k == 0); err != nil {
			return 0, err
		}
	}
	if d.restRows > 0 {
		if err := chunk(1, d.restRows, d.restSQL, true); err != nil {
			return 0, err
		}
	}
	return runBatch(ctx, c.pc, &b)
}

func (s *session) copy(ctx context.Context, pc *pgconn.PgConn, seq uint64, intended time.Time) (int64, error) {
	d := s.d
	s.buf = append(s.buf[:0], copyHeader...)
	for j := 0; j < d.opts.Batch; j++ {
		d.gen.Fill(&s.pt, seq, j, intended, d.opts.Batch)
		s.buf = s.enc.appendCopyTuple(s.buf, &s.pt)
	}
	s.buf = appendCopyTrailer(s.buf)
	s.rd.Reset(s.buf)
	tag, err := pc.CopyFrom(ctx, &s.rd, d.copySQL)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// simple sends the write as SQL literals in one simple Query message: one
// INSERT per row (insert mode) or one INSERT of every row (values mode:
// without parameters there is no limit to split at), and sums the rows of
// the command tags.
func (s *session) simple(ctx context.Context, pc *pgconn.PgConn, seq uint64, intended time.Time) (int64, error) {
	d := s.d
	head := d.simpleSQL
	s.buf = s.buf[:0]
	for j := 0; j < d.opts.Batch; j++ {
		d.gen.Fill(&s.pt, seq, j, intended, d.opts.Batch)
		switch {
		case d.mode == ModeInsert && j > 0:
			s.buf = append(s.buf, ';')
			fallthrough
		case j == 0:
			s.buf = append(s.buf, head...)
		default:
			s.buf = append(s.buf, ',')
		}
		s.buf = s.enc.appendTuple(s.buf, &s.pt)
	}
	res, err := pc.Exec(ctx, string(s.buf)).ReadAll()
	if err != nil {
		return 0, err
	}
	var rows int64
	for _, r := range res {
		if r.Err != nil {
			return 0, r.Err
		}
		rows += r.CommandTag.RowsAffected()
	}
	return rows, nil
}
