package pgsink

import (
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// The sink recognises statements from tokens, not by parsing SQL: enough to
// answer the statements loadcap, pgx and psql send (see docs/sql.md).

type tokKind uint8

const (
	tIdent  tokKind = iota // unquoted identifier or keyword, lower-cased
	tQIdent                // "quoted identifier", verbatim
	tString                // 'string literal', unescaped
	tNumber
	tParam // $n
	tPunct // any other single character
)

type token struct {
	kind tokKind
	text string
}

func (t token) is(kw string) bool { return t.kind == tIdent && t.text == kw }
func (t token) punct(c byte) bool { return t.kind == tPunct && len(t.text) == 1 && t.text[0] == c }

// tokenize splits sql into tokens, dropping comments.
func tokenize(sql string) []token {
	var out []token
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				i = len(sql)
			} else {
				i += end + 4
			}
		case c == '"':
			var v string
			v, i = scanQuoted(sql, i+1, '"')
			out = append(out, token{tQIdent, v})
		case c == '\'' || ((c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\''):
			if c != '\'' {
				i++
			}
			var v string
			v, i = scanQuoted(sql, i+1, '\'')
			out = append(out, token{tString, v})
		case c == '$' && i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9':
			j := i + 1
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			out = append(out, token{tParam, sql[i+1 : j]})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(sql) && (sql[j] >= '0' && sql[j] <= '9' || sql[j] == '.' || sql[j] == 'e' || sql[j] == 'E') {
				j++
			}
			out = append(out, token{tNumber, sql[i:j]})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i
			for j < len(sql) && (sql[j] == '_' || sql[j] == '$' || sql[j] >= 'a' && sql[j] <= 'z' || sql[j] >= 'A' && sql[j] <= 'Z' || sql[j] >= '0' && sql[j] <= '9' || sql[j] >= 0x80) {
				j++
			}
			out = append(out, token{tIdent, strings.ToLower(sql[i:j])})
			i = j
		default:
			out = append(out, token{tPunct, sql[i : i+1]})
			i++
		}
	}
	return out
}

// splitStatements splits tokens at ';'.
func splitStatements(toks []token) [][]token {
	var out [][]token
	start := 0
	for i, t := range toks {
		if t.punct(';') {
			if i > start {
				out = append(out, toks[start:i])
			}
			start = i + 1
		}
	}
	if start < len(toks) {
		out = append(out, toks[start:])
	}
	return out
}

// Statement kinds the sink answers.
type stmtKind uint8

const (
	stEmpty stmtKind = iota
	stCreateTable
	stDropTable
	stTruncate
	stInsert
	stCopy
	stSelect
	stShow
	stBegin
	stCommit
	stRollback
	stNoop // SET, RESET, DISCARD, CREATE INDEX, ...: answered with a tag
	stUnsupported
)

// sinkCol is a column the sink knows the type of.
type sinkCol struct {
	name string
	oid  uint32
}

// selectItem is one output column of a SELECT the sink answers itself.
type selectItem struct {
	name  string
	oid   uint32
	value string // text form
	null  bool
}

// statement is what the sink understood of one SQL statement.
type statement struct {
	kind     stmtKind
	sql      string
	tag      string
	table    string   // canonical table name
	cols     []string // column list of INSERT / COPY / SELECT (nil: all)
	defs     []sinkCol
	ifExists bool // IF [NOT] EXISTS
	groups   int  // INSERT: rows per execution
	params   int  // highest $n
	copyFmt  string
	header   bool
	star     bool
	count    bool         // SELECT count(*) FROM t
	items    []selectItem // SELECT without FROM, SHOW
	reason   string       // stUnsupported: why
}

// tableName reads "name" or "schema.name" at toks[i]; public. is dropped.
func tableName(toks []token, i int) (string, int, bool) {
	part := func(i int) (string, bool) {
		if i >= len(toks) || (toks[i].kind != tIdent && toks[i].kind != tQIdent) || toks[i].text == "" {
			return "", false // "" is no name (PostgreSQL: zero-length delimited identifier)
		}
		return toks[i].text, true
	}
	a, ok := part(i)
	if !ok {
		return "", i, false
	}
	i++
	if i+1 < len(toks) && toks[i].punct('.') {
		b, ok := part(i + 1)
		if !ok {
			return "", i, false
		}
		i += 2
		if a == "public" {
			return b, i, true
		}
		return a + "." + b, i, true
	}
	return a, i, true
}

// identList reads "( a, b, ... )" at toks[i].
func identList(toks []token, i int) ([]string, int) {
	if i >= len(toks) || !toks[i].punct('(') {
		return nil, i
	}
	var out []string
	i++
	for i < len(toks) && !toks[i].punct(')') {
		if toks[i].kind == tIdent || toks[i].kind == tQIdent {
			out = append(out, toks[i].text)
		}
		i++
	}
	return out, i + 1
}

func maxParam(toks []token) int {
	n := 0
	for _, t := range toks {
		if t.kind == tParam {
			if v, err := strconv.Atoi(t.text); err == nil && v > n {
				n = v
			}
		}
	}
	return n
}

func unsupported(sql, why string) statement {
	return statement{kind: stUnsupported, sql: sql, reason: why}
}

// analyze recognises one statement.
func analyze(toks []token, sql string) statement {
	if len(toks) == 0 {
		return statement{kind: stEmpty}
	}
	st := statement{sql: sql, params: maxParam(toks)}
	kw := toks[0].text
	if toks[0].kind != tIdent {
		return unsupported(sql, "not a statement the sink knows")
	}
	switch kw {
	case "create":
		return analyzeCreate(toks, st)
	case "drop":
		if len(toks) < 3 || !toks[1].is("table") {
			return unsupported(sql, "only DROP TABLE is accepted")
		}
		i := 2
		if i+1 < len(toks) && toks[i].is("if") && toks[i+1].is("exists") {
			st.ifExists = true
			i += 2
		}
		name, _, ok := tableName(toks, i)
		if !ok {
			return unsupported(sql, "DROP TABLE without a table name")
		}
		st.kind, st.table, st.tag = stDropTable, name, "DROP TABLE"
		return st
	case "truncate":
		i := 1
		if i < len(toks) && toks[i].is("table") {
			i++
		}
		name, _, ok := tableName(toks, i)
		if !ok {
			return unsupported(sql, "TRUNCATE without a table name")
		}
		st.kind, st.table, st.tag = stTruncate, name, "TRUNCATE TABLE"
		return st
	case "insert":
		return analyzeInsert(toks, st)
	case "copy":
		return analyzeCopy(toks, st)
	case "select":
		return analyzeSelect(toks, st)
	case "show":
		name := "setting"
		if len(toks) > 1 {
			name = toks[1].text
		}
		st.kind, st.tag = stShow, "SHOW"
		st.items = []selectItem{{name: name, oid: pgtype.TextOID}}
		return st
	case "begin", "start":
		st.kind, st.tag = stBegin, "BEGIN"
		return st
	case "commit", "end":
		st.kind, st.tag = stCommit, "COMMIT"
		return st
	case "rollback", "abort":
		st.kind, st.tag = stRollback, "ROLLBACK"
		return st
	case "set", "reset", "listen", "unlisten", "deallocate", "vacuum", "analyze", "checkpoint":
		st.kind, st.tag = stNoop, strings.ToUpper(kw)
		return st
	case "discard":
		st.kind, st.tag = stNoop, "DISCARD ALL"
		return st
	}
	return unsupported(sql, "not a statement the sink knows")
}

var constraintWords = map[string]bool{"constraint": true, "primary": true, "unique": true, "check": true, "foreign": true, "exclude": true, "like": true}
var columnStopWords = map[string]bool{"not": true, "null": true, "default": true, "primary": true, "references": true, "unique": true, "check": true, "constraint": true, "collate": true, "generated": true}

func analyzeCreate(toks []token, st statement) statement {
	i := 1
	for i < len(toks) && (toks[i].is("unlogged") || toks[i].is("temp") || toks[i].is("temporary")) {
		i++
	}
	if i >= len(toks) || !toks[i].is("table") {
		if i < len(toks) && (toks[i].is("index") || toks[i].is("unique") || toks[i].is("extension") || toks[i].is("schema")) {
			st.kind = stNoop
			st.tag = "CREATE " + strings.ToUpper(toks[i].text)
			if toks[i].is("unique") {
				st.tag = "CREATE INDEX"
			}
			return st
		}
		return unsupported(st.sql, "only CREATE TABLE (and a no-op CREATE INDEX/SCHEMA/EXTENSION) is accepted")
	}
	i++
	if i+2 < len(toks) && toks[i].is("if") && toks[i+1].is("not") && toks[i+2].is("exists") {
		st.ifExists = true
		i += 3
	}
	name, i, ok := tableName(toks, i)
	if !ok || i >= len(toks) || !toks[i].punct('(') {
		return unsupported(st.sql, "CREATE TABLE needs a name and a column list")
	}
	i++
	for i < len(toks) && !toks[i].punct(')') {
		// one column definition or table constraint, up to a top-level comma
		start := i
		depth := 0
		for i < len(toks) {
			if toks[i].punct('(') {
				depth++
			} else if toks[i].punct(')') {
				if depth == 0 {
					break
				}
				depth--
			} else if toks[i].punct(',') && depth == 0 {
				break
			}
			i++
		}
		def := toks[start:i]
		if i < len(toks) && toks[i].punct(',') {
			i++
		}
		if len(def) == 0 || (def[0].kind == tIdent && constraintWords[def[0].text]) {
			continue
		}
		var typ []string
		for _, t := range def[1:] {
			if t.kind != tIdent || columnStopWords[t.text] {
				break
			}
			typ = append(typ, t.text)
		}
		st.defs = append(st.defs, sinkCol{name: def[0].text, oid: typeOID(strings.Join(typ, " "))})
	}
	st.kind, st.table, st.tag = stCreateTable, name, "CREATE TABLE"
	return st
}

// typeOID maps a SQL type name to its OID; unknown types are text.
func typeOID(t string) uint32 {
	switch t {
	case "timestamptz", "timestamp with time zone":
		return pgtype.TimestamptzOID
	case "timestamp", "timestamp without time zone":
		return pgtype.TimestampOID
	case "double precision", "float8", "float":
		return pgtype.Float8OID
	case "real", "float4":
		return 700
	case "bigint", "int8", "bigserial", "serial8":
		return pgtype.Int8OID
	case "integer", "int", "int4", "serial", "serial4":
		return pgtype.Int4OID
	case "smallint", "int2":
		return 21
	case "boolean", "bool":
		return pgtype.BoolOID
	case "varchar", "character varying":
		return pgtype.VarcharOID
	case "bytea":
		return 17
	case "numeric", "decimal":
		return 1700
	case "json":
		return 114
	case "jsonb":
		return 3802
	case "date":
		return 1082
	}
	return pgtype.TextOID
}

func analyzeInsert(toks []token, st statement) statement {
	if len(toks) < 3 || !toks[1].is("into") {
		return unsupported(st.sql, "INSERT needs INTO")
	}
	name, i, ok := tableName(toks, 2)
	if !ok {
		return unsupported(st.sql, "INSERT INTO without a table name")
	}
	if i < len(toks) && toks[i].is("as") {
		i += 2
	}
	st.cols, i = identList(toks, i)
	st.kind, st.table = stInsert, name
	if i+1 < len(toks) && toks[i].is("default") && toks[i+1].is("values") {
		st.groups = 1
		return st
	}
	if i >= len(toks) || !toks[i].is("values") {
		return unsupported(st.sql, "only INSERT ... VALUES is accepted")
	}
	depth := 0
	for i++; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.punct('('):
			if depth == 0 {
				st.groups++
			}
			depth++
		case t.punct(')'):
			depth--
		case depth == 0 && t.is("returning"):
			return unsupported(st.sql, "INSERT ... RETURNING is not accepted")
		case depth == 0 && t.kind == tIdent: // ON CONFLICT ...
			return st
		}
	}
	return st
}

func analyzeCopy(toks []token, st statement) statement {
	name, i, ok := tableName(toks, 1)
	if !ok {
		return unsupported(st.sql, "COPY needs a table name (COPY (query) is not accepted)")
	}
	st.cols, i = identList(toks, i)
	if i+1 >= len(toks) || !toks[i].is("from") || !toks[i+1].is("stdin") {
		return unsupported(st.sql, "only COPY ... FROM STDIN is accepted")
	}
	st.kind, st.table, st.copyFmt = stCopy, name, "text"
	for _, t := range toks[i+2:] {
		switch {
		case t.is("binary"):
			st.copyFmt = "binary"
		case t.is("csv"):
			st.copyFmt = "csv"
		case t.is("header"):
			st.header = true
		case t.kind == tString && strings.EqualFold(t.text, "csv"):
			st.copyFmt = "csv"
		}
	}
	return st
}

func analyzeSelect(toks []token, st statement) statement {
	st.kind, st.tag = stSelect, "SELECT"
	// split the select list at top-level commas, up to FROM
	depth, from := 0, -1
	var items [][]token
	start := 1
	for i := 1; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.punct('('):
			depth++
		case t.punct(')'):
			depth--
		case depth == 0 && t.punct(','):
			items = append(items, toks[start:i])
			start = i + 1
		case depth == 0 && t.kind == tIdent && (t.is("from") || t.is("where") || t.is("limit") || t.is("order") || t.is("group")):
			if t.is("from") {
				from = i
			}
			items = append(items, toks[start:i])
			start = -1
		}
		if start < 0 {
			break
		}
	}
	if start >= 0 {
		items = append(items, toks[start:])
	}
	if from >= 0 {
		name, _, ok := tableName(toks, from+1)
		if !ok {
			return unsupported(st.sql, "SELECT ... FROM needs a table name")
		}
		st.table = name
		if len(items) == 1 && len(items[0]) == 1 && items[0][0].punct('*') {
			st.star = true
			return st
		}
		if len(items) == 1 && len(items[0]) >= 3 && items[0][0].is("count") && items[0][1].punct('(') {
			st.count = true
			return st
		}
		for _, it := range items {
			if len(it) > 0 && (it[0].kind == tIdent || it[0].kind == tQIdent) {
				st.cols = append(st.cols, it[0].text)
			}
		}
		return st
	}
	for _, it := range items {
		st.items = append(st.items, constantItem(it))
	}
	return st
}

// constantItem answers one select-list item without a table.
func constantItem(it []token) (item selectItem) {
	item = selectItem{name: "?column?", oid: pgtype.TextOID}
	if n := len(it); n >= 2 && it[n-2].is("as") {
		alias := it[n-1].text
		defer func() { item.name = alias }()
		it = it[:n-2]
	}
	switch {
	case len(it) == 1 && it[0].kind == tNumber:
		item.value = it[0].text
		if _, err := strconv.ParseInt(it[0].text, 10, 32); err == nil {
			item.oid = pgtype.Int4OID
		} else if _, err := strconv.ParseInt(it[0].text, 10, 64); err == nil {
			item.oid = pgtype.Int8OID
		}
	case len(it) == 1 && it[0].kind == tString:
		item.value = it[0].text
	case len(it) >= 1 && it[0].kind == tIdent:
		item.name = it[0].text
		switch it[0].text {
		case "version":
			item.value = "PostgreSQL " + serverVersion + " (loadcap pg sink: accepts writes, stores nothing)"
		case "true", "false":
			item.name, item.oid, item.value = "bool", pgtype.BoolOID, it[0].text[:1]
		case "null":
			item.name, item.null = "?column?", true
		case "now", "current_timestamp":
			item.name = "now"
		}
	}
	return item
}

// scanQuoted reads a quoted token whose opening quote q is just before i: a
// doubled quote stands for one. It returns the content and the index after
// the closing quote (or the end of sql).
func scanQuoted(sql string, i int, q byte) (string, int) {
	var b strings.Builder
	for i < len(sql) {
		if sql[i] == q {
			if i+1 < len(sql) && sql[i+1] == q {
				b.WriteByte(q)
				i += 2
				continue
			}
			return b.String(), i + 1
		}
		b.WriteByte(sql[i])
		i++
	}
	return b.String(), i
}
