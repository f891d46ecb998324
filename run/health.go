package run

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/results"
)

// healthTracker follows failure episodes per target from the per-write
// records: when writes first failed, how long the failing write took to
// fail (time to detect), and when writes succeeded again.
type healthTracker struct{ t []targetHealth }

type targetHealth struct {
	failed atomic.Bool // cheap check for the common all-ok path
	mu     sync.Mutex
	// first failure
	firstDue   time.Time
	firstClass string
	detect     time.Duration
	// episode end and recovery
	lastFailEnd time.Time
	recovered   time.Time
}

func newHealthTracker(n int) *healthTracker { return &healthTracker{t: make([]targetHealth, n)} }

// hook chains the tracker into the engine's per-write callback.
func (h *healthTracker) hook(c *loadgen.Config) {
	prev := c.OnResult
	c.OnResult = func(r loadgen.WriteRecord) {
		h.onResult(r)
		if prev != nil {
			prev(r)
		}
	}
}

func (h *healthTracker) onResult(r loadgen.WriteRecord) {
	th := &h.t[r.Target]
	if r.Result.Class == "" {
		if !th.failed.Load() {
			return
		}
		th.mu.Lock()
		if r.Start.After(th.lastFailEnd) && (th.recovered.IsZero() || r.End.Before(th.recovered)) {
			th.recovered = r.End
		}
		th.mu.Unlock()
		return
	}
	th.mu.Lock()
	if th.firstDue.IsZero() || r.Intended.Before(th.firstDue) {
		th.firstDue, th.firstClass, th.detect = r.Intended, r.Result.Class, r.End.Sub(r.Start)
	}
	if r.End.After(th.lastFailEnd) {
		th.lastFailEnd = r.End
		if !th.recovered.IsZero() && th.recovered.Before(r.End) {
			th.recovered = time.Time{} // failing again after a recovery
		}
	}
	th.mu.Unlock()
	th.failed.Store(true)
}

// summary returns target i's health, or nil when no write failed.
func (h *healthTracker) summary(i int, start, end time.Time) *results.Health {
	th := &h.t[i]
	if !th.failed.Load() {
		return nil
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	ms := func(t time.Time) int64 { return t.Sub(start).Milliseconds() }
	hs := &results.Health{
		FirstFailureMS: ms(th.firstDue), FirstClass: th.firstClass,
		DetectMS:      math.Round(float64(th.detect.Microseconds())) / 1000,
		LastFailureMS: ms(th.lastFailEnd),
	}
	until := end
	if !th.recovered.IsZero() {
		r := ms(th.recovered)
		hs.RecoveredMS = &r
		until = th.recovered
	}
	hs.UnhealthyS = math.Round(until.Sub(th.firstDue).Seconds()*1000) / 1000
	return hs
}
