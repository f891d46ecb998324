package sink

import (
	"fmt"
	"sync/atomic"
)

// PathStats are the counters of one write path.
type PathStats struct {
	// Writes is the number of write requests answered 204.
	Writes int64 `json:"writes"`
	// Lines is the number of lines decoded without error, including the good
	// lines of a batch answered 400 (InfluxDB stores those too).
	Lines int64 `json:"lines"`
	// BadLines is the number of lines that failed to decode.
	BadLines int64 `json:"bad_lines"`
	// Bytes is the number of line-protocol bytes decoded (after gzip).
	Bytes int64 `json:"bytes"`
	// BadRequests is the number of write requests answered 4xx (bad lines,
	// missing db, bad precision, bad gzip, too large, wrong method, auth).
	BadRequests int64 `json:"bad_requests"`
	// Errors is the number of write requests answered 500 by error injection
	// (Options.ErrorRate); their lines are not decoded nor counted.
	Errors int64 `json:"errors"`
}

// Stats is a snapshot of a Server's counters. The totals are the sums of the
// per-path counters.
type Stats struct {
	PathStats
	// Requests is the number of HTTP requests of any kind (also /ping).
	Requests int64 `json:"requests"`
	// Connections is the number of TCP connections accepted.
	Connections int64 `json:"connections"`
	// OpenConnections is the number of connections open now.
	OpenConnections int64 `json:"open_connections"`
	// V1, V2 and V3 are the counters of /write, /api/v2/write and
	// /api/v3/write_lp.
	V1 PathStats `json:"v1"`
	V2 PathStats `json:"v2"`
	V3 PathStats `json:"v3"`
}

// pathCounters are the live counters of one write path, padded so that the
// paths do not share a cache line.
type pathCounters struct {
	writes, lines, badLines, bytes, badRequests, errors atomic.Int64
	_                                                   [16]byte
}

func (c *pathCounters) snapshot() PathStats {
	return PathStats{
		Writes:      c.writes.Load(),
		Lines:       c.lines.Load(),
		BadLines:    c.badLines.Load(),
		Bytes:       c.bytes.Load(),
		BadRequests: c.badRequests.Load(),
		Errors:      c.errors.Load(),
	}
}

func (p *PathStats) add(q PathStats) {
	p.Writes += q.Writes
	p.Lines += q.Lines
	p.BadLines += q.BadLines
	p.Bytes += q.Bytes
	p.BadRequests += q.BadRequests
	p.Errors += q.Errors
}

// Stats returns a snapshot of the counters. Counters are read one by one, so
// a snapshot taken under load is not an atomic cut across them.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:        s.requests.Load(),
		Connections:     s.connections.Load(),
		OpenConnections: s.open.Load(),
		V1:              s.paths[apiV1].snapshot(),
		V2:              s.paths[apiV2].snapshot(),
		V3:              s.paths[apiV3].snapshot(),
	}
	st.PathStats.add(st.V1)
	st.PathStats.add(st.V2)
	st.PathStats.add(st.V3)
	return st
}

// String is a one-line summary of the totals, for logs and the
// `loadcap sink` command.
func (s Stats) String() string {
	return fmt.Sprintf("writes=%d lines=%d bytes=%d bad_requests=%d bad_lines=%d injected_errors=%d connections=%d open=%d",
		s.Writes, s.Lines, s.Bytes, s.BadRequests, s.BadLines, s.Errors, s.Connections, s.OpenConnections)
}
