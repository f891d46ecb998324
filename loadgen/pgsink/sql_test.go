package pgsink

import (
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestTokenize(t *testing.T) {
	id := func(s string) token { return token{tIdent, s} }
	p := func(s string) token { return token{tPunct, s} }
	cases := []struct {
		sql  string
		want []token
	}{
		{"", nil},
		{" \t\r\n\f", nil},
		{"SELECT 1", []token{id("select"), {tNumber, "1"}}},
		{`INSERT INTO "My Table" ("time", v) VALUES ($1, $12)`, []token{id("insert"), id("into"), {tQIdent, "My Table"}, p("("), {tQIdent, "time"}, p(","), id("v"), p(")"), id("values"), p("("), {tParam, "1"}, p(","), {tParam, "12"}, p(")")}},
		{`"a""b"`, []token{{tQIdent, `a"b`}}},
		{`'it''s'`, []token{{tString, "it's"}}},
		{`E'x' e'y'`, []token{{tString, "x"}, {tString, "y"}}},
		{`type'x'`, []token{id("type"), {tString, "x"}}},
		{"'unterminated", []token{{tString, "unterminated"}}},
		{`"unterminated`, []token{{tQIdent, "unterminated"}}},
		{"a -- comment ; b\nc", []token{id("a"), id("c")}},
		{"a /* ; */ b /* open", []token{id("a"), id("b")}},
		{"a-b/c", []token{id("a"), p("-"), id("b"), p("/"), id("c")}},
		{"1.5e3 42", []token{{tNumber, "1.5e3"}, {tNumber, "42"}}},
		{"$ $a", []token{p("$"), p("$"), id("a")}},
		{"a$1 _x9 ÄB", []token{id("a$1"), id("_x9"), id("äb")}},
		{"public.m;", []token{id("public"), p("."), id("m"), p(";")}},
	}
	for _, c := range cases {
		if got := tokenize(c.sql); !reflect.DeepEqual(got, c.want) {
			t.Errorf("tokenize(%q) = %v, want %v", c.sql, got, c.want)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	for sql, want := range map[string]int{"": 0, ";;": 0, "select 1": 1, "select 1;": 1, "select 1; select 2": 2, "select ';'; -- ;\nselect 2;": 2} {
		if got := len(splitStatements(tokenize(sql))); got != want {
			t.Errorf("splitStatements(%q): %d statements, want %d", sql, got, want)
		}
	}
}

func TestAnalyze(t *testing.T) {
	cases := []struct {
		sql  string
		want statement // sql is filled in from the case
	}{
		// loadcap's own statements (schema.go)
		{`CREATE TABLE IF NOT EXISTS "loadcap" ("time" timestamptz NOT NULL, "host" text, "v" double precision, "n" bigint, "ok" boolean)`,
			statement{kind: stCreateTable, tag: "CREATE TABLE", table: "loadcap", ifExists: true, defs: []sinkCol{{"time", pgtype.TimestamptzOID}, {"host", pgtype.TextOID}, {"v", pgtype.Float8OID}, {"n", pgtype.Int8OID}, {"ok", pgtype.BoolOID}}}},
		{`INSERT INTO "loadcap" ("time", "v") VALUES ($1, $2), ($3, $4), ($5, $6)`,
			statement{kind: stInsert, table: "loadcap", cols: []string{"time", "v"}, groups: 3, params: 6}},
		{`COPY "loadcap" ("time", "v") FROM STDIN (FORMAT binary)`,
			statement{kind: stCopy, table: "loadcap", cols: []string{"time", "v"}, copyFmt: "binary"}},
		// what pgx and psql send
		{"select 1", statement{kind: stSelect, tag: "SELECT", items: []selectItem{{name: "?column?", oid: pgtype.Int4OID, value: "1"}}}},
		{"SELECT 5000000000 AS big, 'x', true, null", statement{kind: stSelect, tag: "SELECT", items: []selectItem{{name: "big", oid: pgtype.Int8OID, value: "5000000000"}, {name: "?column?", oid: pgtype.TextOID, value: "x"}, {name: "bool", oid: pgtype.BoolOID, value: "t"}, {name: "?column?", oid: pgtype.TextOID, null: true}}}},
		{"SELECT count(*) FROM public.m", statement{kind: stSelect, tag: "SELECT", table: "m", count: true}},
		{"select * from s.m where x = 1", statement{kind: stSelect, tag: "SELECT", table: "s.m", star: true}},
		{"select a, b from m", statement{kind: stSelect, tag: "SELECT", table: "m", cols: []string{"a", "b"}}},
		{"SELECT 1 FROM", statement{kind: stUnsupported, reason: "SELECT ... FROM needs a table name"}},
		{"SHOW server_version", statement{kind: stShow, tag: "SHOW", items: []selectItem{{name: "server_version", oid: pgtype.TextOID}}}},
		{"copy m from stdin with csv header", statement{kind: stCopy, table: "m", copyFmt: "csv", header: true}},
		{"COPY m (a) FROM STDIN (FORMAT 'csv')", statement{kind: stCopy, table: "m", cols: []string{"a"}, copyFmt: "csv"}},
		{"COPY m TO STDOUT", statement{kind: stUnsupported, reason: "only COPY ... FROM STDIN is accepted"}},
		{"COPY (select 1) TO STDOUT", statement{kind: stUnsupported, reason: "COPY needs a table name (COPY (query) is not accepted)"}},
		{"insert into m as x (a) values (1) on conflict do nothing", statement{kind: stInsert, table: "m", cols: []string{"a"}, groups: 1}},
		{"insert into m default values", statement{kind: stInsert, table: "m", groups: 1}},
		{"INSERT INTO m VALUES (1) RETURNING a", statement{kind: stUnsupported, reason: "INSERT ... RETURNING is not accepted"}},
		{"INSERT INTO m SELECT 1", statement{kind: stUnsupported, reason: "only INSERT ... VALUES is accepted"}},
		{"INSERT m VALUES (1)", statement{kind: stUnsupported, reason: "INSERT needs INTO"}},
		{"create unlogged table m (a int, b varchar(20), constraint pk primary key (a), c timestamp without time zone default now())",
			statement{kind: stCreateTable, tag: "CREATE TABLE", table: "m", defs: []sinkCol{{"a", pgtype.Int4OID}, {"b", pgtype.VarcharOID}, {"c", pgtype.TimestampOID}}}},
		{`CREATE TABLE ""(a int)`, statement{kind: stUnsupported, reason: "CREATE TABLE needs a name and a column list"}},
		{`INSERT INTO "" VALUES (1)`, statement{kind: stUnsupported, reason: "INSERT INTO without a table name"}},
		{"CREATE TABLE m", statement{kind: stUnsupported, reason: "CREATE TABLE needs a name and a column list"}},
		{"CREATE UNIQUE INDEX i ON m (a)", statement{kind: stNoop, tag: "CREATE INDEX"}},
		{"CREATE EXTENSION timescaledb", statement{kind: stNoop, tag: "CREATE EXTENSION"}},
		{"CREATE VIEW v AS SELECT 1", statement{kind: stUnsupported, reason: "only CREATE TABLE (and a no-op CREATE INDEX/SCHEMA/EXTENSION) is accepted"}},
		{"DROP TABLE IF EXISTS public.m", statement{kind: stDropTable, tag: "DROP TABLE", table: "m", ifExists: true}},
		{"DROP INDEX i", statement{kind: stUnsupported, reason: "only DROP TABLE is accepted"}},
		{"TRUNCATE TABLE m", statement{kind: stTruncate, tag: "TRUNCATE TABLE", table: "m"}},
		{"truncate", statement{kind: stUnsupported, reason: "TRUNCATE without a table name"}},
		{"BEGIN", statement{kind: stBegin, tag: "BEGIN"}},
		{"start transaction", statement{kind: stBegin, tag: "BEGIN"}},
		{"END", statement{kind: stCommit, tag: "COMMIT"}},
		{"abort", statement{kind: stRollback, tag: "ROLLBACK"}},
		{"SET statement_timeout = 0", statement{kind: stNoop, tag: "SET"}},
		{"DISCARD ALL", statement{kind: stNoop, tag: "DISCARD ALL"}},
		{"DELETE FROM m", statement{kind: stUnsupported, reason: "not a statement the sink knows"}},
		{"(select 1)", statement{kind: stUnsupported, reason: "not a statement the sink knows"}},
	}
	for _, c := range cases {
		stmts := splitStatements(tokenize(c.sql))
		if len(stmts) != 1 {
			t.Errorf("%q: %d statements", c.sql, len(stmts))
			continue
		}
		got := analyze(stmts[0], c.sql)
		c.want.sql = c.sql
		if c.want.kind != stUnsupported {
			c.want.params = maxParam(stmts[0])
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("analyze(%q)\n got %+v\nwant %+v", c.sql, got, c.want)
		}
	}
	if st := analyze(nil, ""); st.kind != stEmpty {
		t.Errorf("no tokens: kind %d, want empty", st.kind)
	}
	if got := analyze(tokenize("select version()"), "").items[0].value; !strings.HasPrefix(got, "PostgreSQL "+serverVersion) {
		t.Errorf("version() = %q", got)
	}
}

// renderTokens writes tokens back as SQL, each quoted token in its
// standard form, separated by sep (white space or a comment).
func renderTokens(toks []token, sep string) string {
	var b strings.Builder
	for i, t := range toks {
		if i > 0 {
			b.WriteString(sep)
		}
		switch t.kind {
		case tQIdent:
			b.WriteString(`"` + strings.ReplaceAll(t.text, `"`, `""`) + `"`)
		case tString:
			b.WriteString(`'` + strings.ReplaceAll(t.text, `'`, `''`) + `'`)
		case tParam:
			b.WriteString("$" + t.text)
		default:
			b.WriteString(t.text)
		}
	}
	return b.String()
}

// FuzzSinkSQL: tokenizing and analysing any SQL does not panic (a hang is
// caught by the fuzzing engine's worker timeout);
// tokens written back in standard form (with white space or comments
// between them) tokenize to the same tokens; every statement analyses to a
// known kind, an unsupported one says why, and one that names a table has
// it.
func FuzzSinkSQL(f *testing.F) {
	for _, s := range []string{
		`CREATE TABLE IF NOT EXISTS "loadcap" ("time" timestamptz NOT NULL, "host" text, "v" double precision)`,
		`INSERT INTO "loadcap" ("time", "v") VALUES ($1, $2), ($3, $4)`,
		`COPY "loadcap" ("time", "v") FROM STDIN (FORMAT binary)`,
		"select 1; SELECT count(*) FROM public.m; show server_version",
		"SELECT 5000000000 AS big, 'it''s', E'x', true, null, version()",
		"copy m from stdin with csv header", "insert into m as x (a) values (1) on conflict do nothing",
		"create unlogged table m (a int, b varchar(20), constraint pk primary key (a))",
		"DROP TABLE IF EXISTS s.m; truncate m; begin; commit; rollback; set x = 1; discard all",
		"a -- c\n /* ; */ \"q\"\"x\" $1 $ 1.5e3 ÄB '\xff", "((((", "select )))", "insert into m values ((1), (2)",
	} {
		f.Add(s, uint8(0))
	}
	seps := []string{" ", "\n", " /* ; */ ", " --;\n", "\t\r\f"}
	f.Fuzz(func(t *testing.T, sql string, sep uint8) {
		var toks []token
		var stmts []statement
		toks = tokenize(sql)
		for _, s := range splitStatements(toks) {
			stmts = append(stmts, analyze(s, sql))
		}
		if len(toks) > len(sql) {
			t.Fatalf("%q: %d tokens from %d bytes", sql, len(toks), len(sql))
		}
		for _, tk := range toks {
			switch tk.kind {
			case tIdent:
				if tk.text == "" || tk.text != strings.ToLower(tk.text) {
					t.Fatalf("%q: identifier %q is empty or not lower-case", sql, tk.text)
				}
			case tParam, tNumber:
				if tk.text == "" || tk.text[0] < '0' || tk.text[0] > '9' {
					t.Fatalf("%q: %v does not start with a digit", sql, tk)
				}
			case tPunct:
				if len(tk.text) != 1 {
					t.Fatalf("%q: punctuation %q", sql, tk.text)
				}
			}
		}
		back := renderTokens(toks, seps[int(sep)%len(seps)])
		if again := tokenize(back); !reflect.DeepEqual(again, toks) && !(len(again) == 0 && len(toks) == 0) {
			t.Fatalf("%q: tokens %v, written back as %q, tokenize to %v", sql, toks, back, again)
		}
		for _, st := range stmts {
			if st.kind > stUnsupported || st.kind == stEmpty {
				t.Fatalf("%q: statement kind %d", sql, st.kind)
			}
			if st.kind == stUnsupported && st.reason == "" {
				t.Fatalf("%q: unsupported without a reason", sql)
			}
			switch st.kind {
			case stCreateTable, stDropTable, stTruncate, stInsert, stCopy:
				if st.table == "" {
					t.Fatalf("%q: statement kind %d without a table", sql, st.kind)
				}
			case stSelect:
				if st.table == "" && (st.star || st.count || st.cols != nil) {
					t.Fatalf("%q: SELECT of columns without a table", sql)
				}
			}
			if st.kind == stCopy && st.copyFmt != "text" && st.copyFmt != "csv" && st.copyFmt != "binary" {
				t.Fatalf("%q: COPY format %q", sql, st.copyFmt)
			}
			if st.params < 0 || st.groups < 0 {
				t.Fatalf("%q: %d parameters, %d rows", sql, st.params, st.groups)
			}
		}
	})
}
