package capacity

import (
	"errors"
	"math"
	"testing"
)

// simLab is a port pool without a lab: budget ports held for hold seconds
// per new connection, a churn of churn(rate) new connections per write, and
// steps of stepS seconds (scouts of scoutS) that run out when the ports they
// need reach the budget.
type simLab struct {
	budget, hold, stepS, scoutS float64
	churn                       func(rate float64) float64
	steps                       []simStep
	failAt                      int     // the failAt-th call (1-based) returns an error
	flip                        []int   // calls (1-based) whose outcome is inverted (noise)
	behindAt                    float64 // steps at this rate or above fall behind (fail, not from ports); 0: none
}

type simStep struct {
	rate   float64
	phase  string
	failed bool
}

func (s *simLab) probe(rate float64, phase string) (ProbeResult, error) {
	n := len(s.steps) + 1
	if n == s.failAt {
		return ProbeResult{}, errors.New("lab gone")
	}
	c := s.churn(rate)
	held := rate * c * s.hold // in steady state
	if phase == PhaseScout {
		held = rate * c * math.Min(s.scoutS, s.hold)
	}
	failed := held >= s.budget
	for _, f := range s.flip {
		if f == n {
			failed = !failed
		}
	}
	ranOut := failed
	if s.behindAt > 0 && rate >= s.behindAt {
		failed, ranOut = true, false
	}
	s.steps = append(s.steps, simStep{rate, phase, failed})
	return ProbeResult{Failed: failed, RanOut: ranOut, ConnsPerWrite: c}, nil
}

// limit is the true limit of the simulated pool: where rate x churn x hold
// reaches the budget (bisection).
func (s *simLab) limit() float64 {
	lo, hi := 1e-6, 1e9
	for i := 0; i < 200; i++ {
		m := math.Sqrt(lo * hi)
		if m*s.churn(m)*s.hold >= s.budget {
			hi = m
		} else {
			lo = m
		}
	}
	return lo
}

func (s *simLab) count(phase string) int {
	n := 0
	for _, st := range s.steps {
		if st.phase == phase {
			n++
		}
	}
	return n
}

func TestSearch(t *testing.T) {
	fixed := func(c float64) func(float64) float64 { return func(float64) float64 { return c } }
	// A churning pool: churn grows as the cube of the rate above 50 writes/s
	// and is nil below (only the pool's warm-up, left out).
	pool := func(r float64) float64 {
		if r < 50 {
			return 0
		}
		return 1e-3 * math.Pow(r/100, 3)
	}
	cases := []struct {
		name   string
		lab    simLab
		plan   SearchPlan
		steps  int // long steps (confirm + search), exactly
		scouts int // at most
		exact  bool
	}{
		// One connection per write, 200 ports, 60 s: 3.33 writes/s,
		// confirmed by 3.0 holding and 3.67 running out, nothing more.
		{"fixed churn, TIME_WAIT", simLab{budget: 200, hold: 60, stepS: 74, churn: fixed(1)},
			SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 1, FailRate: 4000}, 2, 0, true},
		// tw-reuse: 200 ports / 1 s.
		{"fixed churn, reuse delay", simLab{budget: 200, hold: 1, stepS: 12, churn: fixed(1)},
			SearchPlan{ConnRate: 200, ConnsPerWrite: 1, FailRate: 4000}, 2, 0, true},
		// The burst over-counted the churn (0.5 where it is 0.4): both
		// confirming steps hold, and the search brackets the real 8.33.
		{"fixed churn, estimate low", simLab{budget: 200, hold: 60, stepS: 74, churn: fixed(0.4)},
			SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 0.5, FailRate: 4000}, -1, 0, false},
		// A churning pool with a 60 s hold: scouts measure the churn, the
		// model places the pair around the limit, two long steps close it.
		{"churning pool, scouted", simLab{budget: 200, hold: 60, stepS: 74, scoutS: 12, churn: pool},
			SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 1, Churns: true, Scout: true, FailRate: 4000}, 2, MaxScouts, false},
		// The same pool with a 1 s hold, where steps are short anyway.
		{"churning pool, reuse delay", simLab{budget: 200, hold: 1, stepS: 12, churn: pool},
			SearchPlan{ConnRate: 200, ConnsPerWrite: 1, Churns: true, FailRate: 4000}, -1, 0, false},
		// A pool whose churn has a cliff (a busy machine: 0.02 per write
		// below 600 writes/s, 0.3 above), where the power law between a
		// step that held and one far past the limit is no guide: the
		// search still brackets it within its steps.
		{"churning pool with a cliff", simLab{budget: 200, hold: 1, stepS: 12, churn: func(r float64) float64 {
			if r < 600 {
				return 0.02
			}
			return 0.3
		}}, SearchPlan{ConnRate: 200, ConnsPerWrite: 0.7, Churns: true, FailRate: 4000, Ports: 200, HoldS: 1, Share: 1}, -1, 0, false},
		// A 60 s pool whose churn jumps tenfold at 150 writes/s: the scouts
		// below the cliff put the limit at 667, the scout there runs out
		// within its 12 s, and the search goes on below it instead of
		// confirming 667: two long steps close the bracket.
		{"churning pool with a cliff, scouted", simLab{budget: 200, hold: 60, stepS: 74, scoutS: 12, churn: func(r float64) float64 {
			if r < 150 {
				return 0.005
			}
			return 0.05
		}}, SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 0.5, Churns: true, Scout: true, FailRate: 4000, Ports: 200, HoldS: 60, Share: 1}, 2, MaxScouts, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lab := tc.lab
			res, err := Search(tc.plan, lab.probe)
			if err != nil {
				t.Fatal(err)
			}
			want := lab.limit()
			t.Logf("limit %.4g: %.4g (%.4g..%.4g) after %+v", want, res.Rate, res.Low, res.High, lab.steps)
			if !res.Bracketed() || res.Low > want || res.High < want {
				t.Fatalf("bracket %.4g..%.4g does not hold the limit %.4g; steps %+v", res.Low, res.High, want, lab.steps)
			}
			if tc.exact && math.Abs(res.Rate-want)/want > 1e-9 {
				t.Errorf("rate %.6g, want %.6g", res.Rate, want)
			}
			if !tc.exact && (res.High/res.Low > 1+DefaultTolerance+1e-9 || math.Abs(res.Rate-want)/want > DefaultTolerance/2) {
				t.Errorf("rate %.4g (%.4g..%.4g), want %.4g within %g", res.Rate, res.Low, res.High, want, DefaultTolerance/2)
			}
			long := lab.count(PhaseConfirmLow) + lab.count(PhaseConfirmHigh) + lab.count(PhaseSearch)
			if long != res.Steps || lab.count(PhaseScout) != res.Scouts {
				t.Errorf("result counts %d steps %d scouts, probe saw %d and %d", res.Steps, res.Scouts, long, lab.count(PhaseScout))
			}
			if tc.steps >= 0 && res.Steps != tc.steps {
				t.Errorf("%d long steps, want %d: %+v", res.Steps, tc.steps, lab.steps)
			}
			if res.Steps > DefaultMaxSteps || res.Scouts > tc.scouts {
				t.Errorf("%d long steps (at most %d), %d scouts (at most %d): %+v", res.Steps, DefaultMaxSteps, res.Scouts, tc.scouts, lab.steps)
			}
		})
	}
}

// A step that holds above one that failed (noise near the limit) does not
// narrow the bracket: Low stays below High.
func TestSearchNoise(t *testing.T) {
	lab := simLab{budget: 200, hold: 1, stepS: 12, churn: func(float64) float64 { return 1 }, flip: []int{1}}
	res, err := Search(SearchPlan{ConnRate: 200, ConnsPerWrite: 1, FailRate: 4000}, lab.probe)
	if err != nil {
		t.Fatal(err)
	}
	// 180 failed (flipped), 220 failed: the search goes below 180.
	if !res.Bracketed() || res.High != 180 || res.Low >= 180 {
		t.Fatalf("bracket %.4g..%.4g; steps %+v", res.Low, res.High, lab.steps)
	}
	if res.Steps > DefaultMaxSteps {
		t.Errorf("%d steps", res.Steps)
	}
}

// RanOutHigh says whether the bracket's high end failed from ports or only
// fell behind its rate (a machine too slow for it).
func TestSearchRanOutHigh(t *testing.T) {
	for _, behindAt := range []float64{0, 150} {
		lab := simLab{budget: 200, hold: 1, stepS: 12, churn: func(float64) float64 { return 1 }, behindAt: behindAt}
		res, err := Search(SearchPlan{ConnRate: 200, ConnsPerWrite: 1, FailRate: 4000}, lab.probe)
		if err != nil || !res.Bracketed() {
			t.Fatalf("behind at %g: bracket %+v, %v", behindAt, res, err)
		}
		if want := behindAt == 0; res.RanOutHigh != want {
			t.Errorf("behind at %g: high %.4g ran out %v, want %v; steps %+v", behindAt, res.High, res.RanOutHigh, want, lab.steps)
		}
	}
}

// A probe error stops the search at once and is returned with the steps so
// far; a plan without an estimate is refused before any step.
func TestSearchErrors(t *testing.T) {
	lab := simLab{budget: 200, hold: 60, stepS: 74, churn: func(float64) float64 { return 1 }, failAt: 2}
	res, err := Search(SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 1}, lab.probe)
	if err == nil || err.Error() != "lab gone" || res.Steps != 2 || res.Low != 3 || res.High != 0 || res.Rate != 0 {
		t.Errorf("err %v, result %+v", err, res)
	}
	for _, p := range []SearchPlan{{}, {ConnRate: 1}, {ConnsPerWrite: 1}, {ConnRate: math.Inf(1), ConnsPerWrite: 1}} {
		called := false
		_, err := Search(p, func(float64, string) (ProbeResult, error) { called = true; return ProbeResult{}, nil })
		if !errors.Is(err, ErrBadPlan) || called {
			t.Errorf("plan %+v: err %v, probe called %v", p, err, called)
		}
	}
}

// A pool that never runs out below the fence (the burst's rate) is not
// searched past it: the steps stop at the fence, unbracketed.
func TestSearchFence(t *testing.T) {
	for _, scout := range []bool{false, true} {
		lab := simLab{budget: 200, hold: 60, stepS: 74, scoutS: 12, churn: func(float64) float64 { return 1e-9 }}
		res, err := Search(SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 1, Churns: true, Scout: scout, FailRate: 4000}, lab.probe)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range lab.steps {
			if st.rate > 4000 {
				t.Errorf("scout %v: step at %.0f writes/s, past the fence 4000: %+v", scout, st.rate, lab.steps)
			}
		}
		if res.Bracketed() || res.Rate != 0 || res.Steps > DefaultMaxSteps {
			t.Errorf("scout %v: %+v", scout, res)
		}
	}
}

// A scout that runs out within its 12 s fences the search: a long step at
// that rate holds at least as many ports, so none goes past it. Here the
// scouts below a cliff at 340 writes/s measure a churn that puts the limit
// at 1667, the scout at 427 runs out, and the climb from the confirming
// pair stops at 427 (without the fence it stepped to 4x the pair, 616).
func TestSearchScoutFence(t *testing.T) {
	lab := simLab{budget: 200, hold: 60, stepS: 74, scoutS: 12, churn: func(r float64) float64 {
		if r < 340 {
			return 0.002
		}
		return 0.05
	}}
	res, err := Search(SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 0.5, Churns: true, Scout: true, FailRate: 4000, Ports: 200, HoldS: 60, Share: 1}, lab.probe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%.4g (%.4g..%.4g) after %+v", res.Rate, res.Low, res.High, lab.steps)
	var ranOut float64
	for _, st := range lab.steps {
		if st.phase == PhaseScout && st.failed {
			ranOut = st.rate
			break
		}
	}
	if ranOut == 0 {
		t.Fatalf("no scout ran out: %+v", lab.steps)
	}
	for _, st := range lab.steps {
		if st.phase != PhaseScout && st.rate > ranOut*(1+1e-9) {
			t.Errorf("a %s step at %.4g, past the scout that ran out at %.4g", st.phase, st.rate, ranOut)
		}
	}
	if want := lab.limit(); !res.Bracketed() || res.Low > want || res.High < want || res.High/res.Low > 1+DefaultTolerance+1e-9 {
		t.Errorf("bracket %.4g..%.4g, want the limit %.4g within %g", res.Low, res.High, want, DefaultTolerance)
	}
}

// A scout that ran out while a long step at its rate holds (a busy
// machine's stall made the pool churn for those 12 s) lifts its fence: the
// search goes on past it to the limit. The 2-target small-idle-pool cell of
// a parallel matrix stopped at such a fence (267 writes/s held for 75 s
// after its scout ran out) and reported no exhaustion rate.
func TestSearchScoutFenceLifted(t *testing.T) {
	churn := func(r float64) float64 {
		if r < 700 {
			return 0.002
		}
		return 0.05
	}
	plan := SearchPlan{ConnRate: 200.0 / 60, ConnsPerWrite: 0.5, Churns: true, Scout: true, FailRate: 4000, Ports: 200, HoldS: 60, Share: 1}
	clean := simLab{budget: 200, hold: 60, stepS: 74, scoutS: 12, churn: churn}
	if _, err := Search(plan, clean.probe); err != nil {
		t.Fatal(err)
	}
	// The highest scout that held runs out instead.
	flip := 0
	for i, st := range clean.steps {
		if st.phase == PhaseScout && !st.failed {
			flip = i + 1
		}
	}
	if flip == 0 {
		t.Fatalf("no scout held: %+v", clean.steps)
	}
	fence := clean.steps[flip-1].rate
	lab := simLab{budget: 200, hold: 60, stepS: 74, scoutS: 12, churn: churn, flip: []int{flip}}
	res, err := Search(plan, lab.probe)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scout at %.4g ran out (flipped); %.4g (%.4g..%.4g) after %+v", fence, res.Rate, res.Low, res.High, lab.steps)
	if want := lab.limit(); want <= fence*1.5 {
		t.Fatalf("the limit %.4g is not well past the flipped scout %.4g: the test shows nothing", want, fence)
	}
	if want := lab.limit(); !res.Bracketed() || res.Low > want || res.High < want {
		t.Errorf("bracket %.4g..%.4g, want the limit %.4g in it", res.Low, res.High, want)
	}
	if res.Steps > DefaultMaxSteps {
		t.Errorf("%d long steps", res.Steps)
	}
}
