// Package pg is loadcap's SQL write path: a loadgen.Driver that writes the
// generated points as rows into PostgreSQL through pgx (pgconn), with the
// connection behaviour of a client profile. The embedded PostgreSQL-wire
// sink that accepts those writes without a database installed is
// loadgen/pgsink.
//
// A write is one batch of rows, sent in one of three modes:
//
//   - insert: one INSERT per row, all rows of a write pipelined in one
//     round trip (Parse once, then Bind/Execute per row, one Sync);
//   - values: one multi-row INSERT ... VALUES per write, split into several
//     statements when the batch would exceed PostgreSQL's 65,535 bind
//     parameters (the split is reported by Driver.Notes);
//   - copy: one binary COPY FROM STDIN per write.
//
// Parameters and COPY tuples are encoded in PostgreSQL's binary format into
// per-session buffers, so a write allocates nothing per row. The table is a
// time column (timestamptz), one text column per tag and one column per
// field (double precision, bigint, boolean, text).
//
// Errors are data: a server rejection becomes a Result with Class
// loadgen.ClassSQL and Code set to the SQLSTATE; connection failures keep
// loadgen's errno classes. Only start-up checks (NewDriver) return errors.
package pg
