package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/loadcap/loadcap/loadgen"
)

// PostgreSQL type OIDs of the columns loadcap writes.
const (
	oidBool        = 16
	oidInt8        = 20
	oidInt4        = 23
	oidText        = 25
	oidFloat8      = 701
	oidVarchar     = 1043
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// maxParams is PostgreSQL's limit of bind parameters in one statement.
const maxParams = 65535

// Column is one column of the table loadcap writes.
type Column struct {
	Name string
	// Type is the SQL type name used in CREATE TABLE.
	Type string
	// OID is the type's OID (parameters and COPY are binary in this type).
	OID uint32
	// kind is the generator field kind; tag and time columns use -1 and -2.
	kind int
	// index is the tag or field index in the generated point.
	index int
}

const (
	kindTime = -2
	kindTag  = -1
)

// Columns returns the table's columns for generator g: a time column, one
// text column per tag, one column per field, in the generator's order.
func Columns(g *loadgen.Generator) []Column {
	cols := []Column{{Name: "time", Type: "timestamptz", OID: oidTimestamptz, kind: kindTime}}
	for i, k := range g.TagKeys() {
		cols = append(cols, Column{Name: k, Type: "text", OID: oidText, kind: kindTag, index: i})
	}
	for i, f := range g.Fields() {
		c := Column{Name: f.Key, kind: int(f.Kind), index: i}
		switch f.Kind {
		case loadgen.FieldFloat:
			c.Type, c.OID = "double precision", oidFloat8
		case loadgen.FieldInt:
			c.Type, c.OID = "bigint", oidInt8
		case loadgen.FieldBool:
			c.Type, c.OID = "boolean", oidBool
		default:
			c.Type, c.OID = "text", oidText
		}
		cols = append(cols, c)
	}
	return cols
}

// quoteIdent quotes one SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteTable quotes "table" or "schema.table".
func quoteTable(name string) string {
	parts, _ := splitTable(name)
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

func columnList(cols []Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.Name)
	}
	return strings.Join(names, ", ")
}

// CreateTableSQL is the CREATE TABLE IF NOT EXISTS statement for table.
func CreateTableSQL(table string, cols []Column) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (", quoteTable(table))
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c.Name) + " " + c.Type)
		if c.kind == kindTime {
			b.WriteString(" NOT NULL")
		}
	}
	b.WriteString(")")
	return b.String()
}

// insertSQL is an INSERT of rows rows of cols, numbered parameters.
func insertSQL(table string, cols []Column, rows int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", quoteTable(table), columnList(cols))
	n := 1
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for i := range cols {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "$%d", n)
			n++
		}
		b.WriteByte(')')
	}
	return b.String()
}

func copySQL(table string, cols []Column) string {
	return fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", quoteTable(table), columnList(cols))
}

// compatible reports whether a column of type oid can take what loadcap
// writes for c (binary formats are identical for text/varchar and
// timestamptz/timestamp).
func compatible(c Column, oid uint32) bool {
	switch c.OID {
	case oidText:
		return oid == oidText || oid == oidVarchar
	case oidTimestamptz:
		return oid == oidTimestamptz || oid == oidTimestamp
	}
	return c.OID == oid
}

var typeNames = map[uint32]string{
	oidBool: "boolean", oidInt8: "bigint", oidInt4: "integer", oidText: "text", oidFloat8: "double precision",
	oidVarchar: "character varying", oidTimestamp: "timestamp", oidTimestamptz: "timestamptz",
	21: "smallint", 700: "real", 1700: "numeric", 114: "json", 3802: "jsonb", 1082: "date", 17: "bytea",
}

func typeName(oid uint32) string {
	if n, ok := typeNames[oid]; ok {
		return n
	}
	return fmt.Sprintf("type oid %d", oid)
}

// ensureSchema creates the table when create is set and checks that its
// columns take what loadcap writes. Errors are one line for the user.
func ensureSchema(ctx context.Context, c *pgconn.PgConn, table string, cols []Column, create bool) error {
	if create {
		if _, err := c.Exec(ctx, CreateTableSQL(table, cols)).ReadAll(); err != nil {
			return fmt.Errorf("create table %s: %s", table, pgMessage(err))
		}
	}
	sd, err := c.Prepare(ctx, "", "SELECT * FROM "+quoteTable(table)+" LIMIT 0", nil)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" {
			return fmt.Errorf("check table %s: it does not exist (run with --sql-create to create it)", table)
		}
		return fmt.Errorf("check table %s: %s", table, pgMessage(err))
	}
	have := map[string]uint32{}
	for _, f := range sd.Fields {
		have[string(f.Name)] = f.DataTypeOID
	}
	var problems []string
	for _, col := range cols {
		oid, ok := have[col.Name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("column %q is missing", col.Name))
		case !compatible(col, oid):
			problems = append(problems, fmt.Sprintf("column %q is %s, loadcap writes %s", col.Name, typeName(oid), col.Type))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check table %s: schema does not match the generated points: %s (drop it, or pick another with ?table=)", table, strings.Join(problems, "; "))
	}
	return nil
}
