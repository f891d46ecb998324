package sampler

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Pace calls sample every interval, counted from start, until ctx ends.
// sample returns the CPU time it took; when that is more than maxCPU ×
// interval (a socket table of tens of thousands), the next call waits
// longer, so that sampling stays within maxCPU of one core. maxCPU <= 0
// means no limit. A late call is not made up for: the cadence restarts from
// now.
func Pace(ctx context.Context, start time.Time, interval time.Duration, maxCPU float64, sample func() time.Duration) {
	next := start.Add(interval)
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		began := time.Now()
		cost := sample()
		next = next.Add(interval)
		if maxCPU > 0 {
			if spread := began.Add(time.Duration(float64(cost) / maxCPU)); spread.After(next) {
				next = spread
			}
		}
		if now := time.Now(); next.Before(now) {
			next = now
		}
		t.Reset(time.Until(next))
	}
}

// ThreadCPU runs fn on a locked OS thread and returns the CPU time (user
// and system) the thread spent in it, with fn's error.
func ThreadCPU(fn func() error) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &before)
	err := fn()
	unix.Getrusage(unix.RUSAGE_THREAD, &after)
	return time.Duration(after.Utime.Nano() - before.Utime.Nano() + after.Stime.Nano() - before.Stime.Nano()), err
}
