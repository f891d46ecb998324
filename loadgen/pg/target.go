package pg

import (
	"fmt"
	"net/url"
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
