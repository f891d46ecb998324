package lab

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// Two slots: two holders at once, a third waits until one gives its slot
// back, and gives up when its context ends; a slot held by another process
// counts too, and comes back when that process dies.
func TestAcquireBusy(t *testing.T) {
	requireRoot(t) // writes OwnerDir
	ctx := context.Background()
	const slots = 2
	r1, err := AcquireBusy(ctx, slots)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := AcquireBusy(ctx, slots)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := AcquireBusy(short, slots); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third holder of two slots: %v, want to wait until its context ends", err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := AcquireBusy(ctx, slots)
		if err == nil {
			r()
		}
		got <- err
	}()
	r1()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a released slot was not taken within 10 s")
	}
	r2()
	// Another process holds slot 0 (flock(1) on the same file) for 2 s;
	// the slot comes back when it exits.
	cmd := exec.Command("flock", "-x", OwnerDir+"/busy-0.lock", "sleep", "2")
	if err := cmd.Start(); err != nil {
		t.Fatalf("flock(1) (util-linux): %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	held := false
	for !held && time.Now().Before(deadline) {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		r, err := AcquireBusy(short, 1)
		cancel()
		if err != nil {
			held = true // flock(1) holds it now
			break
		}
		r()
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Error("slot 0 stayed free while flock(1) held its file")
	}
	r, err := AcquireBusy(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	r()
}

// A holder that gives its slot back and asks again at once does not take it
// before one already waiting: a lab stepping on does not starve a waiting
// burst.
func TestAcquireBusyFair(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const slots = 1
	r, err := AcquireBusy(ctx, slots)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, err := AcquireBusy(ctx, slots)
		if err != nil {
			t.Error(err)
			return
		}
		w()
	}()
	time.Sleep(100 * time.Millisecond) // the waiter is polling
	for i := 0; i < 20; i++ {
		r()
		select {
		case <-done:
			return
		default:
		}
		if r, err = AcquireBusy(ctx, slots); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // a step
	}
	r()
	t.Fatal("the waiter never got the slot in 20 give-backs")
}
