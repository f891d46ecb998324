package loadgen

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// Result is the outcome of one write to one target. Failures are data.
type Result struct {
	// Lines is the number of lines (rows) the target accepted.
	Lines int
	// Class is "" on success, else one of the Class* names.
	Class string
	// Code refines Class: an HTTP status or a SQLSTATE ("" when none).
	Status int
	Code   string
	// Err describes the failure (kept only as an example per class).
	Err error
	// RetryAfter is the Retry-After header of a 429/503, if any.
	RetryAfter string
	// Partial is true for an InfluxDB partial write (some lines rejected).
	Partial bool
	// Sent is when the driver had a connection and began sending; service
	// time runs from it (zero: from when the worker started the write).
	Sent time.Time
}

// Session writes batches for one worker; it owns the worker's buffers and is
// never used concurrently.
type Session interface {
	Write(ctx context.Context, seq uint64, intended time.Time) Result
}

// Driver writes to one target: it hands out one Session per worker and
// counts the connections it opened.
type Driver interface {
	NewSession() Session
	NewConnections() int64
	Close() error
}

// Target is one destination of the run.
type Target struct {
	Name   string
	Driver Driver
}

type ticket struct {
	seq uint64
	at  time.Time
}

// safeWrite turns a driver panic into a recorded failure.
func safeWrite(ctx context.Context, s Session, t ticket) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{Class: ClassPanic, Err: fmt.Errorf("driver panic: %v\n%s", p, debug.Stack())}
		}
	}()
	return s.Write(ctx, t.seq, t.at)
}
