package run

import (
	"testing"
	"time"

	"github.com/loadcap/loadcap/loadgen"
	"github.com/loadcap/loadcap/results"
)

// A step after one that ran out counts only the port errors of intervals
// that began one hold time into it, per target; new connections per write
// leave out each target's first interval (the pool filling up).
func TestSteadyFigures(t *testing.T) {
	iv := func(ms int64, target string, ok, conns, eaddr int64) results.Interval {
		e := map[string]int64{}
		if eaddr > 0 {
			e[loadgen.ClassEADDRNOTAVAIL] = eaddr
		}
		return results.Interval{TMS: ms, Target: target, OK: ok, NewConns: conns, Errors: e}
	}
	doc := &results.Document{Targets: []results.Target{
		{Errors: map[string]int64{loadgen.ClassEADDRNOTAVAIL: 9}}, {Errors: map[string]int64{loadgen.ClassEADDRNOTAVAIL: 9}}},
		Timeline: []results.Interval{
			iv(1000, "a", 10, 8, 5), iv(1000, "b", 10, 8, 7),
			iv(2000, "a", 100, 1, 3), iv(2000, "b", 100, 3, 0),
			iv(3000, "a", 100, 2, 0), iv(3000, "b", 100, 0, 2),
			iv(3400, "a", 40, 0, 1), iv(3400, "b", 40, 0, 0),
		}}
	for _, c := range []struct {
		from time.Duration
		want int64
	}{{0, 18}, {time.Second, 6}, {1500 * time.Millisecond, 3}, {2 * time.Second, 3}, {3 * time.Second, 1}, {4 * time.Second, 0}} {
		if got := steadyPortErrors(doc, c.from); got != c.want {
			t.Errorf("from %s: %d port errors, want %d", c.from, got, c.want)
		}
	}
	if got, want := steadyConnsPerWrite(doc), 6.0/480; got != want {
		t.Errorf("steady conns per write %g, want %g", got, want)
	}
}

// The burst budget is the smallest count of the targets that ran out; a
// target that did not run out says nothing; targets sharing one pool split
// it, each getting the pool over the targets.
func TestBurstBudget(t *testing.T) {
	tg := func(conns, eaddr int64) results.Target {
		return results.Target{NewConnections: conns, Errors: map[string]int64{loadgen.ClassEADDRNOTAVAIL: eaddr}}
	}
	for _, c := range []struct {
		name      string
		targets   []results.Target
		shared    bool
		budget    int
		exhausted bool
	}{
		{"one target", []results.Target{tg(200, 400)}, false, 200, true},
		{"two pools", []results.Target{tg(200, 400), tg(198, 402)}, false, 198, true},
		{"one ran out (a pool's burst)", []results.Target{tg(200, 40), tg(16, 0)}, false, 200, true},
		{"none ran out", []results.Target{tg(8, 0), tg(8, 0)}, false, 0, false},
		{"shared, split unevenly", []results.Target{tg(92, 500), tg(108, 480)}, true, 100, true},
	} {
		b, ex := burstBudget(&results.Document{Targets: c.targets}, c.shared)
		if b != c.budget || ex != c.exhausted {
			t.Errorf("%s: %d, %v; want %d, %v", c.name, b, ex, c.budget, c.exhausted)
		}
	}
}

// Held ports: per sample the fullest target's sockets in every state (the
// sum with a shared pool), from the steady state on.
func TestHeldPorts(t *testing.T) {
	smp := func(ms int64, a, b int) results.Sample {
		return results.Sample{TMS: ms, ByTarget: map[string]map[string]int{
			"a": {"TIME_WAIT": a - 2, "ESTABLISHED": 2}, "b": {"TIME_WAIT": b}}}
	}
	doc := &results.Document{Sampler: &results.Sampler{Series: []results.Sample{smp(0, 200, 10), smp(1000, 100, 120), smp(2000, 110, 90), smp(3000, 120, 100)}}}
	mean, sd, peak := heldPorts(doc, time.Second, false)
	if mean != 116.7 || sd != 5.8 || peak != 120 {
		t.Errorf("own pools: mean %g sd %g peak %d, want 116.7, 5.8, 120", mean, sd, peak)
	}
	mean, sd, peak = heldPorts(doc, time.Second, true)
	if mean != 213.3 || sd != 11.5 || peak != 220 {
		t.Errorf("shared pool: mean %g sd %g peak %d, want 213.3, 11.5, 220", mean, sd, peak)
	}
	if m, s, p := heldPorts(&results.Document{}, 0, false); m != 0 || s != 0 || p != 0 {
		t.Errorf("no sampler: %g %g %d", m, s, p)
	}
	// With tcp_tw_reuse the sampler counts the ports connect() cannot take
	// (blocked_by_target): those are what a pool holds, TIME_WAIT older
	// than the reuse delay is free. Not with bind before connect: bind()
	// never takes a TIME_WAIT port.
	for i, blocked := range [][2]int{{0, 0}, {30, 4}, {50, 60}, {40, 20}} {
		doc.Sampler.Series[i].BlockedByTarget = map[string]int{"a": blocked[0], "b": blocked[1]}
	}
	if mean, sd, peak = heldPorts(doc, time.Second, false); mean != 43.3 || sd != 15.3 || peak != 60 {
		t.Errorf("blocked: mean %g sd %g peak %d, want 43.3, 15.3, 60", mean, sd, peak)
	}
	if mean, _, _ = heldPorts(doc, time.Second, true); mean != 213.3 {
		t.Errorf("blocked with a shared pool: mean %g, want the sockets' 213.3", mean)
	}
}

// A churning pool's spread: from the openings per second for a short hold,
// from the ports held in the steady state for a long one, unknown (0) when
// that count says nothing (sat at the range, or had no steady state to
// sample). A step that ran out gives the ports it held (at least: the range
// caps it) but no spread.
func TestStepHeld(t *testing.T) {
	st := func(mean, sd, dur float64) results.Step {
		return results.Step{HeldMean: mean, HeldSD: sd, DurationS: dur}
	}
	cases := []struct {
		name             string
		st               results.Step
		hold             time.Duration
		failed           bool
		wantHeld, wantSD float64
	}{
		{"1 s reuse delay: openings per second", st(120, 11, 12), time.Second, false, 0, 6.1},
		{"60 s hold: ports held, 182.4 +- 11", st(182.4, 11, 74.4), 60 * time.Second, false, 182.4, 11 * 11 / 182.4},
		{"60 s hold, step ran out", st(187.5, 13.1, 74.4), 60 * time.Second, true, 187.5, 0},
		{"60 s hold, ran out at the range", st(199, 0.8, 74.4), 60 * time.Second, true, 199, 0},
		{"60 s hold, ran out, no steady state", st(199, 0.8, 62), 60 * time.Second, true, 0, 0},
		{"60 s hold, sat at the range", st(199, 0.8, 74.4), 60 * time.Second, false, 0, 0},
		{"60 s hold, no steady state", st(50, 5, 62), 60 * time.Second, false, 0, 0},
		{"60 s hold, not sampled", st(0, 0, 74.4), 60 * time.Second, false, 0, 0},
	}
	for _, tc := range cases {
		held, got := stepHeld(tc.st, tc.hold, tc.failed, 200, 6.1)
		if got != tc.wantSD || held != tc.wantHeld {
			t.Errorf("%s: held %g dispersion %g, want %g and %g", tc.name, held, got, tc.wantHeld, tc.wantSD)
		}
	}
}
