package loadgen

import (
	"context"
	"sync"
	"testing"
	"time"
)

// slowDriver's writes take a fixed time and record when they started.
type slowDriver struct {
	took   time.Duration
	mu     sync.Mutex
	starts []time.Time
}

type slowSession struct{ d *slowDriver }

func (d *slowDriver) NewSession() Session   { return slowSession{d} }
func (d *slowDriver) NewConnections() int64 { return 0 }
func (d *slowDriver) Close() error          { return nil }

func (s slowSession) Write(ctx context.Context, _ uint64, _ time.Time) Result {
	s.d.mu.Lock()
	s.d.starts = append(s.d.starts, time.Now())
	s.d.mu.Unlock()
	if s.d.took > 0 {
		select {
		case <-time.After(s.d.took):
		case <-ctx.Done():
		}
	}
	return Result{Lines: 1}
}

// An interrupt stops the run: a worker sleeping until its next write's time
// stops instead of firing it. At 5 writes/s with 64 workers, most of them
// asleep on a write due later, an interrupt at 1.1 s leaves exactly the 5
// writes due before it (0.2 s, 0.4 s, ... 1.0 s); it used to fire the
// sleeping workers' writes at once (53 writes instead of 16 at 3.2 s).
func TestInterruptStartsNoWriteAfterTheSignal(t *testing.T) {
	d := &slowDriver{}
	ctx, cancel := context.WithCancel(context.Background())
	var signalled time.Time
	var mu sync.Mutex
	go func() {
		time.Sleep(1100 * time.Millisecond)
		mu.Lock()
		signalled = time.Now()
		mu.Unlock()
		cancel()
	}()
	rep, err := Run(ctx, []Target{{Name: "t", Driver: d}}, Config{Pacer: NewPacer(5), Duration: 10 * time.Second, Workers: 64, MaxWorkers: 64})
	if err != nil {
		t.Fatal(err)
	}
	tr := rep.Targets[0]
	if !rep.Interrupted {
		t.Fatal("run not marked interrupted")
	}
	mu.Lock()
	defer mu.Unlock()
	// The writes due before the signal start (a slow machine may start one
	// a little after it); none due after the signal does.
	late := 0
	for _, s := range d.starts {
		if s.After(signalled.Add(50 * time.Millisecond)) {
			late++
		}
	}
	if tr.Writes != 5 || tr.OK != 5 || len(d.starts) != 5 || late > 0 {
		t.Fatalf("interrupted at 1.1 s at 5 writes/s: writes %d ok %d, %d writes started (%d after the signal); want the 5 writes due before it", tr.Writes, tr.OK, len(d.starts), late)
	}
}

// An over-asked run ends with its window and grace: writes that fell due
// in the window but that no worker could start by then (every worker busy)
// are not started, instead of being started one after another until the
// backlog drains. Two workers that each take 200 ms per write can start at
// most 2 x ((1 s + 1 s grace) / 200 ms + 1) = 22 of the 50 writes due in
// 1 s (they started all 50, for 5 s, before); every one of the 50 is
// accounted for.
func TestOverAskedRunEndsWithItsWindow(t *testing.T) {
	d := &slowDriver{took: 200 * time.Millisecond}
	rep, err := Run(context.Background(), []Target{{Name: "t", Driver: d}}, Config{Pacer: NewPacer(50), Duration: time.Second, Workers: 2, MaxWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	tr := rep.Targets[0]
	started := int64(len(d.starts))
	if started > 22 || started == 0 {
		t.Errorf("%d writes started by 2 workers at 200 ms each in a 1 s window and 1 s grace: want 1 to 22", started)
	}
	if tr.Writes != 50 || tr.OK != started || tr.Errors[ClassNotStarted] != 50-started {
		t.Errorf("writes %d ok %d not_started %d (errors %v), started %d: want all 50 accounted for, the unstarted as not_started", tr.Writes, tr.OK, tr.Errors[ClassNotStarted], tr.Errors, started)
	}
	if tr.FirstErrors[ClassNotStarted] == "" {
		t.Errorf("no first not_started error: %v", tr.FirstErrors)
	}
}
