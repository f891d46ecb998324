package loadgen

import (
	"testing"
	"time"
)

func TestParsePattern(t *testing.T) {
	ps, err := ParsePattern("write 10s, idle 90s, write 10s")
	if err != nil || len(ps) != 3 || !ps[0].Write || ps[1].Write || ps[1].Duration != 90*time.Second {
		t.Fatalf("%+v %v", ps, err)
	}
	if PatternDuration(ps) != 110*time.Second {
		t.Fatalf("duration %s", PatternDuration(ps))
	}
	for _, bad := range []string{"", "write", "sleep 5s", "write -1s", "write 5s idle 2s", "write abc"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPatternPacer(t *testing.T) {
	p := PatternPacer{Phases: []Phase{{Write: true, Duration: time.Second}, {Duration: 5 * time.Second}, {Write: true, Duration: 2 * time.Second}}, PerSecond: 10}
	cases := []struct {
		n    uint64
		due  time.Duration
		stop bool
	}{
		{0, 100 * time.Millisecond, false},
		{9, time.Second, false},              // last write of the first phase
		{10, 6100 * time.Millisecond, false}, // first write after the idle phase
		{29, 8 * time.Second, false},
		{30, 0, true}, // 10 + 20 writes in all
	}
	for _, c := range cases {
		due, stop := intendedAt(p, c.n)
		if stop != c.stop || (!stop && due != c.due) {
			t.Errorf("write %d: due %s stop %v, want %s %v", c.n, due, stop, c.due, c.stop)
		}
	}
	if p.Rate(3*time.Second) != 0 || p.Rate(500*time.Millisecond) != 10 {
		t.Error("Rate during phases")
	}
}
