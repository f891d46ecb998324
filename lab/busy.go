package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// busyPoll is how often AcquireBusy tries the slots again.
const busyPoll = 20 * time.Millisecond

// lastRelease is when this process last gave a slot back: it waits a few
// polls before it takes one again, so that a lab running step after step
// does not take the slot back before the labs waiting for it (of this
// process or another) try it. Without that, a find-limit cell's burst waited
// 20 minutes behind another cell's steps.
var (
	releaseMu   sync.Mutex
	lastRelease time.Time
)

// AcquireBusy takes one of slots machine-wide slots for a phase that needs
// the CPU (a find-limit burst, a step of hundreds of writes/s), waiting
// until one is free or ctx is done, and returns the function that gives it
// back. The slots are flock(2) locks on files in OwnerDir, shared by every
// loadcap process on the machine (the labs of one matrix, of two matrices
// run side by side), and released by the kernel if the process dies.
func AcquireBusy(ctx context.Context, slots int) (release func(), err error) {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: busy slot: %w", err)
	}
	slots = max(slots, 1)
	releaseMu.Lock()
	wait := time.Until(lastRelease.Add(3 * busyPoll))
	releaseMu.Unlock()
	if wait > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	for {
		for i := range slots {
			f, err := os.OpenFile(filepath.Join(OwnerDir, fmt.Sprintf("busy-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, fmt.Errorf("lab: busy slot: %w", err)
			}
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				return func() {
					f.Close() // closing releases the lock
					releaseMu.Lock()
					lastRelease = time.Now()
					releaseMu.Unlock()
				}, nil
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(busyPoll):
		}
	}
}
