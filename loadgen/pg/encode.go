package pg

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/loadcap/loadcap/loadgen"
)

// pgEpochMicros is 2000-01-01 UTC in Unix microseconds: PostgreSQL's binary
// timestamps count microseconds from there.
const pgEpochMicros = 946_684_800_000_000

// rowEncoder appends the binary values of generated points. It caches the
// generator's string values as bytes so that encoding allocates nothing.
type rowEncoder struct {
	gen  *loadgen.Generator
	cols []Column
	strs [][]byte
}

func (e *rowEncoder) str(v uint64) []byte {
	for uint64(len(e.strs)) <= v {
		e.strs = append(e.strs, []byte(e.gen.StringValue(uint64(len(e.strs)))))
	}
	return e.strs[v]
}

// appendValue appends column c of point p in binary format (no length).
func (e *rowEncoder) appendValue(buf []byte, c *Column, p *loadgen.Point) []byte {
	switch c.kind {
	case kindTime:
		return binary.BigEndian.AppendUint64(buf, uint64(p.Time.UnixMicro()-pgEpochMicros))
	case kindTag:
		return append(buf, p.TagValues[c.index]...)
	}
	v := p.Values[c.index]
	switch loadgen.FieldKind(c.kind) {
	case loadgen.FieldFloat, loadgen.FieldInt:
		return binary.BigEndian.AppendUint64(buf, v) // float64 bits or int64
	case loadgen.FieldBool:
		return append(buf, byte(v&1))
	}
	return append(buf, e.str(v)...)
}

// appendParams appends the columns of p to arena and records each value's
// [start,end) offsets in offs.
func (e *rowEncoder) appendParams(arena []byte, offs []int, p *loadgen.Point) ([]byte, []int) {
	for i := range e.cols {
		start := len(arena)
		arena = e.appendValue(arena, &e.cols[i], p)
		offs = append(offs, start, len(arena))
	}
	return arena, offs
}

// copyHeader is the binary COPY signature, flags and header extension length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// appendCopyTuple appends p as one binary COPY tuple.
func (e *rowEncoder) appendCopyTuple(buf []byte, p *loadgen.Point) []byte {
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.cols)))
	for i := range e.cols {
		at := len(buf)
		buf = append(buf, 0, 0, 0, 0)
		buf = e.appendValue(buf, &e.cols[i], p)
		binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	}
	return buf
}

// appendCopyTrailer ends a binary COPY stream.
func appendCopyTrailer(buf []byte) []byte { return append(buf, 0xff, 0xff) }

// appendLiteral appends column c of point p as an SQL literal, for the
// simple protocol (default_query_exec_mode=simple_protocol), which has no
// parameters. Strings are quoted for standard_conforming_strings = on (the
// default since PostgreSQL 9.1): only the quote is doubled.
func (e *rowEncoder) appendLiteral(buf []byte, c *Column, p *loadgen.Point) []byte {
	switch c.kind {
	case kindTime:
		buf = append(buf, '\'')
		buf = p.Time.UTC().AppendFormat(buf, "2006-01-02 15:04:05.999999Z07:00")
		return append(buf, "'::timestamptz"...)
	case kindTag:
		return appendQuoted(buf, p.TagValues[c.index])
	}
	v := p.Values[c.index]
	switch loadgen.FieldKind(c.kind) {
	case loadgen.FieldFloat:
		f := math.Float64frombits(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			buf = append(buf, '\'')
			buf = strconv.AppendFloat(buf, f, 'g', -1, 64)
			return append(buf, "'::float8"...)
		}
		return strconv.AppendFloat(buf, f, 'g', -1, 64)
	case loadgen.FieldInt:
		return strconv.AppendInt(buf, int64(v), 10)
	case loadgen.FieldBool:
		if v&1 == 1 {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	}
	return appendQuoted(buf, e.gen.StringValue(v))
}

// appendQuoted appends s as a standard SQL string literal.
func appendQuoted(buf []byte, s string) []byte {
	buf = append(buf, '\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			buf = append(buf, '\'')
		}
		buf = append(buf, s[i])
	}
	return append(buf, '\'')
}

// appendTuple appends p as "(v1,v2,...)" of literals.
func (e *rowEncoder) appendTuple(buf []byte, p *loadgen.Point) []byte {
	buf = append(buf, '(')
	for i := range e.cols {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = e.appendLiteral(buf, &e.cols[i], p)
	}
	return append(buf, ')')
}
