package loadgen

import (
	"strings"
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

// A pattern that only idles would run, write nothing and exit 0: it is
// refused, naming the pattern.
func TestParsePatternNeedsAWritePhase(t *testing.T) {
	for _, bad := range []string{"idle 2s", "idle 1s, idle 2s"} {
		ps, err := ParsePattern(bad)
		if err == nil || !strings.Contains(err.Error(), "no write phase") || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("%q: got %v, %v; want an error naming the pattern and the missing write phase", bad, ps, err)
		}
	}
	if _, err := ParsePattern("idle 2s, write 1ms"); err != nil {
		t.Errorf("a write phase after an idle one: %v", err)
	}
}

// PatternWrites counts what PatternPacer paces: every write of the write
// phases, none of the idle ones.
func TestPatternWrites(t *testing.T) {
	ps := []Phase{{Write: true, Duration: time.Second}, {Duration: 5 * time.Second}, {Write: true, Duration: 2500 * time.Millisecond}}
	if n := PatternWrites(ps, 10); n != 35 {
		t.Errorf("PatternWrites = %d, want 10 + 25", n)
	}
	p := PatternPacer{Phases: ps, PerSecond: 10}
	if _, stop := intendedAt(p, 34); stop {
		t.Error("the pacer stops before the 35th write")
	}
	if _, stop := intendedAt(p, 35); !stop {
		t.Error("the pacer paces a 36th write")
	}
	if n := PatternWrites([]Phase{{Write: true, Duration: time.Millisecond}}, 10); n != 0 {
		t.Errorf("1 ms at 10/s: %d writes, want 0", n)
	}
	if n := PatternWrites([]Phase{{Duration: time.Hour}}, 10); n != 0 {
		t.Errorf("idle only: %d writes", n)
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

func TestPatternWriteTime(t *testing.T) {
	ph, err := ParsePattern("write 2s, idle 5s, write 3s")
	if err != nil {
		t.Fatal(err)
	}
	p := PatternPacer{Phases: ph, PerSecond: 10}
	for d, want := range map[time.Duration]time.Duration{
		0:                       0,
		time.Second:             time.Second,     // inside the first write phase
		4 * time.Second:         2 * time.Second, // in the idle phase
		8 * time.Second:         3 * time.Second, // one second into the last write phase
		10 * time.Second:        5 * time.Second, // the whole pattern
		time.Minute:             5 * time.Second, // beyond it
		2500 * time.Millisecond: 2 * time.Second,
	} {
		if got := p.WriteTime(d); got != want {
			t.Errorf("WriteTime(%s) = %s, want %s", d, got, want)
		}
	}
}
