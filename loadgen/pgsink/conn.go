package pgsink

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

type prepared struct {
	st        statement
	paramOIDs []uint32
}

type portal struct {
	stmt    *prepared
	formats []int16
}

type pendingRows struct {
	t *sinkTable
	n int64
}

// sinkConn is one client session of the sink.
type sinkConn struct {
	s          *Server
	nc         net.Conn
	be         *pgproto3.Backend
	stmts      map[string]*prepared
	portals    map[string]*portal
	tx         byte // 'I' idle, 'T' in a transaction block, 'E' failed block
	pending    []pendingRows
	skipToSync bool
	dead       bool
	params     map[string]string
	tagBuf     []byte
	valBuf     []byte
	vals       [][]byte

	// mu is held while a message is answered; Shutdown takes it to end
	// the session between messages.
	mu        sync.Mutex
	ended     bool // Shutdown ended the session
	inSession bool // start-up is over
}

func newSinkConn(s *Server, nc net.Conn) *sinkConn {
	return &sinkConn{s: s, nc: nc, be: pgproto3.NewBackend(nc, nc), stmts: map[string]*prepared{}, portals: map[string]*portal{}, tx: 'I'}
}

func (c *sinkConn) serve() {
	c.nc.SetDeadline(time.Now().Add(30 * time.Second)) // start-up must not hang
	if !c.startup() {
		return
	}
	c.nc.SetDeadline(time.Time{})
	defer c.s.active.Add(-1)
	c.mu.Lock()
	c.inSession = true
	c.mu.Unlock()
	for !c.dead {
		msg, err := c.be.Receive()
		if err != nil {
			return
		}
		c.mu.Lock()
		end := c.ended || c.handle(msg)
		c.mu.Unlock()
		if end {
			return
		}
	}
}

// handle answers one message; end is true when the session ends.
func (c *sinkConn) handle(msg pgproto3.FrontendMessage) (end bool) {
	switch m := msg.(type) {
	case *pgproto3.Query:
		c.simpleQuery(m.String)
	case *pgproto3.Parse:
		c.parse(m)
	case *pgproto3.Bind:
		c.bind(m)
	case *pgproto3.Describe:
		c.describe(m)
	case *pgproto3.Execute:
		c.executePortal(m)
	case *pgproto3.Close:
		if !c.skipToSync {
			if m.ObjectType == 'S' {
				delete(c.stmts, m.Name)
			} else {
				delete(c.portals, m.Name)
			}
			c.be.Send(&pgproto3.CloseComplete{})
		}
	case *pgproto3.Sync:
		c.skipToSync = false
		delete(c.portals, "")
		if c.tx == 'I' {
			c.commit()
		}
		c.ready()
	case *pgproto3.Flush:
		return c.be.Flush() != nil
	case *pgproto3.Terminate:
		return true
	case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		// outside COPY: ignored, as PostgreSQL does
	default:
		c.sendError("0A000", fmt.Sprintf("loadcap pg sink: message %T is not supported", msg))
		c.skipToSync = true
		c.ready()
	}
	return false
}

// shutdown ends the session between two messages: a session past start-up
// is told FATAL 57P01 admin_shutdown, as PostgreSQL's fast shutdown does.
func (c *sinkConn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if c.inSession && !c.dead {
		msg, err := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
			Message: "terminating connection due to administrator command"}).Encode(nil)
		if err == nil {
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.nc.Write(msg)
		}
	}
	c.nc.Close()
}

func (c *sinkConn) fatal(code, msg string) {
	c.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	c.be.Flush()
}

// startup answers SSL/GSS requests with 'N', authenticates and sends the
// parameters a PostgreSQL 15 server sends.
func (c *sinkConn) startup() bool {
	for {
		msg, err := c.be.ReceiveStartupMessage()
		if err != nil {
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.nc.Write([]byte{'N'}); err != nil {
				return false
			}
			continue
		case *pgproto3.CancelRequest:
			return false // nothing runs long enough to cancel
		case *pgproto3.StartupMessage:
			return c.accept(m)
		default:
			return false
		}
	}
}

func (c *sinkConn) accept(m *pgproto3.StartupMessage) bool {
	user := m.Parameters["user"]
	db := m.Parameters["database"]
	if db == "" {
		db = user
	}
	if m.ProtocolVersion != pgproto3.ProtocolVersion30 {
		c.be.Send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0})
	}
	if pw := c.s.opts.Password; pw != "" {
		c.be.Send(&pgproto3.AuthenticationCleartextPassword{})
		if c.be.Flush() != nil {
			return false
		}
		c.be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
		msg, err := c.be.Receive()
		if err != nil {
			return false
		}
		pm, ok := msg.(*pgproto3.PasswordMessage)
		if !ok || subtle.ConstantTimeCompare([]byte(pm.Password), []byte(pw)) != 1 {
			c.s.rejected.Add(1)
			c.fatal("28P01", fmt.Sprintf("password authentication failed for user %q", user))
			return false
		}
	}
	if n := c.s.active.Add(1); c.s.opts.MaxConnections > 0 && n > int64(c.s.opts.MaxConnections) {
		c.s.active.Add(-1)
		c.s.rejected.Add(1)
		c.fatal("53300", "sorry, too many clients already")
		return false
	}
	c.s.connections.Add(1)
	c.params = map[string]string{
		"server_version": serverVersion, "server_encoding": "UTF8", "client_encoding": "UTF8",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on", "IntervalStyle": "postgres",
		"is_superuser": "on", "session_authorization": user, "standard_conforming_strings": "on",
		"TimeZone": "UTC", "application_name": m.Parameters["application_name"],
	}
	c.be.Send(&pgproto3.AuthenticationOk{})
	for _, k := range []string{"application_name", "client_encoding", "DateStyle", "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version", "session_authorization", "standard_conforming_strings", "TimeZone"} {
		c.be.Send(&pgproto3.ParameterStatus{Name: k, Value: c.params[k]})
	}
	c.params["max_connections"] = strconv.Itoa(c.s.opts.MaxConnections)
	c.params["database"] = db
	var key [4]byte
	binary.BigEndian.PutUint32(key[:], uint32(time.Now().UnixNano()))
	c.be.Send(&pgproto3.BackendKeyData{ProcessID: c.s.pid.Add(1), SecretKey: key[:]})
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if c.be.Flush() != nil {
		c.s.active.Add(-1)
		return false
	}
	return true
}

func (c *sinkConn) ready() {
	if d := c.s.opts.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.s.halt: // Close: no waiting
			t.Stop()
		}
	}
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.tx})
	if c.be.Flush() != nil {
		c.dead = true
	}
}

// sendError answers an error and rolls back what the failed transaction
// holds: the implicit one now, an explicit block at its end.
func (c *sinkConn) sendError(code, msg string) {
	c.s.errs.Add(1)
	c.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg})
	if c.tx == 'T' || c.tx == 'E' {
		c.tx = 'E'
		return
	}
	c.pending = c.pending[:0]
}

func (c *sinkConn) commit() {
	for _, p := range c.pending {
		p.t.rows.Add(p.n)
		c.s.rows.Add(p.n)
	}
	c.pending = c.pending[:0]
}

func (c *sinkConn) addPending(t *sinkTable, n int64) {
	if k := len(c.pending); k > 0 && c.pending[k-1].t == t {
		c.pending[k-1].n += n
		return
	}
	c.pending = append(c.pending, pendingRows{t, n})
}

func (c *sinkConn) complete(tag string, n int64, withN bool) {
	c.tagBuf = append(c.tagBuf[:0], tag...)
	if withN {
		c.tagBuf = append(c.tagBuf, ' ')
		c.tagBuf = strconv.AppendInt(c.tagBuf, n, 10)
	}
	c.be.Send(&pgproto3.CommandComplete{CommandTag: c.tagBuf})
}

func (c *sinkConn) simpleQuery(sql string) {
	stmts := splitStatements(tokenize(sql))
	if len(stmts) == 0 {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
	}
	for _, toks := range stmts {
		st := analyze(toks, sql)
		if !c.execute(&st, nil, true) {
			break
		}
	}
	if c.tx == 'I' {
		c.commit()
	}
	c.ready()
}

func (c *sinkConn) parse(m *pgproto3.Parse) {
	if c.skipToSync {
		return
	}
	stmts := splitStatements(tokenize(m.Query))
	if len(stmts) > 1 {
		c.sendError("42601", "cannot insert multiple commands into a prepared statement")
		c.skipToSync = true
		return
	}
	var toks []token
	if len(stmts) == 1 {
		toks = stmts[0]
	}
	st := analyze(toks, m.Query)
	if st.kind == stUnsupported {
		c.unsupported(&st)
		c.skipToSync = true
		return
	}
	if _, ok := c.stmts[m.Name]; ok && m.Name != "" {
		c.sendError("42P05", fmt.Sprintf("prepared statement %q already exists", m.Name))
		c.skipToSync = true
		return
	}
	c.stmts[m.Name] = &prepared{st: st, paramOIDs: append([]uint32(nil), m.ParameterOIDs...)}
	c.be.Send(&pgproto3.ParseComplete{})
}

func (c *sinkConn) bind(m *pgproto3.Bind) {
	if c.skipToSync {
		return
	}
	p, ok := c.stmt(m.PreparedStatement)
	if !ok {
		return
	}
	pt := c.portals[m.DestinationPortal]
	if pt == nil {
		pt = &portal{}
		c.portals[m.DestinationPortal] = pt
	}
	pt.stmt = p
	pt.formats = append(pt.formats[:0], m.ResultFormatCodes...)
	c.be.Send(&pgproto3.BindComplete{})
}

func (c *sinkConn) describe(m *pgproto3.Describe) {
	if c.skipToSync {
		return
	}
	var st *statement
	var formats []int16
	if m.ObjectType == 'S' {
		p, ok := c.stmt(m.Name)
		if !ok {
			return
		}
		st = &p.st
		c.be.Send(&pgproto3.ParameterDescription{ParameterOIDs: c.paramOIDs(p)})
	} else {
		pt, ok := c.portal(m.Name)
		if !ok {
			return
		}
		st, formats = &pt.stmt.st, pt.formats
	}
	fields, ok := c.rowFields(st, formats)
	if !ok {
		c.skipToSync = true
		return
	}
	if fields == nil {
		c.be.Send(&pgproto3.NoData{})
		return
	}
	c.be.Send(&pgproto3.RowDescription{Fields: fields})
}

func (c *sinkConn) executePortal(m *pgproto3.Execute) {
	if c.skipToSync {
		return
	}
	pt, ok := c.portal(m.Portal)
	if !ok {
		return
	}
	if !c.execute(&pt.stmt.st, pt.formats, false) {
		c.skipToSync = true
	}
}

// stmt returns the prepared statement name; when there is none it answers
// 26000, as PostgreSQL does, and skips to the next Sync.
func (c *sinkConn) stmt(name string) (*prepared, bool) {
	p, ok := c.stmts[name]
	if !ok {
		c.sendError("26000", fmt.Sprintf("prepared statement %q does not exist", name))
		c.skipToSync = true
	}
	return p, ok
}

// portal returns the portal name; when there is none it answers 34000 and
// skips to the next Sync.
func (c *sinkConn) portal(name string) (*portal, bool) {
	pt, ok := c.portals[name]
	if !ok {
		c.sendError("34000", fmt.Sprintf("portal %q does not exist", name))
		c.skipToSync = true
	}
	return pt, ok
}

// paramOIDs are the parameter types of a prepared statement: as the client
// declared them, else the types of the INSERT's target columns, else text.
func (c *sinkConn) paramOIDs(p *prepared) []uint32 {
	n := p.st.params
	if len(p.paramOIDs) > n {
		n = len(p.paramOIDs)
	}
	out := make([]uint32, n)
	var cols []sinkCol
	if p.st.kind == stInsert {
		if t := c.s.table(p.st.table); t != nil {
			cols = pickCols(t, p.st.cols)
		}
	}
	for i := range out {
		switch {
		case i < len(p.paramOIDs) && p.paramOIDs[i] != 0:
			out[i] = p.paramOIDs[i]
		case len(cols) > 0:
			out[i] = cols[i%len(cols)].oid
		default:
			out[i] = pgtype.TextOID
		}
	}
	return out
}

// pickCols returns the named columns of t (all when names is nil); unknown
// names are left out.
func pickCols(t *sinkTable, names []string) []sinkCol {
	if names == nil {
		return t.cols
	}
	out := make([]sinkCol, 0, len(names))
	for _, n := range names {
		for _, col := range t.cols {
			if col.name == n {
				out = append(out, col)
				break
			}
		}
	}
	return out
}

func typeSize(oid uint32) int16 {
	switch oid {
	case pgtype.BoolOID:
		return 1
	case 21:
		return 2
	case pgtype.Int4OID, 700:
		return 4
	case pgtype.Int8OID, pgtype.Float8OID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		return 8
	}
	return -1
}

func formatOf(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

// lookup finds st's table or answers 42P01.
func (c *sinkConn) lookup(st *statement) (*sinkTable, bool) {
	t := c.s.table(st.table)
	if t == nil {
		c.sendError("42P01", fmt.Sprintf("relation %q does not exist", st.table))
		return nil, false
	}
	for _, n := range st.cols {
		found := false
		for _, col := range t.cols {
			if col.name == n {
				found = true
				break
			}
		}
		if !found {
			c.sendError("42703", fmt.Sprintf("column %q of relation %q does not exist", n, st.table))
			return nil, false
		}
	}
	return t, true
}

// rowFields is the row description of st (nil: no rows); false when an
// error was sent.
func (c *sinkConn) rowFields(st *statement, formats []int16) ([]pgproto3.FieldDescription, bool) {
	var fields []pgproto3.FieldDescription
	add := func(name string, oid uint32, tableOID uint32, attr int) {
		fields = append(fields, pgproto3.FieldDescription{Name: []byte(name), TableOID: tableOID, TableAttributeNumber: uint16(attr),
			DataTypeOID: oid, DataTypeSize: typeSize(oid), TypeModifier: -1, Format: formatOf(formats, len(fields))})
	}
	switch st.kind {
	case stSelect:
		if st.table == "" {
			for _, it := range st.items {
				add(it.name, it.oid, 0, 0)
			}
			return fields, true
		}
		t, ok := c.lookup(st)
		if !ok {
			return nil, false
		}
		if st.count {
			add("count", pgtype.Int8OID, 0, 0)
			return fields, true
		}
		for i, col := range t.cols {
			if st.star {
				add(col.name, col.oid, t.oid, i+1)
			}
		}
		for _, n := range st.cols {
			for i, col := range t.cols {
				if col.name == n {
					add(col.name, col.oid, t.oid, i+1)
				}
			}
		}
		if fields == nil {
			fields = []pgproto3.FieldDescription{}
		}
		return fields, true
	case stShow:
		add(st.items[0].name, pgtype.TextOID, 0, 0)
		return fields, true
	}
	return nil, true
}

// appendValue encodes a text-form value in the requested format.
func appendValue(buf []byte, oid uint32, v string, format int16) []byte {
	if format == 1 {
		switch oid {
		case pgtype.Int4OID:
			n, _ := strconv.ParseInt(v, 10, 32)
			return binary.BigEndian.AppendUint32(buf, uint32(n))
		case pgtype.Int8OID:
			n, _ := strconv.ParseInt(v, 10, 64)
			return binary.BigEndian.AppendUint64(buf, uint64(n))
		case pgtype.BoolOID:
			if v == "t" {
				return append(buf, 1)
			}
			return append(buf, 0)
		}
	}
	return append(buf, v...)
}

func (c *sinkConn) dataRow(oids []uint32, vals []string, nulls []bool, formats []int16) {
	c.valBuf = c.valBuf[:0]
	offs := make([]int, 0, 2*len(vals))
	for i, v := range vals {
		start := len(c.valBuf)
		c.valBuf = appendValue(c.valBuf, oids[i], v, formatOf(formats, i))
		offs = append(offs, start, len(c.valBuf))
	}
	c.vals = c.vals[:0]
	for i := range vals {
		if nulls != nil && nulls[i] {
			c.vals = append(c.vals, nil)
			continue
		}
		c.vals = append(c.vals, c.valBuf[offs[2*i]:offs[2*i+1]])
	}
	c.be.Send(&pgproto3.DataRow{Values: c.vals})
}

func truncate(s string, n int) string {
	s = oneLine(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (c *sinkConn) unsupported(st *statement) {
	c.sendError("0A000", fmt.Sprintf("loadcap pg sink: %s: %s", st.reason, truncate(st.sql, 80)))
}

// execute runs one statement; simple is true for the simple query protocol
// (row descriptions are sent with the rows, in text). It returns false when
// it answered an error.
func (c *sinkConn) execute(st *statement, formats []int16, simple bool) bool {
	if c.tx == 'E' && st.kind != stCommit && st.kind != stRollback {
		c.sendError("25P02", "current transaction is aborted, commands ignored until end of transaction block")
		return false
	}
	if st.kind != stEmpty {
		c.s.statements.Add(1)
	}
	switch st.kind {
	case stEmpty:
		c.be.Send(&pgproto3.EmptyQueryResponse{})
	case stUnsupported:
		c.unsupported(st)
		return false
	case stCreateTable:
		if c.s.createTable(st.table, st.defs) {
			if !st.ifExists {
				c.sendError("42P07", fmt.Sprintf("relation %q already exists", st.table))
				return false
			}
			c.be.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "42P07", Message: fmt.Sprintf("relation %q already exists, skipping", st.table)})
		}
		c.complete("CREATE TABLE", 0, false)
	case stDropTable:
		if !c.s.dropTable(st.table) && !st.ifExists {
			c.sendError("42P01", fmt.Sprintf("table %q does not exist", st.table))
			return false
		}
		c.complete("DROP TABLE", 0, false)
	case stTruncate:
		t, ok := c.lookup(st)
		if !ok {
			return false
		}
		c.s.rows.Add(-t.rows.Swap(0))
		c.complete("TRUNCATE TABLE", 0, false)
	case stInsert:
		t, ok := c.lookup(st)
		if !ok {
			return false
		}
		if c.injected() {
			return false
		}
		c.addPending(t, int64(st.groups))
		c.tagBuf = append(c.tagBuf[:0], "INSERT 0 "...)
		c.tagBuf = strconv.AppendInt(c.tagBuf, int64(st.groups), 10)
		c.be.Send(&pgproto3.CommandComplete{CommandTag: c.tagBuf})
	case stCopy:
		t, ok := c.lookup(st)
		if !ok {
			return false
		}
		if c.injected() {
			return false
		}
		return c.copyIn(st, t)
	case stSelect, stShow:
		return c.selectRows(st, formats, simple)
	case stBegin:
		if c.tx == 'I' {
			c.tx = 'T'
		}
		c.complete("BEGIN", 0, false)
	case stCommit:
		tag := "COMMIT"
		if c.tx == 'E' {
			c.pending = c.pending[:0]
			tag = "ROLLBACK"
		}
		c.commit()
		c.tx = 'I'
		c.complete(tag, 0, false)
	case stRollback:
		c.pending = c.pending[:0]
		c.tx = 'I'
		c.complete("ROLLBACK", 0, false)
	case stNoop:
		c.complete(st.tag, 0, false)
	}
	return true
}

// injected answers a write with an injected error when the sink's error
// rate picks it (Options.ErrorRate).
func (c *sinkConn) injected() bool {
	if !c.s.inject() {
		return false
	}
	c.sendError("XX000", "injected error (sink error rate)")
	return true
}

func (c *sinkConn) selectRows(st *statement, formats []int16, simple bool) bool {
	if simple {
		formats = nil
	}
	fields, ok := c.rowFields(st, formats)
	if !ok {
		return false
	}
	if simple {
		c.be.Send(&pgproto3.RowDescription{Fields: fields})
	}
	oids := make([]uint32, len(fields))
	for i, f := range fields {
		oids[i] = f.DataTypeOID
	}
	switch {
	case st.kind == stShow:
		v := c.params[st.items[0].name]
		if st.items[0].name == "server_version" {
			v = serverVersion
		}
		c.dataRow(oids, []string{v}, nil, formats)
		c.complete("SHOW", 0, false)
	case st.table == "":
		vals := make([]string, len(st.items))
		nulls := make([]bool, len(st.items))
		for i, it := range st.items {
			vals[i], nulls[i] = it.value, it.null
			if it.name == "now" && it.value == "" {
				vals[i] = time.Now().UTC().Format("2006-01-02 15:04:05.999999+00")
			}
		}
		c.dataRow(oids, vals, nulls, formats)
		c.complete("SELECT", 1, true)
	case st.count:
		t := c.s.table(st.table)
		c.dataRow(oids, []string{strconv.FormatInt(t.rows.Load(), 10)}, nil, formats)
		c.complete("SELECT", 1, true)
	default: // the sink stores nothing: tables read empty
		c.complete("SELECT", 0, true)
	}
	return true
}

// copyIn runs COPY FROM STDIN: it counts the rows of the stream.
func (c *sinkConn) copyIn(st *statement, t *sinkTable) bool {
	ncols := len(pickCols(t, st.cols))
	format := byte(0)
	if st.copyFmt == "binary" {
		format = 1
	}
	codes := make([]uint16, ncols)
	for i := range codes {
		codes[i] = uint16(format)
	}
	c.be.Send(&pgproto3.CopyInResponse{OverallFormat: format, ColumnFormatCodes: codes})
	if c.be.Flush() != nil {
		c.dead = true
		return false
	}
	cc := copyCounter{csv: st.copyFmt == "csv", header: st.header}
	for {
		msg, err := c.be.Receive()
		if err != nil {
			c.dead = true
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			cc.feed(m.Data)
		case *pgproto3.CopyDone:
			rows, err := cc.finish()
			if err != nil {
				c.sendError("22P04", fmt.Sprintf("bad COPY data: %v", err))
				return false
			}
			c.addPending(t, rows)
			c.s.copies.Add(1)
			c.complete("COPY", rows, true)
			return true
		case *pgproto3.CopyFail:
			c.sendError("57014", "COPY from stdin failed: "+m.Message)
			return false
		case *pgproto3.Flush, *pgproto3.Sync:
		default:
			c.sendError("08P01", fmt.Sprintf("unexpected message type %T during COPY from stdin", msg))
			return false
		}
	}
}
