package pg

import (
	"encoding/binary"

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
