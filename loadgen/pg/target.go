package pg

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/loadcap/loadcap/loadgen"
)

// Write modes of a SQL target.
const (
	// ModeInsert sends one INSERT per row, pipelined in one round trip.
	ModeInsert = "insert"
	// ModeValues sends one multi-row INSERT ... VALUES per write.
	ModeValues = "values"
	// ModeCopy sends one binary COPY FROM STDIN per write.
	ModeCopy = "copy"
)

// Execution modes of the insert and values modes, as pgx names them in a
// connection string (default_query_exec_mode). copy mode has no statement to
// prepare and is the same in every one.
const (
	// ExecCacheStatement prepares named statements once per connection and
	// reuses them: one round trip per write, but a statement outlives the
	// transaction, which a transaction-pooling pooler (pgbouncer
	// pool_mode=transaction) cannot follow: a write that lands on another
	// server connection fails (42P05 or 26000).
	ExecCacheStatement = "cache_statement"
	// ExecCacheDescribe is pgx's "describe once, then unnamed statements".
	// loadcap knows its parameter types, so there is nothing to describe:
	// it is ExecExec.
	ExecCacheDescribe = "cache_describe"
	// ExecDescribeExec parses and describes the unnamed statement in one
	// round trip, then binds and executes it in a second. Through a
	// transaction pooler the second round trip may land on another server
	// connection, as with pgx.
	ExecDescribeExec = "describe_exec"
	// ExecExec parses the unnamed statement in the same pipeline as the
	// writes: one round trip, nothing outlives the transaction. loadcap's
	// default, safe through every pooler.
	ExecExec = "exec"
	// ExecSimpleProtocol sends the rows as SQL literals in one simple Query
	// message: no parameters (values mode then needs no splitting), and
	// text the server must parse.
	ExecSimpleProtocol = "simple_protocol"
)

// CheckExecMode checks an execution mode name.
func CheckExecMode(m string) error {
	switch m {
	case ExecCacheStatement, ExecCacheDescribe, ExecDescribeExec, ExecExec, ExecSimpleProtocol:
		return nil
	}
	return fmt.Errorf("bad default_query_exec_mode %q: want exec (loadcap's default), cache_statement, cache_describe, describe_exec or simple_protocol", m)
}

// Target is a postgres:// target with loadcap's own query parameters
// (table, mode) taken out of the connection string.
type Target struct {
	// DSN is the connection string handed to pgx: the target URL without
	// table= and mode=. It may hold a password: never print it.
	DSN string
	// Table is the table name as given (?table=), "" when not given.
	// "schema.table" names a table in another schema.
	Table string
	// Mode is the write mode (?mode=), "" when not given.
	Mode string
	// ExecMode is pgx's default_query_exec_mode from the URL, "" when not
	// given (loadcap then uses ExecExec, not pgx's cache_statement).
	ExecMode string
}

// ParseTarget extracts table= and mode= from a postgres:// target. Errors
// name the target with its password redacted.
func ParseTarget(spec loadgen.TargetSpec) (Target, error) {
	if spec.URL == nil {
		return Target{}, fmt.Errorf("bad target %q: not a postgres:// URL", spec.Redacted())
	}
	u := *spec.URL
	q := u.Query()
	t := Target{Table: q.Get("table"), Mode: q.Get("mode")}
	if q.Has("table") && strings.TrimSpace(t.Table) == "" {
		return Target{}, fmt.Errorf("bad target %q: empty table=", spec.Redacted())
	}
	if t.Table != "" {
		if _, err := splitTable(t.Table); err != nil {
			return Target{}, fmt.Errorf("bad target %q: %w", spec.Redacted(), err)
		}
	}
	if t.Mode != "" {
		if err := CheckMode(t.Mode); err != nil {
			return Target{}, fmt.Errorf("bad target %q: %w", spec.Redacted(), err)
		}
	}
	if q.Has("default_query_exec_mode") {
		t.ExecMode = q.Get("default_query_exec_mode")
		if err := CheckExecMode(t.ExecMode); err != nil {
			return Target{}, fmt.Errorf("bad target %q: %w", spec.Redacted(), err)
		}
	}
	for _, k := range []string{"statement_cache_capacity", "description_cache_capacity"} {
		if v := q.Get(k); q.Has(k) {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				return Target{}, fmt.Errorf("bad target %q: bad %s %q: want a count, 0 or more", spec.Redacted(), k, v)
			}
		}
	}
	q.Del("table")
	q.Del("mode")
	u.RawQuery = q.Encode()
	t.DSN = u.String()
	return t, nil
}

// CheckMode checks a write mode name.
func CheckMode(m string) error {
	switch m {
	case ModeInsert, ModeValues, ModeCopy:
		return nil
	}
	return fmt.Errorf("bad mode %q: want insert, values or copy", m)
}

// splitTable splits "table" or "schema.table" into its parts. Names are used
// verbatim (quoted), so "MyTable" is case-sensitive.
func splitTable(name string) ([]string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("bad table %q: want table or schema.table", name)
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "\x00") || len(p) > 63 {
			return nil, fmt.Errorf("bad table %q: want table or schema.table, each part 1..63 bytes", name)
		}
	}
	return parts, nil
}

// redactDSN returns dsn with any password hidden, for messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://xxxxx"
	}
	return loadgen.RedactURL(u)
}
