// Package pgsink is the embedded PostgreSQL-wire sink (built on
// pgproto3): an in-process server that accepts the writes of loadcap's SQL
// driver, pgx and psql, counts rows and stores nothing. Its API mirrors the
// line-protocol sink's (loadgen/sink): Options (with Validate and fault
// injection: Latency, ErrorRate, Seed), New, Start, Serve, Addr, URL,
// Stats, Shutdown and Close; loadgen/embedded starts either through one
// interface.
//
// The wire parsers are pure functions, table-tested and fuzzed: the SQL
// tokenizer and statement analyser (sql.go: the sink recognises statements
// from tokens, not by parsing SQL) and the COPY FROM STDIN row counter
// (copycount.go: text, CSV and binary, fed in arbitrary chunks).
//
// Example:
//
//	s, err := pgsink.Start("127.0.0.1:0", pgsink.Options{})
//	if err != nil { ... }
//	defer s.Close()
//	// write to s.URL() with table=... and read s.TableRows(table)
package pgsink
