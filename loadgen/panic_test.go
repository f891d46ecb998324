package loadgen

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// panicDriver's sessions panic on every third write (and, for one session,
// with a nil-pointer dereference as a real bug would); the others succeed.
type panicDriver struct{ n atomic.Int64 }

type panicSession struct{ d *panicDriver }

func (d *panicDriver) NewSession() Session   { return &panicSession{d: d} }
func (d *panicDriver) NewConnections() int64 { return 0 }
func (d *panicDriver) Close() error          { return nil }

func (s *panicSession) Write(ctx context.Context, seq uint64, intended time.Time) Result {
	switch n := s.d.n.Add(1); {
	case n == 1:
		var m map[string]*int
		return Result{Lines: *m["x"]} // nil pointer dereference
	case n%3 == 0:
		panic(fmt.Sprintf("driver bug on write %d", n))
	}
	return Result{Lines: 10}
}

// A driver that panics loses one write, recorded as class panic with the
// stack of the panic; the worker survives, the other writes and the other
// target go on, and the run completes.
func TestDriverPanicIsRecorded(t *testing.T) {
	pd := &panicDriver{}
	healthy := healthyDriver{}
	const rate, dur = 300, time.Second
	rep, err := Run(context.Background(), []Target{{Name: "panics", Driver: pd}, {Name: "healthy", Driver: healthy}},
		Config{Pacer: NewPacer(rate), Duration: dur, Workers: 2, MaxWorkers: 4, Drain: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p, h := rep.Targets[0], rep.Targets[1]
	want := int64(rate * dur.Seconds())
	if p.Writes != want || p.OK+p.Failed != want {
		t.Fatalf("panicking target: writes %d ok %d failed %d, want %d accounted for", p.Writes, p.OK, p.Failed, want)
	}
	// Write 1 and every third write panicked.
	if wantPanics := 1 + want/3; p.Errors[ClassPanic] != wantPanics || p.Failed != wantPanics {
		t.Errorf("panics recorded %d (failed %d), want %d: %v", p.Errors[ClassPanic], p.Failed, wantPanics, p.Errors)
	}
	if p.Lines != 10*p.OK {
		t.Errorf("lines %d, ok %d", p.Lines, p.OK)
	}
	msg := p.FirstErrors[ClassPanic]
	if !strings.HasPrefix(msg, "driver panic: ") || !strings.Contains(msg, "panic_test.go") {
		t.Errorf("first panic %q: want the panic value and its stack", msg)
	}
	if p.Workers > 4 {
		t.Errorf("%d workers: panics must not leak workers beyond the maximum", p.Workers)
	}
	if h.OK != want || h.Failed != 0 {
		t.Errorf("healthy target beside the panicking one: ok %d failed %d, want %d", h.OK, h.Failed, want)
	}
}

type healthyDriver struct{}

type healthySession struct{}

func (healthyDriver) NewSession() Session   { return healthySession{} }
func (healthyDriver) NewConnections() int64 { return 0 }
func (healthyDriver) Close() error          { return nil }

func (healthySession) Write(context.Context, uint64, time.Time) Result { return Result{Lines: 10} }
