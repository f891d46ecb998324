// Package embedded starts the embedded sinks, the line-protocol sink
// (loadgen/sink) and the PostgreSQL-wire sink (loadgen/pgsink), through one
// interface: run/ starts one per "embedded" or "embedded-pg" target, and
// `loadcap sink` runs them on their own.
package embedded

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/loadgen/pgsink"
	"github.com/loadcap/loadcap/loadgen/sink"
)

// Sink is a started embedded sink.
type Sink interface {
	// Addr is the address it listens on.
	Addr() net.Addr
	// Target is the URL a loadcap target writes to it with.
	Target() string
	// Progress is one line of what happened since the previous call (or
	// the start), and whether anything did.
	Progress(now time.Time) (line string, changed bool)
	// Summary is its counters since the start, on one line.
	Summary() string
	// Shutdown stops accepting and waits, until ctx is done, for the
	// writes in progress to be answered.
	Shutdown(ctx context.Context) error
	// Close stops it at once.
	Close() error
}

// Options are the settings both sinks take: latency and fault injection.
type Options struct {
	// Latency is added to every write (line protocol) or before every
	// ReadyForQuery (PostgreSQL wire).
	Latency time.Duration
	// ErrorRate is the fraction (0..1) of writes answered with an error
	// (HTTP 500; SQLSTATE XX000), picked by Seed and the writes' order.
	ErrorRate float64
	// Seed selects the error-injection sequence.
	Seed int64
}

// Validate reports the first option out of range, naming it and its value.
func (o Options) Validate() error {
	if err := o.lineProtocol().Validate(); err != nil {
		return err
	}
	return o.postgres().Validate()
}

func (o Options) lineProtocol() sink.Options {
	return sink.Options{Latency: o.Latency, ErrorRate: o.ErrorRate, Seed: o.Seed}
}

func (o Options) postgres() pgsink.Options {
	return pgsink.Options{Latency: o.Latency, ErrorRate: o.ErrorRate, Seed: o.Seed}
}

// Start starts the sink of kind (loadgen.KindEmbedded: line protocol,
// loadgen.KindEmbeddedPG: PostgreSQL wire) listening on addr
// ("127.0.0.1:0" picks a free port).
func Start(kind, addr string, o Options) (Sink, error) {
	switch kind {
	case loadgen.KindEmbedded:
		s, err := sink.Start(addr, o.lineProtocol())
		if err != nil {
			return nil, err
		}
		return &lineSink{Server: s}, nil
	case loadgen.KindEmbeddedPG:
		s, err := pgsink.Start(addr, o.postgres())
		if err != nil {
			return nil, err
		}
		return &pgSink{Server: s, prev: s.Stats().String()}, nil
	}
	return nil, fmt.Errorf("start embedded sink: unknown kind %q", kind)
}

// lineSink is the line-protocol sink as a Sink.
type lineSink struct {
	*sink.Server
	prev   sink.Stats
	prevAt time.Time
}

// Target is the sink's v1 write URL, database loadcap.
func (s *lineSink) Target() string { return s.URL() + "/write?db=loadcap" }

// Summary is the sink's counters.
func (s *lineSink) Summary() string { return s.Stats().String() }

// Progress is the write and line rates since the previous call and the
// counters; changed is false when no request or connection came or went.
func (s *lineSink) Progress(now time.Time) (string, bool) {
	if s.prevAt.IsZero() {
		s.prevAt = now
	}
	st := s.Stats()
	changed := st.Requests != s.prev.Requests || st.Connections != s.prev.Connections || st.OpenConnections != s.prev.OpenConnections
	secs := now.Sub(s.prevAt).Seconds()
	line := fmt.Sprintf("%.0f writes/s %.0f lines/s | %s", float64(st.Writes-s.prev.Writes)/secs, float64(st.Lines-s.prev.Lines)/secs, st)
	if changed {
		s.prev, s.prevAt = st, now
	}
	return line, changed
}

// pgSink is the PostgreSQL-wire sink as a Sink.
type pgSink struct {
	*pgsink.Server
	prev string
}

// Target is the sink's postgres:// URL.
func (s *pgSink) Target() string { return s.URL() }

// Summary is the sink's counters.
func (s *pgSink) Summary() string { return s.Stats().String() }

// Progress is the counters; changed is false when none moved.
func (s *pgSink) Progress(time.Time) (string, bool) {
	line := s.Summary()
	changed := line != s.prev
	s.prev = line
	return line, changed
}
